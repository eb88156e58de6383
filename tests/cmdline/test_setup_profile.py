"""``aiida-mlip setup profile``: a PostgreSQL + RabbitMQ profile in one command, idempotent."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.profiles import ProfileSettings, drop_profile_database
from tests.conftest import POSTGRES, RABBITMQ, _reachable, require_component


def verdi(config_dir, *arguments) -> subprocess.CompletedProcess:
    """``verdi`` in a subprocess on the test configuration (not the user's)."""
    environment = dict(os.environ, AIIDA_PATH=str(config_dir))
    command = [os.path.join(os.path.dirname(sys.executable), "verdi"), *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


@pytest.fixture
def profile_name(aiida_config):
    """A fresh profile name; its profile, database and role are removed afterwards."""
    name = f"mlip-setup-test-{secrets.token_hex(4)}"
    yield name
    verdi(aiida_config.dirpath, "profile", "delete", "--force", "--keep-data", name)
    drop_profile_database(ProfileSettings(name=name))


def test_setup_profile_creates_a_working_profile_once(aiida_profile, aiida_config, profile_name):
    require_component(_reachable(POSTGRES) and _reachable(RABBITMQ), "PostgreSQL and RabbitMQ on 127.0.0.1")
    runner = CliRunner()
    arguments = ["setup", "profile", "--name", profile_name, "--no-default"]
    first = runner.invoke(cmd_root, arguments, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert f"created PostgreSQL database 'aiida-{profile_name}' (UTF8, from template0)" in first.output
    assert f"created profile '{profile_name}'" in first.output

    status = verdi(aiida_config.dirpath, "-p", profile_name, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {
        line.split()[1].rstrip(":"): line.split()[0] for line in status.stdout.splitlines() if line.strip()
    }
    assert lines["storage"] == lines["broker"] == "✔", status.stdout
    assert "postgresql" in status.stdout and "RabbitMQ" in status.stdout
    options = verdi(aiida_config.dirpath, "-p", profile_name, "config", "get", "runner.poll.interval")
    assert options.stdout.strip() == "1", options.stdout + options.stderr

    again = runner.invoke(cmd_root, arguments, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[0].endswith("nothing changed"), again.output
    assert "created" not in again.output


def test_setup_profile_names_the_service_that_is_down(aiida_profile, profile_name):
    runner = CliRunner()
    down = runner.invoke(cmd_root, ["setup", "profile", "--name", profile_name, "--rabbitmq-port", "1"])
    assert down.exit_code == 1
    assert "Error: RabbitMQ does not answer at amqp://127.0.0.1:1" in down.output
    assert "Traceback" not in down.output
    down = runner.invoke(cmd_root, ["setup", "profile", "--name", profile_name, "--postgres-port", "1"])
    assert down.exit_code == 1 and "Error: PostgreSQL does not answer at 127.0.0.1:1" in down.output


def test_setup_profile_leaves_the_loaded_profile_usable(aiida_profile, profile_name):
    """Creating a profile in-process must not close the storage of the one already loaded."""
    from aiida import orm

    require_component(_reachable(POSTGRES) and _reachable(RABBITMQ), "PostgreSQL and RabbitMQ on 127.0.0.1")
    from aiida.manage import get_manager
    from plumpy.events import get_or_create_event_loop

    node = orm.Int(7).store()
    loop = get_manager().get_runner().loop
    result = CliRunner().invoke(cmd_root, ["setup", "profile", "--name", profile_name, "--no-default"])
    assert result.exit_code == 0, result.output
    assert node.value == 7 and node.is_stored  # raised ClosedStorage when aiida's create_profile switched
    assert orm.load_node(node.pk).value == 7
    # aiida's RabbitMQ probe (asyncio.run) left the thread without its loop; processes run afterwards
    # got a new loop, and a core.ssh_async transport then failed on the global runner's old one
    assert get_or_create_event_loop() is loop and not loop.is_closed()
