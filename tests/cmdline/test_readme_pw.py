"""The README's Quantum ESPRESSO commands, run as they are written there, through the daemon.

The lines are read from the README (its "Quantum ESPRESSO" section), so the test and the
documentation cannot drift apart. It runs as whatever user runs the tests: root in CI and in
containers, where a pw.x started through OpenMPI's ``mpirun`` used to be refused.
"""

from __future__ import annotations

import pathlib
import re
import shlex
import shutil
import time

import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from tests.conftest import require_component

ROOT = pathlib.Path(__file__).parents[2]
PSEUDO = pathlib.Path("/usr/share/espresso/pseudo/Si.pbe-nl-rrkjus_psl.1.0.0.UPF")


def readme_commands(section: str = "### Quantum ESPRESSO") -> list[list[str]]:
    """The ``aiida-mlip`` lines of the first ``bash`` block after ``section``, comments removed."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(section) :], re.DOTALL).group(1)
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "aiida-mlip":
            commands.append(words[1:])
    return commands


def wait_for(node, timeout: float) -> None:
    start = time.monotonic()
    while not node.is_terminated:
        if time.monotonic() - start > timeout:
            raise TimeoutError(
                f"{node.process_label}<{node.pk}> still {node.process_state} after {timeout} s"
            )
        time.sleep(1.0)


@pytest.mark.slow
def test_readme_pw_commands_label_and_train_silicon(started_daemon_client, monkeypatch):
    require_component(shutil.which("pw.x") is not None, "pw.x (apt-get install quantum-espresso)")
    require_component(PSEUDO.exists(), "Debian's quantum-espresso-data pseudopotentials")
    commands = readme_commands()
    assert [words[:2] for words in commands] == [
        ["setup", "localhost"],
        ["setup", "pw"],
        ["setup", "pseudos"],
        ["launch", "examples/structures/Si.cif"],
    ]
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    start = time.monotonic()
    for words in commands:
        result = runner.invoke(cmd_root, words, catch_exceptions=False)
        assert result.exit_code == 0, (words, result.output)
    pk = int(re.search(r"ActiveLearningWorkChain<(\d+)>", result.output).group(1))
    node = orm.load_node(pk)
    wait_for(node, 900)
    seconds = time.monotonic() - start
    status = runner.invoke(cmd_root, ["status", str(pk)], catch_exceptions=False).output
    assert node.exit_status == 0, status
    labels = [child for child in node.called_descendants if child.process_label == "PwCalculation"]
    assert len(labels) >= 3 and all(label.is_finished_ok for label in labels), status
    dataset = node.outputs.dataset
    assert dataset.n_frames == 3 and dataset.label_settings["pseudo_family"] == "debian/pbe"
    print(f"README pw commands: exit {node.exit_status}, {len(labels)} pw.x runs, {seconds:.0f} s")
