"""``aiida-mlip neb``: an NEB barrier with active learning along the path, here in the foreground."""

from __future__ import annotations

import click
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import echo

from aiida_mlip.cmdline.root import cmd_root
from aiida_mlip.cmdline.runs import PSEUDO_FAMILY_OPTION, PW_CODE_OPTION, _labeller, _read_overrides
from aiida_mlip.cmdline.validate import _one_structure


def _dataset(potential, dataset):
    """``dataset``, else the dataset ``potential`` was trained on (its ``training_set_uuid``)."""
    if dataset is not None:
        return dataset
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    from aiida_mlip.data.dataset import DatasetData

    uuid = potential.training_set_uuid
    try:
        found = orm.load_node(uuid) if uuid else None
    except NotExistent:
        found = None
    if not isinstance(found, DatasetData):
        raise click.UsageError(
            f"potential <{potential.pk}> does not name a stored training dataset: give it with --dataset PK"
        )
    return found


def _training_parameters(settings_file: str | None) -> dict:
    """The training parameters of ``settings_file``, else the ``fast`` protocol's with its warm-start ones.

    Without bootstrap resampling: a handful of new labels would be missed by about a third of the
    members, whose deviation on them then stays high round after round (README, "NEB with active
    learning along the path").
    """
    if settings_file:
        return (
            _read_overrides(
                settings_file,
                param_hint="--training",
                example="a mapping of training parameters (e.g. `lr: 0.001`)",
            )
            or {}
        )
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    inputs = ActiveLearningWorkChain.get_protocol_inputs("fast")
    return {**inputs["training"], **(inputs.get("warm_start_parameters") or {}), "bootstrap": False}


@cmd_root.command("neb")
@arguments.DATUM("potential", type=types.DataParamType(sub_classes=("aiida.data:mlip.potential",)))
@click.argument("initial")
@click.argument("final")
@click.option(
    "--labeller",
    default="emt",
    show_default=True,
    help="emt, ase:package.module.Class[:JSON kwargs] or pw (with --pw-code and --pseudo-family).",
)
@PW_CODE_OPTION
@PSEUDO_FAMILY_OPTION
@click.option(
    "--dataset",
    type=types.DataParamType(sub_classes=("aiida.data:mlip.dataset",)),
    help="Pk of the dataset the potential was trained on [default: the potential's training set].",
)
@click.option("--images", type=int, help="Images of the path, end points included (at least 3) [default: 5].")
@click.option(
    "--threshold", type=float, help="Trusted below this max force deviation, eV/Angstrom [default: 0.15]."
)
@click.option("--max-rounds", type=int, help="Most label-and-retrain rounds [default: 3].")
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file of NebLearningSettings: neb (images, climb, fmax, steps, ...), threshold, max_rounds.",
)
@click.option(
    "--training",
    "training_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file of training parameters [default: the fast protocol's, warm-start lr, no bootstrap].",
)
def cmd_neb(
    potential,
    initial,
    final,
    labeller,
    pw_code,
    pseudo_family,
    dataset,
    images,
    threshold,
    max_rounds,
    settings_file,
    training_file,
):
    """Compute the NEB barrier from INITIAL to FINAL with POTENTIAL; label and retrain until every image is trusted.

    INITIAL and FINAL are files any ASE reader understands, or StructureData pks: the same atoms, in
    the same order and cell.
    """
    from aiida import orm

    from aiida_mlip.cmdline.errors import run_refusing, set_input
    from aiida_mlip.codes import get_or_create_localhost, register_engine_codes
    from aiida_mlip.workflows.neb import NebActiveLearningWorkChain

    settings = (
        _read_overrides(
            settings_file,
            param_hint="--settings",
            example="a mapping of NEB settings (e.g. `neb: {images: 5}`)",
        )
        or {}
    )
    if images is not None:
        settings["neb"] = {**settings.get("neb", {}), "images": images}
    if threshold is not None:
        settings["threshold"] = threshold
    if max_rounds is not None:
        settings["max_rounds"] = max_rounds
    label = _labeller(labeller, pseudo_family, pw_code)
    codes = register_engine_codes(get_or_create_localhost(), log=lambda *_: None)
    builder = NebActiveLearningWorkChain.get_builder()
    inputs = [
        (builder, "potential", potential),
        (builder, "dataset", _dataset(potential, dataset)),
        (builder, "initial_structure", _one_structure(initial, "INITIAL")),
        (builder, "final_structure", _one_structure(final, "FINAL")),
        (builder, "settings", orm.Dict(settings)),
        (builder.training.train, "code", codes["mlip.train"]),
        (builder.training.train, "parameters", orm.Dict(_training_parameters(training_file))),
    ]
    if "ase" in label:
        inputs += [
            (builder.label.ase, "code", codes["mlip.label"]),
            (builder.label.ase, "labeller", orm.Dict(label["ase"])),
        ]
    else:
        inputs += [
            (builder.label.pw, "code", label["pw"]["code"]),
            (builder.label.pw, "pseudo_family", orm.Str(label["pw"]["pseudo_family"])),
        ]
    for namespace, port, value in inputs:
        set_input(namespace, port, value)
    node = run_refusing(builder)  # the inputs are validated (and refused) before anything runs
    _print_rounds(node)
    if not node.is_finished_ok:
        raise SystemExit(1)


def _print_rounds(node):
    from tabulate import tabulate

    if "barrier" not in node.outputs:
        return
    barrier = node.outputs.barrier.get_dict()
    rows = [
        [
            record["round"],
            f"{record['barrier']:.3f} +- {record['barrier_spread']:.3f}",
            f"{record['reverse_barrier']:.3f} +- {record['reverse_barrier_spread']:.3f}",
            f"{max(record['max_force_deviation']):.3f}",
            ",".join(str(index) for index in record["untrusted"]) or "-",
            record["n_labelled"],
            record["n_frames"],
        ]
        for record in barrier["rounds"]
    ]
    headers = [
        "round",
        "barrier (eV)",
        "reverse (eV)",
        "max dev (eV/A)",
        "untrusted",
        "labelled",
        "trained on",
    ]
    echo.echo(tabulate(rows, headers=headers))
    echo.echo(
        f"barrier {barrier['barrier']:.3f} +- {barrier['barrier_spread']:.3f} eV ("
        + ("every image trusted" if barrier["trusted"] else "NOT trusted")
        + f", threshold {barrier['threshold']:g} eV/A); potential <{node.outputs.potential.pk}>, "
        f"dataset <{node.outputs.dataset.pk}>"
    )
