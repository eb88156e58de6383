"""``aiida-mlip validate``: judge a potential by its properties against a reference, here in the foreground."""

from __future__ import annotations

import click
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import echo

from aiida_mlip.cmdline.root import cmd_root
from aiida_mlip.cmdline.runs import (
    PSEUDO_FAMILY_OPTION,
    PW_CODE_OPTION,
    _labeller,
    _read_overrides,
    _read_structures,
)


def _one_structure(source: str, param_hint: str):
    """A StructureData (stored by the run when read from a file) from a pk or a file holding one structure."""
    from aiida import orm

    (found, *more) = _read_structures([source], param_hint=param_hint)
    if more:
        raise click.BadParameter(
            f"{source} holds {len(more) + 1} structures; give a file with one", param_hint=param_hint
        )
    return found if isinstance(found, orm.StructureData) else orm.StructureData(ase=found)


def _reference_inputs(
    spec: str | None, pw_code: str | None, pseudo_family: str | None, pw_protocol: str
) -> dict:
    """The work chain's reference inputs: ``reference`` (``emt``, ``ase:...``) or ``reference_labelling`` (``pw``)."""
    from aiida import orm

    if spec != "pw" and (pw_code or pseudo_family):
        raise click.UsageError("--pw-code and --pseudo-family go with --reference pw")
    if not spec:
        return {}
    if spec != "pw":
        return {"reference": orm.Dict(_labeller(spec, None, None, param_hint="--reference")["ase"])}
    pw = _labeller(spec, pseudo_family, pw_code, param_hint="--reference")["pw"]
    return {
        "reference_labelling": {
            "pw": {
                "code": pw["code"],
                "pseudo_family": orm.Str(pw["pseudo_family"]),
                "protocol": orm.Str(pw_protocol),
            }
        }
    }


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
    help="Reference: emt or ase:package.module.Class[:JSON kwargs] (run here, through ASE), or pw (pw.x "
    "on the EOS volume points, through AiiDA; eos only; with --pw-code and --pseudo-family).",
)
@PW_CODE_OPTION
@PSEUDO_FAMILY_OPTION
@click.option(
    "--pw-protocol",
    default="fast",
    show_default=True,
    help="PwBaseWorkChain protocol of --reference pw (fast, balanced, stringent).",
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
def cmd_validate(
    potential,
    structure,
    properties,
    reference,
    pw_code,
    pseudo_family,
    pw_protocol,
    settings_file,
    final,
    dataset,
):
    """Compute properties of a structure with POTENTIAL's committee and a reference; print the comparison.

    STRUCTURE is a file any ASE reader understands, or a StructureData pk. With --reference pw the
    volume points of the equation of state are labelled by pw.x jobs (one PwBaseWorkChain each) on the
    code's computer, and their Birch-Murnaghan fit is the reference of the eos rows.
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
    inputs.update(_reference_inputs(reference, pw_code, pseudo_family, pw_protocol))
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
    if "reference_eos" in node.outputs:
        fit = node.outputs.reference_eos
        echo.echo(
            f"reference eos: {fit['n_points']} volume points labelled by {fit['description']}, largest force "
            f"{fit['max_force']:.2g} eV/Angstrom; its energies and fit: verdi node attributes {fit.pk}"
        )
    if "phonon_bands" in node.outputs:
        echo.echo(
            f"phonon bands: verdi node repo cat {node.outputs.phonon_bands.pk} phonon_bands.png > phonon_bands.png"
        )
