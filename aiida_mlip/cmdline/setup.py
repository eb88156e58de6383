"""``aiida-mlip setup``: register computers and codes a new user needs."""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile

import click

from aiida_mlip.cmdline.root import cmd_root

#: The engine executables and the CalcJob plugin each one serves.
ENGINE_EXECUTABLES = {
    "aiida-mlip-train": "mlip.train",
    "aiida-mlip-explore": "mlip.explore",
    "aiida-mlip-label": "mlip.label",
    "aiida-mlip-select": "mlip.select",
}


def find_executable(name: str) -> str | None:
    """Return the path of ``name`` installed beside this Python, else on the ``PATH``."""
    beside_python = pathlib.Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def get_or_create_localhost(label: str = "localhost"):
    """Return the computer ``label``; create and configure it (core.local, core.direct) if missing."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        workdir = pathlib.Path(tempfile.gettempdir()) / "aiida-mlip-run"
        computer = orm.Computer(
            label=label,
            hostname="localhost",
            description="This machine, set up by aiida-mlip",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(workdir),
        ).store()
        computer.set_minimum_job_poll_interval(0.5)
        computer.set_default_mpiprocs_per_machine(1)
    if not computer.is_configured:
        computer.configure(safe_interval=0.0)
    return computer


def register_engine_codes(
    computer, prefix: str = "mlip", log=click.echo, paths: dict | None = None, settings: dict | None = None
) -> dict:
    """Register every engine executable as an ``InstalledCode`` on ``computer``; return them by plugin.

    Codes are labelled ``<prefix>-<step>`` (``mlip-train``, ...). An existing code with that label on
    that computer is kept when it runs the same executable, and reported otherwise. ``paths`` maps
    each executable name to its path on ``computer`` (default: this installation's, found with
    :func:`find_executable`); ``settings`` may hold the codes' ``prepend_text``/``append_text``.

    Raises
    ------
    click.ClickException
        If ``paths`` is not given and an executable is not installed here.
    """
    from aiida_mlip.clusters import get_or_create_code

    codes = {}
    for executable, plugin in ENGINE_EXECUTABLES.items():
        path = paths[executable] if paths is not None else find_executable(executable)
        if path is None:
            raise click.ClickException(f"{executable} is not installed: run `pip install aiida-mlip` first")
        label = f"{prefix}-{executable.rsplit('-', 1)[1]}"
        codes[plugin] = get_or_create_code(computer, label, str(path), plugin, settings, log=log)
    return codes


@cmd_root.group("setup")
def cmd_setup():
    """Register computers, codes and pseudopotentials."""


@cmd_setup.command("localhost")
@click.option(
    "--computer",
    "computer_label",
    default="localhost",
    show_default=True,
    help="Label of the computer; created (core.local transport, core.direct scheduler) if missing.",
)
@click.option("--prefix", default="mlip", show_default=True, help="Codes are labelled <prefix>-train, ...")
def cmd_setup_localhost(computer_label, prefix):
    """Register the engine executables as codes on this machine."""
    computer = get_or_create_localhost(computer_label)
    register_engine_codes(computer, prefix=prefix)


@cmd_setup.command("computer")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
def cmd_setup_computer(config):
    """Create a computer and its codes from a cluster YAML file (see examples/clusters/).

    The same file, given to `aiida-mlip launch --cluster`, sends each step there with its options.
    """
    from aiida_mlip.clusters import ClusterConfigError, load_cluster_config, setup_cluster

    try:
        codes = setup_cluster(load_cluster_config(config), log=click.echo)
    except ClusterConfigError as exception:
        raise click.ClickException(str(exception)) from None
    click.echo(
        f"ready: {len(codes)} code(s): " + ", ".join(sorted(code.full_label for code in codes.values()))
    )


@cmd_setup.command("profile")
@click.option("--name", default="aiida-mlip", show_default=True, help="Name of the AiiDA profile.")
@click.option(
    "--email", default="aiida@localhost", show_default=True, help="Email of the profile's default user."
)
@click.option("--postgres-host", default="127.0.0.1", show_default=True)
@click.option("--postgres-port", default=5432, show_default=True, type=int)
@click.option(
    "--postgres-admin",
    default="postgres",
    show_default=True,
    help="A PostgreSQL user that may create roles and databases.",
)
@click.option(
    "--postgres-admin-password", default="", help="Its password (none: trust or peer authentication)."
)
@click.option("--rabbitmq-host", default="127.0.0.1", show_default=True)
@click.option("--rabbitmq-port", default=5672, show_default=True, type=int)
@click.option("--rabbitmq-username", default="guest", show_default=True)
@click.option("--rabbitmq-password", default="guest", show_default=True)
@click.option(
    "--default/--no-default",
    "make_default",
    default=True,
    show_default=True,
    help="Make it the default profile.",
)
def cmd_setup_profile(name, email, make_default, **services):
    """Create a production profile: a PostgreSQL database (core.psql_dos) and RabbitMQ (core.rabbitmq).

    Checks both services first; creates the role and database `aiida-<name>` (UTF8, from template0)
    and the profile. Running it again for an existing profile changes nothing.
    """
    from aiida.manage.configuration import get_config

    from aiida_mlip.profiles import ProfileSettings, ProfileSetupError, create_production_profile

    settings = ProfileSettings(name=name, email=email, options={"runner.poll.interval": 1}, **services)
    config = get_config()
    try:
        done = create_production_profile(settings, config=config)
    except ProfileSetupError as exception:
        raise click.ClickException(str(exception)) from None
    for line in done:
        click.echo(line)
    if make_default and config.default_profile_name != name:
        config.set_default_profile(name, overwrite=True)
        config.store()
        click.echo(f"made {name!r} the default profile")
    click.echo(f"check it with: verdi -p {name} status")
