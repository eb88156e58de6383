"""``aiida-mlip potential|dataset`` and ``verdi data mlip.potential|mlip.dataset``."""

from __future__ import annotations

import pathlib

import click
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import echo

from aiida_mlip.cmdline.errors import MlipCommandGroup
from aiida_mlip.cmdline.root import cmd_root

#: The node arguments refuse a pk of another type with one line naming it.
POTENTIAL = arguments.DATUM("potential", type=types.DataParamType(sub_classes=("aiida.data:mlip.potential",)))
DATASET = arguments.DATUM("dataset", type=types.DataParamType(sub_classes=("aiida.data:mlip.dataset",)))


def _table(rows, headers):
    from tabulate import tabulate

    return tabulate(rows, headers=headers)


@click.group("potential", cls=MlipCommandGroup)
def cmd_potential():
    """Inspect and export committee potentials (PotentialData)."""


@cmd_potential.command("list")
@click.option("--element", "-e", multiple=True, help="Only potentials that know these elements.")
@click.option("--limit", default=50, show_default=True)
def potential_list(element, limit):
    """List potentials, newest first."""
    from aiida.orm import QueryBuilder

    from aiida_mlip.data.potential import PotentialData

    filters = {"attributes.elements": {"contains": list(element)}} if element else {}
    query = (
        QueryBuilder()
        .append(PotentialData, filters=filters, project=["*"])
        .order_by({PotentialData: {"ctime": "desc"}})
        .limit(limit)
    )
    rows = [
        (
            p.pk,
            " ".join(p.elements),
            p.committee_size,
            p.cutoff,
            p.architecture,
            p.ctime.strftime("%Y-%m-%d %H:%M"),
        )
        for p in query.all(flat=True)
    ]
    echo.echo(
        _table(rows, ["PK", "elements", "K", "cutoff/A", "architecture", "created"])
        if rows
        else "no potentials"
    )


@cmd_potential.command("show")
@POTENTIAL
def potential_show(potential):
    """Show a potential's attributes and the metrics of the training that made it."""
    attributes = potential.base.attributes.all
    for key in sorted(attributes):
        echo.echo(f"{key:>18}: {attributes[key]}")
    creator = potential.creator
    if creator is not None and "metrics" in creator.outputs:
        metrics = creator.outputs.metrics.get_dict()
        for split in ("train", "valid"):
            mean = metrics.get(split, {}).get("mean") or {}
            if mean:
                echo.echo(
                    f"{split + ' RMSE':>18}: E {1000 * (mean.get('energy_per_atom') or float('nan')):.2f} meV/atom, "
                    f"F {1000 * (mean.get('forces') or float('nan')):.1f} meV/A"
                )
        echo.echo(f"{'trained by':>18}: {creator.process_label}<{creator.pk}>")


@cmd_potential.command("export")
@POTENTIAL
@click.argument("path", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--overwrite", is_flag=True)
def potential_export(potential, path, overwrite):
    """Write the model file; it loads without AiiDA: aiida_mlip.potentials.load_calculator(PATH)."""
    try:
        potential.export(path, overwrite=overwrite)
    except FileExistsError as exception:
        raise click.BadParameter(f"{exception}", param_hint="PATH") from None
    echo.echo_success(f"potential <{potential.pk}> written to {path} (sha256 {potential.sha256[:12]}...)")


@click.group("dataset", cls=MlipCommandGroup)
def cmd_dataset():
    """Inspect and export labelled datasets (DatasetData)."""


@cmd_dataset.command("list")
@click.option("--limit", default=50, show_default=True)
def dataset_list(limit):
    """List datasets, newest first."""
    from aiida.orm import QueryBuilder

    from aiida_mlip.data.dataset import DatasetData

    query = (
        QueryBuilder()
        .append(DatasetData, project=["*"])
        .order_by({DatasetData: {"ctime": "desc"}})
        .limit(limit)
    )
    rows = [
        (d.pk, d.version, d.n_frames, d.n_atoms, " ".join(d.elements), d.ctime.strftime("%Y-%m-%d %H:%M"))
        for d in query.all(flat=True)
    ]
    echo.echo(
        _table(rows, ["PK", "version", "frames", "atoms", "elements", "created"]) if rows else "no datasets"
    )


@cmd_dataset.command("export")
@DATASET
@click.argument("path", type=click.Path(dir_okay=False, path_type=pathlib.Path))
def dataset_export(dataset, path):
    """Write the frames and labels: extxyz (.xyz/.extxyz) or the exact HDF5 file (.h5)."""
    if path.suffix in (".h5", ".hdf5"):
        dataset.export_hdf5(path)
    elif path.suffix in (".xyz", ".extxyz"):
        dataset.export_extxyz(path)
    else:
        raise click.BadParameter(
            f"{path}: unknown format {path.suffix!r}; use .extxyz/.xyz or .h5/.hdf5", param_hint="PATH"
        )
    echo.echo_success(f"dataset <{dataset.pk}> ({dataset.n_frames} frames) written to {path}")


cmd_root.add_command(cmd_potential)
cmd_root.add_command(cmd_dataset)
