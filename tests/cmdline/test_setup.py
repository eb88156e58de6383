"""``aiida-mlip setup localhost`` registers the engine executables as codes."""

from aiida import orm
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.codes import ENGINE_EXECUTABLES


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


def test_localhost_works_in_a_private_folder_of_the_profile(aiida_profile):
    import pathlib
    import stat

    from aiida.manage.configuration.settings import AiiDAConfigDir

    result = CliRunner().invoke(
        cmd_root, ["setup", "localhost", "--computer", "mlip-private"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    workdir = pathlib.Path(orm.load_computer("mlip-private").get_workdir())
    assert workdir == pathlib.Path(AiiDAConfigDir.get()) / "scratch" / aiida_profile.name
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700


def test_missing_engine_executables_are_a_one_line_error(aiida_profile, monkeypatch):
    monkeypatch.setattr("aiida_mlip.codes.find_executable", lambda name: None)
    result = CliRunner().invoke(cmd_root, ["setup", "localhost", "--computer", "mlip-missing"])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == "Error: aiida-mlip-train is not installed: run `pip install aiida-mlip` first"
    )
