"""Failure causes read from the jobs' output reach the work chain's exit message and ``aiida-mlip status``."""

from __future__ import annotations

import stat

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from aiida_mlip.workflows.failures import cause_from_text, count_causes
from tests.workflows.test_pw_labelling import OPTIONS, OVERRIDES, si_family  # noqa: F401

MPIRUN_AS_ROOT = """--------------------------------------------------------------------------
mpirun has detected an attempt to run as root.

Running as root is *strongly* discouraged as any mistake (e.g., in
"""
PW_MISSING_PSEUDO = """
 %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%
     Error in routine readpp (1):
     file /usr/share/espresso/pseudo/Si.missing.UPF not found
 %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%
"""
PW_OTHER_ERROR = """
     Error in routine cdiaghg (12):
     S matrix not positive definite
"""
TRACEBACK = """Traceback (most recent call last):
  File "x.py", line 3, in <module>
    raise RuntimeError("the model file is empty")
RuntimeError: the model file is empty
"""


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (MPIRUN_AS_ROOT, "mpirun refuses to run as root"),
        (PW_MISSING_PSEUDO, "pseudopotential file not found: /usr/share/espresso/pseudo/Si.missing.UPF"),
        ("     convergence NOT achieved after 100 iterations: stopping", "SCF not converged"),
        ("NotImplementedError: No EMT-potential for Si", "No EMT-potential for Si"),
        (
            "slurmstepd: error: *** JOB 12 ON n1 CANCELLED DUE TO TIME LIMIT ***",
            "the job hit its wall-time limit",
        ),
        ("/bin/sh: 1: pw.x: command not found", "executable not found: pw.x"),
        (PW_OTHER_ERROR, "pw.x error in cdiaghg: S matrix not positive definite"),
        (TRACEBACK, "RuntimeError: the model file is empty"),
        ("\n\n", None),
    ],
)
def test_causes_are_read_from_job_output(text, cause):
    assert cause_from_text(text) == cause


def test_causes_are_counted_most_frequent_first():
    causes = ["SCF not converged after 4 restarts"] + ["mpirun refuses to run as root"] * 3
    assert count_causes(causes) == "3 x mpirun refuses to run as root; 1 x SCF not converged after 4 restarts"


@pytest.fixture
def broken_pw_code(aiida_localhost, tmp_path):
    """A "pw.x" that writes a message no pattern knows to stderr and exits 1."""
    script = tmp_path / "pw.x"
    script.write_text(
        "#!/bin/sh\necho 'pw.x: cannot open the Si pseudopotential (disk quota exceeded)' >&2\nexit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return orm.InstalledCode(
        label="broken-pw",
        computer=aiida_localhost,
        filepath_executable=str(script),
        default_calc_job_plugin="quantumespresso.pw",
    ).store()


def test_a_broken_pw_setup_names_its_cause_in_the_exit_message_and_status(broken_pw_code, si_family):  # noqa: F811
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Si", "diamond", a=5.43)],
        labeller={
            "pw": {
                "code": broken_pw_code,
                "pseudo_family": si_family.label,
                "overrides": OVERRIDES,
                "options": OPTIONS,
            }
        },
        protocol="fast",
        overrides={"initial": {"copies_per_structure": 1}},
    )
    _, node = run_get_node(builder)
    cause = "pw.x: cannot open the Si pseudopotential (disk quota exceeded)"
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_INITIAL_LABELLING_FAILED.status
    assert f"2 of 2 structures failed to be labelled (more than 20%): 2 x {cause}" in node.exit_message
    # `called` has no order: the labelling work chain's reports are among those of all children
    reports = [log.message for child in node.called for log in orm.Log.collection.get_logs_for(child)]
    assert any(report.endswith(f"failed: 2 x {cause}") for report in reports), reports
    status = CliRunner().invoke(cmd_root, ["status", str(node.pk)], catch_exceptions=False).output
    assert f"2 of 2 structures failed to be labelled: 2 x {cause}" in status


def test_openmpi_noise_is_not_a_cause():
    text = "[vm:24645] [[3259,0],0] ORTE_ERROR_LOG: Data unpack would read past end of buffer in file x.c at line 501\n"
    assert cause_from_text(PW_OTHER_ERROR + text) == "pw.x error in cdiaghg: S matrix not positive definite"
    assert cause_from_text(text) is None
