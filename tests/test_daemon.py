"""A process submitted to a real running daemon on the session profile runs to completion."""

import shutil

from aiida import orm
from aiida.plugins import CalculationFactory


def test_daemon_runs_a_submitted_calculation(aiida_localhost, aiida_code_installed, submit_and_await):
    code = aiida_code_installed(
        default_calc_job_plugin="core.arithmetic.add", filepath_executable=shutil.which("bash")
    )
    builder = CalculationFactory("core.arithmetic.add").get_builder()
    builder.code = code
    builder.x = orm.Int(20)
    builder.y = orm.Int(22)
    builder.metadata.options.resources = {"num_machines": 1}
    node = submit_and_await(builder, timeout=120)
    assert node.is_finished_ok, node.exit_status
    assert node.outputs.sum.value == 42
