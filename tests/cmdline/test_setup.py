"""``aiida-mlip setup localhost`` registers the engine executables as codes."""

from aiida import orm
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.cmdline.setup import ENGINE_EXECUTABLES


def test_setup_localhost_is_idempotent(aiida_profile):
    runner = CliRunner()
    result = runner.invoke(
        cmd_root, ["setup", "localhost", "--computer", "mlip-local-test"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    codes = (
        orm.QueryBuilder()
        .append(orm.Computer, filters={"label": "mlip-local-test"}, tag="c")
        .append(orm.InstalledCode, with_computer="c")
        .all(flat=True)
    )
    assert {code.default_calc_job_plugin for code in codes} == set(ENGINE_EXECUTABLES.values())
    assert all(code.filepath_executable.name.startswith("aiida-mlip-") for code in codes)
    again = runner.invoke(
        cmd_root, ["setup", "localhost", "--computer", "mlip-local-test"], catch_exceptions=False
    )
    assert again.exit_code == 0 and again.output.count("exists") == len(ENGINE_EXECUTABLES)
