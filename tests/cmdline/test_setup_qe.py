"""``aiida-mlip setup pw`` and ``aiida-mlip setup pseudos``."""

from __future__ import annotations

import pathlib
import shutil

from aiida import orm
from aiida.plugins import GroupFactory
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from tests.conftest import require_component

DEBIAN = pathlib.Path("/usr/share/espresso/pseudo")


def test_setup_pw_registers_the_code(aiida_profile, tmp_path):
    executable = shutil.which("pw.x") or str(tmp_path / "pw.x")
    runner = CliRunner()
    arguments = [
        "setup",
        "pw",
        "--computer",
        "localhost",
        "--executable",
        executable,
        "--label",
        "pw-cli-test",
    ]
    result = runner.invoke(cmd_root, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    code = orm.load_code("pw-cli-test@localhost")
    assert code.default_calc_job_plugin == "quantumespresso.pw"
    assert str(code.filepath_executable) == executable
    again = runner.invoke(cmd_root, arguments, catch_exceptions=False)
    assert again.exit_code == 0 and "exists" in again.output


def test_setup_pseudos_installs_a_family_with_cutoffs(aiida_profile):
    require_component(DEBIAN.is_dir(), "Debian's quantum-espresso-data pseudopotentials")
    runner = CliRunner()
    result = runner.invoke(
        cmd_root,
        [
            "setup",
            "pseudos",
            "--folder",
            str(DEBIAN),
            "--elements",
            "Si,N",
            "--functional",
            "pbe",
            "--label",
            "test/cli/SiN",
            "--pseudo",
            "N=N.pbe-n-rrkjus_psl.1.0.0.UPF",
            "--cutoff",
            "Si=30,240",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Si.pbe-nl-rrkjus_psl.1.0.0.UPF" in result.output
    family = GroupFactory("pseudo.family.cutoffs").collection.get(label="test/cli/SiN")
    assert family.get_cutoffs_unit() == "Ry"
    assert family.get_cutoffs()["Si"] == {"cutoff_wfc": 30.0, "cutoff_rho": 240.0}
    assert family.get_cutoffs()["N"]["cutoff_wfc"] == 43.91651705523


def test_setup_pseudos_names_missing_and_ambiguous_elements(aiida_profile):
    require_component(DEBIAN.is_dir(), "Debian's quantum-espresso-data pseudopotentials")
    runner = CliRunner()
    result = runner.invoke(
        cmd_root,
        [
            "setup",
            "pseudos",
            "--folder",
            str(DEBIAN),
            "--elements",
            "Si,Zr,N",
            "--functional",
            "pbe",
            "--label",
            "test/cli/missing",
        ],
    )
    assert result.exit_code != 0
    assert "for: Zr" in result.output and "N is ambiguous" in result.output
    assert not GroupFactory("pseudo.family").collection.count(filters={"label": "test/cli/missing"})
    bad = runner.invoke(
        cmd_root,
        [
            "setup",
            "pseudos",
            "--folder",
            str(DEBIAN),
            "--elements",
            "Si",
            "--functional",
            "pbe",
            "--label",
            "x",
            "--cutoff",
            "Si",
        ],
    )
    assert bad.exit_code == 2 and "ELEMENT=VALUE" in bad.output
