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
