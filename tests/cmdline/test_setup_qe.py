"""``aiida-mlip setup pw`` and ``aiida-mlip setup pseudos``."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import GroupFactory
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.workflows.labelling import LabellingWorkChain
from tests.conftest import require_component
from tests.workflows.test_pw_labelling import OVERRIDES, si_family, silicon  # noqa: F401

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


def test_pw_job_options_choose_mpi_from_the_code(aiida_profile, tmp_path):
    """One process runs without mpirun; --mpiprocs N runs under mpirun, as root with OpenMPI's variables."""
    from aiida_mlip.workflows.pw_labels import MPI_AS_ROOT, pw_job_options

    runner = CliRunner()
    executable = str(tmp_path / "pw.x")
    for label, mpiprocs in (("pw-one", "1"), ("pw-two", "2")):
        arguments = ["setup", "pw", "--executable", executable, "--label", label, "--mpiprocs", mpiprocs]
        result = runner.invoke(cmd_root, arguments, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    one = pw_job_options(orm.load_code("pw-one@localhost"))
    assert one["withmpi"] is False and one["resources"]["num_mpiprocs_per_machine"] == 1
    assert "environment_variables" not in one
    two = pw_job_options(orm.load_code("pw-two@localhost"), {"max_wallclock_seconds": 60})
    assert two["withmpi"] is True and two["resources"] == {"num_machines": 1, "num_mpiprocs_per_machine": 2}
    assert two["max_wallclock_seconds"] == 60
    assert (two.get("environment_variables") == MPI_AS_ROOT) == (os.geteuid() == 0)
    # what the user gives wins
    given = pw_job_options(orm.load_code("pw-two@localhost"), {"resources": {"num_mpiprocs_per_machine": 3}})
    assert given["resources"]["num_mpiprocs_per_machine"] == 3 and given["withmpi"] is True
    bad = runner.invoke(cmd_root, ["setup", "pw", "--executable", executable, "--mpiprocs", "0"])
    assert bad.exit_code == 2 and "--mpiprocs" in bad.output


@pytest.mark.slow
def test_pw_under_mpirun_labels_silicon_as_any_user(aiida_profile, si_family):  # noqa: F811
    """`setup pw --mpiprocs 2`: the pw.x job runs under `mpirun -np 2` and finishes, as root too."""
    require_component(shutil.which("pw.x") is not None, "pw.x (apt-get install quantum-espresso)")
    require_component(shutil.which("mpirun") is not None, "mpirun (apt-get install openmpi-bin)")
    arguments = ["setup", "pw", "--executable", shutil.which("pw.x"), "--label", "pw-mpi", "--mpiprocs", "2"]
    result = CliRunner().invoke(cmd_root, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    builder = LabellingWorkChain.get_builder()
    builder.structures = StructureSetData.from_atoms(silicon(1))
    builder.pw.code = orm.load_code("pw-mpi@localhost")
    builder.pw.pseudo_family = orm.Str(si_family.label)
    builder.pw.overrides = orm.Dict(OVERRIDES)
    _, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    calculation = next(n for n in node.called_descendants if n.process_label == "PwCalculation")
    script = calculation.base.repository.get_object_content("_aiidasubmit.sh")
    assert "'mpirun' '-np' '2'" in script or "mpirun -np 2" in script, script
    assert ("OMPI_ALLOW_RUN_AS_ROOT" in script) == (os.geteuid() == 0)


def test_withmpi_against_the_code_is_refused_at_submission(aiida_profile, si_family, tmp_path):  # noqa: F811
    runner = CliRunner()
    arguments = ["setup", "pw", "--executable", str(tmp_path / "pw.x"), "--label", "pw-serial"]
    assert runner.invoke(cmd_root, arguments, catch_exceptions=False).exit_code == 0
    builder = LabellingWorkChain.get_builder()
    builder.structures = StructureSetData.from_atoms(silicon(1))
    builder.pw.code = orm.load_code("pw-serial@localhost")
    builder.pw.pseudo_family = orm.Str(si_family.label)
    builder.pw.options = orm.Dict({"withmpi": True})
    with pytest.raises(ValueError, match="with_mpi=False but options.withmpi is True"):
        run_get_node(builder)
