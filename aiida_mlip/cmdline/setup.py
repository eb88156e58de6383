"""``aiida-mlip setup``: register computers and codes a new user needs."""

from __future__ import annotations

import click

from aiida_mlip.cmdline.root import cmd_root


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
    from aiida_mlip.codes import CodeSetupError, get_or_create_localhost, register_engine_codes

    computer = get_or_create_localhost(computer_label)
    try:
        register_engine_codes(computer, prefix=prefix, log=click.echo)
    except CodeSetupError as exception:
        raise click.ClickException(str(exception)) from None


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
