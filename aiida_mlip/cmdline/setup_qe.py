"""``aiida-mlip setup pw`` and ``aiida-mlip setup pseudos``: what the ``pw`` labeller needs.

::

    aiida-mlip setup pw --computer localhost --executable /usr/bin/pw.x
    aiida-mlip setup pseudos --folder /usr/share/espresso/pseudo --elements Si,O --functional pbe \\
        --label debian/pbe
"""

from __future__ import annotations

import shutil

import click

from aiida_mlip.cmdline.setup import cmd_setup


def _parse_assignments(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``("Si=a.UPF", ...)`` -> ``{"Si": "a.UPF"}``; a value without ``=`` is a usage error."""
    result = {}
    for value in values:
        element, sep, rest = value.partition("=")
        if not sep or not element.strip() or not rest.strip():
            raise click.BadParameter(f"expected ELEMENT=VALUE, got {value!r}", param_hint=option)
        result[element.strip()] = rest.strip()
    return result


@cmd_setup.command("pw")
@click.option(
    "--computer",
    "computer_label",
    default="localhost",
    show_default=True,
    help="Label of the computer; 'localhost' is created (core.local, core.direct) if missing.",
)
@click.option("--executable", default=None, help="Path of pw.x on that computer [default: pw.x on the PATH].")
@click.option("--label", default="pw", show_default=True, help="Label of the code.")
@click.option(
    "--mpiprocs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="MPI processes per pw.x job: 1 runs pw.x without mpirun, N > 1 under `mpirun -np N`.",
)
def cmd_setup_pw(computer_label, executable, label, mpiprocs):
    """Register Quantum ESPRESSO's pw.x as a code (plugin quantumespresso.pw).

    With --mpiprocs 1 (the default) pw.x runs as one process without mpirun, which works everywhere,
    as root in a container too; with more, the labeller runs it under the computer's mpirun (as root on
    this machine with OpenMPI's OMPI_ALLOW_RUN_AS_ROOT variables).
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    from aiida_mlip.codes import get_or_create_localhost, register_pw_code

    if computer_label == "localhost":
        computer = get_or_create_localhost(computer_label)
    else:
        try:
            computer = orm.load_computer(computer_label)
        except NotExistent as exception:
            raise click.ClickException(
                f"no computer {computer_label!r}: set it up with `verdi computer setup`"
            ) from exception
    if executable is None:
        executable = shutil.which("pw.x")
        if executable is None:
            raise click.ClickException(
                "pw.x is not on the PATH: give --executable (Debian: apt-get install quantum-espresso)"
            )
    register_pw_code(computer, executable, label=label, mpiprocs=mpiprocs, log=click.echo)


@cmd_setup.command("pseudos")
@click.option(
    "--folder",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of UPF files, e.g. /usr/share/espresso/pseudo.",
)
@click.option("--elements", required=True, help="Comma-separated chemical symbols, e.g. Si,O.")
@click.option("--functional", required=True, help="Exchange-correlation functional: pbe, pbesol, lda (pz)...")
@click.option("--label", required=True, help="Label of the new aiida-pseudo family.")
@click.option(
    "--pseudo",
    "pseudos",
    multiple=True,
    metavar="EL=FILE",
    help="Take FILE (in --folder) for element EL; resolves an ambiguous choice. Repeatable.",
)
@click.option(
    "--cutoff",
    "cutoffs",
    multiple=True,
    metavar="EL=WFC[,RHO]",
    help="Recommended cutoffs of EL in Ry, instead of the UPF header's suggestion. Repeatable.",
)
def cmd_setup_pseudos(folder, elements, functional, label, pseudos, cutoffs):
    """Install a pseudopotential family with recommended cutoffs from a local folder of UPF files.

    One file per element is chosen for the functional (read from each UPF header): fully relativistic
    files are skipped, files that suggest cutoffs are preferred, and a remaining tie must be settled
    with --pseudo. Cutoffs come from the header, else 40 Ry (ecutrho 4x for norm-conserving, 8x for
    ultrasoft/PAW).
    """
    from aiida_mlip.pseudos import PseudoSelectionError, install_pseudo_family

    symbols = [symbol.strip() for symbol in elements.split(",") if symbol.strip()]
    explicit = _parse_assignments(pseudos, "--pseudo")
    overrides = {}
    for element, text in _parse_assignments(cutoffs, "--cutoff").items():
        try:
            overrides[element] = [float(value) for value in text.split(",")]
        except ValueError as exception:
            raise click.BadParameter(
                f"{element}={text}: cutoffs must be numbers (Ry)", param_hint="--cutoff"
            ) from exception
    try:
        family = install_pseudo_family(
            folder, symbols, functional, label, explicit=explicit, cutoffs=overrides
        )
    except (PseudoSelectionError, ValueError) as exception:
        raise click.ClickException(str(exception)) from exception
    sources = family.base.extras.get("mlip_sources")
    cutoff_values = family.get_cutoffs()
    click.echo(f"installed pseudopotential family {label!r} <{family.pk}> ({family.get_cutoffs_unit()}):")
    for element in sorted(sources):
        values = cutoff_values[element]
        click.echo(
            f"  {element}: {sources[element]}  ecutwfc {values['cutoff_wfc']:g}, ecutrho {values['cutoff_rho']:g}"
        )
