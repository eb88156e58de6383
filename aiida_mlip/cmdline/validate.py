"""``aiida-mlip validate``: judge a potential by its properties against a reference, here in the foreground."""

from __future__ import annotations

import click
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import echo

from aiida_mlip.cmdline.root import cmd_root
from aiida_mlip.cmdline.runs import _labeller, _read_overrides, _read_structures


def _one_structure(source: str, param_hint: str):
    """A StructureData (stored by the run when read from a file) from a pk or a file holding one structure."""
    from aiida import orm

    (found, *more) = _read_structures([source], param_hint=param_hint)
    if more:
        raise click.BadParameter(
            f"{source} holds {len(more) + 1} structures; give a file with one", param_hint=param_hint
        )
    return found if isinstance(found, orm.StructureData) else orm.StructureData(ase=found)


def _reference(spec: str) -> dict:
    """``emt`` or ``ase:package.module.Class[:JSON kwargs]``, as the ASE labeller's settings."""
    if spec == "pw":
        raise click.BadParameter(
            "the reference runs here, through ASE: use emt or ase:package.module.Class[:JSON kwargs]",
            param_hint="--reference",
        )
    return _labeller(spec, None, None, param_hint="--reference")["ase"]


@cmd_root.command("validate")
@arguments.DATUM("potential", type=types.DataParamType(sub_classes=("aiida.data:mlip.potential",)))
@click.argument("structure")
@click.option(
    "--properties",
    help="Comma-separated, of eos, elastic, phonons, neb, cutoff, minima "
    "[default: eos,elastic,phonons, or those of --settings].",
)
@click.option(
    "--reference",
    help="Reference calculator: emt or ase:package.module.Class[:JSON kwargs] (as --labeller of launch).",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file of validation settings: properties, eos/elastic/phonons/neb/cutoff/minima blocks, tolerances.",
)
@click.option("--final", help="NEB final state (a file or a StructureData pk); STRUCTURE is the initial one.")
@click.option(
    "--dataset",
    type=types.DataParamType(sub_classes=("aiida.data:mlip.dataset",)),
    help="DatasetData of the cutoff check [default: the potential's training set].",
)
def cmd_validate(potential, structure, properties, reference, settings_file, final, dataset):
    """Compute properties of a structure with POTENTIAL's committee and a reference; print the comparison.

    STRUCTURE is a file any ASE reader understands, or a StructureData pk.
    """
    from aiida import orm

    from aiida_mlip.cmdline.errors import run_refusing, set_input
    from aiida_mlip.workflows.validation import ValidationWorkChain

    settings = (
        _read_overrides(
            settings_file,
            param_hint="--settings",
            example="a mapping of validation settings (e.g. `eos: {points: 7}`)",
        )
        or {}
    )
    if properties:
        settings["properties"] = [name.strip() for name in properties.split(",") if name.strip()]
    inputs = {"potential": potential, "structure": _one_structure(structure, "STRUCTURE")}
    if final:
        inputs["final_structure"] = _one_structure(final, "--final")
    if dataset is not None:
        inputs["dataset"] = dataset
    if settings:
        inputs["settings"] = orm.Dict(settings)
    if reference:
        inputs["reference"] = orm.Dict(_reference(reference))
    source = f" (settings from --settings {settings_file})" if settings_file else ""
    builder = ValidationWorkChain.get_builder()
    for port, value in inputs.items():
        set_input(builder, port, value, source)
    # the inputs together are validated (and refused) before anything runs
    node = run_refusing(builder, source)
    _print_validation(node)
    if not node.is_finished_ok:
        raise SystemExit(1)


def _print_validation(node):
    from aiida_mlip.properties.validation import format_table

    if "comparison" not in node.outputs:
        return
    comparison = node.outputs.comparison.get_dict()
    echo.echo(format_table(comparison))
    if comparison["n_judged"]:
        echo.echo(
            f"{comparison['n_within_tolerance']} of {comparison['n_judged']} quantities within tolerance "
            f"(reference {comparison['reference']}); committee of {node.inputs.potential.committee_size}: "
            "mean +- std over members"
        )
    if "spurious_minima" in node.outputs:
        found = node.outputs.spurious_minima
        echo.echo(
            f"spurious minima: {found.n_frames} frames labelled by the reference, DatasetData <{found.pk}> "
            "(give it to the active-learning work chain as its `dataset`)"
        )
    if "phonon_bands" in node.outputs:
        echo.echo(
            f"phonon bands: verdi node repo cat {node.outputs.phonon_bands.pk} phonon_bands.png > phonon_bands.png"
        )
