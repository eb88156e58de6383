"""Command-line errors are one line; ``-v debug`` shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.cmdline.errors import one_line, validation_message


@pytest.fixture
def fresh_cli_logging(monkeypatch):
    """Each real command is a new process; in process, let ``-v`` take effect, and undo it afterwards.

    ``-v debug`` sets the level of aiida's loggers and handlers through ``configure_logging``; left
    in place, every later command of the session would print its debug lines.
    """
    from aiida.common import log

    monkeypatch.setattr(log, "CLI_ACTIVE", None)
    monkeypatch.setattr(log, "CLI_LOG_LEVEL", None)
    yield
    log.CLI_LOG_LEVEL = None
    log.configure_logging(with_orm=True)


def _garbage(tmp_path) -> str:
    path = tmp_path / "garbage.cif"
    path.write_text("this is not a cif\n")
    return str(path)


def test_unexpected_exception_is_one_line_with_its_type(
    aiida_profile, monkeypatch, tmp_path, fresh_cli_logging
):
    import aiida_mlip.queries

    def broken(_):
        raise RuntimeError("the graph\nis odd")

    monkeypatch.setattr(aiida_mlip.queries, "potential_lineage", broken)
    node = _stored_potential(tmp_path)
    result = CliRunner().invoke(cmd_root, ["lineage", str(node.pk)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Critical: RuntimeError: the graph is odd (run with -v debug for the traceback)" in result.output


def test_debug_verbosity_lets_the_exception_through(aiida_profile, tmp_path, fresh_cli_logging):
    path = tmp_path / "o.yaml"
    path.write_text("trust: {lo: 0.5, hi: 0.1}\n")
    structure = tmp_path / "Al.cif"
    from ase.build import bulk
    from ase.io import write

    write(structure, bulk("Al", cubic=True))
    words = ["launch", str(structure), "--daemon", "--overrides", str(path)]
    result = CliRunner().invoke(cmd_root, [*words, "-v", "debug"])
    assert isinstance(result.exception, ValueError), result.output
    assert "the trust window needs lo < hi" in str(result.exception)


def test_real_command_prints_one_line_and_a_traceback_only_with_debug(aiida_profile, tmp_path):
    from aiida.manage.configuration import get_config

    environment = dict(os.environ, AIIDA_PATH=str(Path(get_config().dirpath).parent))
    command = [
        str(Path(sys.executable).parent / "aiida-mlip"),
        "-p",
        aiida_profile.name,
        "launch",
        _garbage(tmp_path),
    ]
    plain = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "Error: Invalid value for STRUCTURES: cannot read structures from" in plain.stderr
    assert "not a valid CIF file" in plain.stderr


def test_one_line_and_validation_message():
    assert one_line(KeyError("missing")) == "missing"
    assert one_line(AssertionError()) == "AssertionError with no message"
    assert one_line(ValueError("a\n  b")) == "a b"
    assert validation_message(ValueError("Error occurred validating port 'inputs': lo < hi")) == "lo < hi"
    message = validation_message(ValueError("Error occurred validating port 'inputs.trust': bad"))
    assert message == "input `trust`: bad"
    assert validation_message(ValueError("something else")) is None


def _stored_potential(tmp_path):
    import torch

    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.potentials.model_file import write_model_file

    path = tmp_path / "errors-test.safetensors"
    metadata = {"architecture": "test", "elements": ["Al"], "cutoff": 4.0, "committee_size": 1}
    write_model_file(path, {"w": torch.zeros(1)}, metadata)
    return PotentialData(file=path).store()
