"""The inputs of ``ActiveLearningWorkChain``: their validation and the builder filled from a protocol.

The validator checks every settings block together before anything runs (bad input is a one-line
error at submission); the builder fills the work chain's inputs from ``protocols/active_learning.yaml``
and the user's overrides.
"""

from __future__ import annotations

from aiida import orm

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.learning.convergence import ConvergenceSettings
from aiida_mlip.selection.settings import SelectionSettings
from aiida_mlip.selection.trust import TrustWindow
from aiida_mlip.settings import SettingsError

__all__ = ("builder_from_protocol", "explore_parameters", "validate_inputs")


def explore_parameters(md: dict, entry: dict, trust: dict) -> dict:
    """The ExploreParameters of one job, without its temperature (set per job)."""
    parameters = dict(md)
    parameters.update(
        {key: value for key, value in entry.items() if key not in ("temperatures", "pressures")}
    )
    parameters.pop("watch_gamma", None)
    parameters.setdefault("trust", {key: trust[key] for key in ("lo", "hi") if key in trust})
    return parameters


def validate_inputs(inputs, _):
    """Check the loop's settings together, before anything runs."""
    from aiida_mlip.exploration.parameters import ExploreParameters

    trust = inputs["trust"].get_dict() if "trust" in inputs else {}
    try:
        TrustWindow.from_mapping(trust)
        if "selection" in inputs:
            SelectionSettings.from_mapping(inputs["selection"].get_dict())
    except ValueError as exception:
        return str(exception)
    exploration = inputs["exploration"].get_dict() if "exploration" in inputs else {}
    schedule = exploration.get("schedule") or []
    if not schedule:
        return "the exploration schedule is empty: give at least one entry with `temperatures`"
    for number, entry in enumerate(schedule):
        if not entry.get("temperatures"):
            return f"exploration schedule entry {number} has no temperatures"
        for temperature in entry["temperatures"]:
            try:
                ExploreParameters.from_mapping(
                    dict(explore_parameters(exploration.get("md", {}), entry, trust), temperature=temperature)
                )
            except ValueError as exception:
                return f"exploration schedule entry {number}: {exception}"
    try:
        ConvergenceSettings.from_mapping(inputs["convergence"].get_dict() if "convergence" in inputs else {})
    except SettingsError as exception:
        return str(exception)
    potential, structures = inputs.get("potential"), inputs.get("structures")
    if potential is not None and structures is not None:
        unknown = sorted(set(structures.elements) - set(potential.elements))
        if unknown:
            return f"the structures have elements {unknown} that the initial potential does not know"
    label = inputs.get("label", {})
    if structures is not None and "pw" in label:
        from aiida_mlip.workflows.pw_labels import validate_pw_inputs

        message = validate_pw_inputs(structures, label["pw"])
        if message:
            return f"pw labeller: {message}"
    if structures is not None and "labeller" in label.get("ase", {}):
        from aiida_mlip.calculations.label import validate_ase_labelling

        message = validate_ase_labelling(structures, label["ase"]["labeller"])
        if message:
            return f"ase labeller: {message}"
    if "initial" in inputs:
        initial = inputs["initial"].get_dict()
        if (
            initial.get("copies_per_structure", 0) < 1
            or initial.get("rattle", -1) < 0
            or initial.get("strain", -1) < 0
        ):
            return (
                f"initial needs copies_per_structure >= 1, rattle >= 0 (Angstrom), strain >= 0; got {initial}"
            )
    return None


def builder_from_protocol(
    cls,
    structures,
    labeller: dict,
    codes: dict | None = None,
    protocol: str | None = None,
    overrides: dict | None = None,
    dataset=None,
    potential=None,
    options: dict | None = None,
):
    """Return a builder of ``cls`` filled from a protocol (``fast``, ``balanced``, ``precise``).

    Parameters
    ----------
    structures
        A ``StructureSetData``, or a list of ``StructureData`` or ASE ``Atoms``.
    labeller
        ``{"ase": {"calculator": "ase.calculators.emt.EMT", "kwargs": {...}}}``, or
        ``{"pw": {"code": <pw.x code>, "pseudo_family": "...", ...}}``.
    codes
        ``{"mlip.train": code, "mlip.explore": code, "mlip.select": code, "mlip.label": code}``;
        missing ones are registered on ``localhost`` (``aiida-mlip setup localhost``).
    overrides
        Merged over the protocol's inputs (``exploration``, ``trust``, ``selection``,
        ``convergence``, ``initial``, ``training`` (the training parameters), ``warm_start``).
    options
        Per-step ``metadata.options``: ``{"explore": {...}, "select": {...}, "label": {...}, "train": {...}}``
        (``queue_name``, ``account``, ``resources``, ``max_wallclock_seconds``,
        ``custom_scheduler_commands``...). ``train`` may also hold ``device`` (``auto``, ``cpu``,
        ``cuda``), which goes to the training's ``device`` input. The codes decide the computer of
        each step, so labelling can run on a CPU partition and training on a GPU node.
    """
    inputs = cls.get_protocol_inputs(protocol, overrides)
    if codes is None or any(
        key not in codes for key in ("mlip.train", "mlip.explore", "mlip.select", "mlip.label")
    ):
        from aiida_mlip.cmdline.setup import get_or_create_localhost, register_engine_codes

        defaults = register_engine_codes(get_or_create_localhost(), log=lambda *_: None)
        codes = {**defaults, **(codes or {})}
    if not isinstance(structures, StructureSetData):
        images = [s.get_ase() if isinstance(s, orm.StructureData) else s for s in structures]
        structures = StructureSetData.from_atoms(images)
    options = options or {}
    builder = cls.get_builder()
    builder.structures = structures
    if dataset is not None:
        builder.dataset = dataset
    if potential is not None:
        builder.potential = potential
    for key in ("initial", "exploration", "trust", "selection", "convergence"):
        setattr(builder, key, orm.Dict(inputs[key]))
    builder.warm_start = orm.Bool(inputs.get("warm_start", True))
    if inputs.get("warm_start_parameters"):
        builder.warm_start_parameters = orm.Dict(inputs["warm_start_parameters"])
    builder.explore.code = codes["mlip.explore"]
    builder.select.code = codes["mlip.select"]
    builder.train.code = codes["mlip.train"]
    builder.train.parameters = orm.Dict(inputs["training"])
    for step in ("explore", "select", "train"):
        step_options = dict(options.get(step, {}))
        if step == "train" and "device" in step_options:
            builder.train.device = orm.Str(step_options.pop("device"))
        if step_options:
            builder[step].metadata.options = step_options
    if "ase" in labeller:
        builder.label.ase.code = codes["mlip.label"]
        builder.label.ase.labeller = orm.Dict(labeller["ase"])
        if "label" in options:
            builder.label.ase.metadata.options = options["label"]
    elif "pw" in labeller:
        for key, value in labeller["pw"].items():
            builder.label.pw[key] = (
                orm.Str(value)
                if isinstance(value, str)
                else (orm.Dict(value) if isinstance(value, dict) else value)
            )
        if "label" in options:
            builder.label.pw.options = orm.Dict(options["label"])
    else:
        raise ValueError("labeller must have an `ase` or a `pw` entry")
    return builder
