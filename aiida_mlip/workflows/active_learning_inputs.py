"""The inputs of ``ActiveLearningWorkChain``: their validation and the builder filled from a protocol.

The validator checks every settings block together before anything runs (bad input is a one-line
error at submission); the builder fills the work chain's inputs from ``protocols/active_learning.yaml``
and the user's overrides.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.learning.initial import InitialSettings, initial_structures
from aiida_mlip.learning.settings import ActiveLearningSettings, explore_parameters
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.settings import SettingsError

__all__ = (
    "builder_from_protocol",
    "explore_parameters",
    "generate_initial_structures",
    "join_structures",
    "start_structures",
    "validate_inputs",
)


@calcfunction
def join_structures(**structures: orm.StructureData) -> StructureSetData:
    """The start structures as one ``StructureSetData``, in the order of their link labels.

    Run as a calcfunction so the set is linked to the ``StructureData`` it came from, and every
    potential trained from it can be found from the user's structure (``potentials_from``).
    """
    keys = sorted(structures, key=lambda key: int(key.rsplit("_", 1)[1]))
    return StructureSetData.from_atoms([structures[key].get_ase() for key in keys])


@calcfunction
def generate_initial_structures(structures: StructureSetData, parameters: orm.Dict) -> StructureSetData:
    """Return each structure followed by ``copies_per_structure`` rattled and strained copies of it.

    The ``initial`` block (:class:`~aiida_mlip.learning.initial.InitialSettings`) as a ``Dict``; see
    :func:`~aiida_mlip.learning.initial.initial_structures` for what the copies are.
    """
    images = initial_structures(structures.get_atoms(), InitialSettings.from_mapping(parameters.get_dict()))
    return StructureSetData(Frames.from_atoms(images, require_labels=False))


def start_structures(structures) -> StructureSetData:
    """``structures`` (a ``StructureSetData``, or a list of ``StructureData`` / ASE ``Atoms``) as one set.

    With at least one ``StructureData`` in the list, the set comes from :func:`join_structures`
    (ASE ``Atoms`` become ``StructureData`` on the way), so it keeps its provenance.
    """
    if isinstance(structures, StructureSetData):
        return structures
    structures = list(structures)
    if not any(isinstance(s, orm.StructureData) for s in structures):
        return StructureSetData.from_atoms(structures)
    nodes = [s if isinstance(s, orm.StructureData) else orm.StructureData(ase=s) for s in structures]
    return join_structures(**{f"structure_{index}": node for index, node in enumerate(nodes)})


def settings_of(inputs) -> dict:
    """The settings blocks among the work chain's inputs, as one mapping for ActiveLearningSettings."""
    values = {
        key: inputs[key].get_dict()
        for key in ("initial", "exploration", "trust", "selection", "convergence", "warm_start_parameters")
        if key in inputs
    }
    if "warm_start" in inputs:
        values["warm_start"] = inputs["warm_start"].value
    parameters = inputs.get("train", {}).get("parameters")
    if parameters is not None:
        values["training"] = parameters.get_dict()
    return values


def validate_inputs(inputs, _):
    """Check the loop's settings together, before anything runs.

    Every settings block goes through :class:`~aiida_mlip.learning.settings.ActiveLearningSettings`
    (the model ``get_protocol_inputs`` also uses): unknown keys are refused with the nearest valid
    key, and every exploration job's MD parameters are checked; ``convergence.properties`` and
    ``exploration.generate`` are checked against the structures and the cutoff.
    """
    try:
        settings = ActiveLearningSettings.from_mapping(settings_of(inputs))
    except SettingsError as exception:
        return str(exception)
    from aiida_mlip.workflows.property_convergence import validate_property_convergence

    message = validate_property_convergence(settings, inputs)
    if message:
        return message
    potential, structures = inputs.get("potential"), inputs.get("structures")
    from aiida_mlip.workflows.generation import validate_collective_variables, validate_generation

    message = validate_generation(settings.exploration.generate, structures) or validate_collective_variables(
        inputs["exploration"].get_dict(), structures
    )
    if message:
        return message
    if potential is not None and structures is not None:
        unknown = sorted(set(structures.elements) - set(potential.elements))
        if unknown:
            return f"the structures have elements {unknown} that the initial potential does not know"
    message = _validate_parent_model(inputs, settings)
    if message:
        return message
    if potential is not None and potential.model_backend != settings.training.backend:
        return (
            f"the initial potential is a `{potential.model_backend}` model but training.backend is "
            f"`{settings.training.backend}`: warm starts continue a model of the same backend"
        )
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
    return None


def _validate_parent_model(inputs, settings) -> str | None:
    """The ``parent_model`` input: of ``training.backend``, knowing the structures' elements, not beside
    an initial ``potential``; a ``training.parent_model`` path must have become that input."""
    if "parent_model" in settings_of(inputs).get("training", {}):
        return (
            "training.parent_model is a path: get_builder_from_protocol stores it as the `parent_model` input "
            "(or set builder.parent_model = PotentialData.from_parent_model(path) and drop the key)"
        )
    parent = inputs.get("parent_model")
    if parent is None:
        return None
    if inputs.get("potential") is not None:
        return "give either an initial `potential` or a `parent_model` to fine-tune the first committee from"
    backend = settings.training.backend
    if parent.model_backend != backend:
        return (
            f"training.parent_model is a `{parent.model_backend}` model but training.backend is `{backend}`: "
            "a committee is fine-tuned from a parent of its own backend"
        )
    elements = set(inputs["structures"].elements) if inputs.get("structures") is not None else set()
    if inputs.get("dataset") is not None:
        elements |= set(inputs["dataset"].elements)
    missing = sorted(elements - set(parent.elements))
    if missing:
        return (
            f"training.parent_model knows the elements {parent.elements}, not {missing} of the structures: "
            "fine-tune from a parent that covers them, or train from scratch"
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
        A ``StructureSetData``, or a list of ``StructureData`` or ASE ``Atoms``. A list with
        ``StructureData`` in it is joined by the :func:`join_structures` calcfunction, which links the
        set to them.
    labeller
        ``{"ase": {"calculator": "ase.calculators.emt.EMT", "kwargs": {...}}}``, or
        ``{"pw": {"code": <pw.x code>, "pseudo_family": "...", ...}}``.
    codes
        ``{"mlip.train": code, "mlip.explore": code, "mlip.select": code, "mlip.label": code}``;
        missing ones are registered on ``localhost`` (``aiida-mlip setup localhost``).
    overrides
        Merged over the protocol's inputs (``exploration``, ``trust``, ``selection``,
        ``convergence``, ``initial``, ``training`` (the training parameters), ``warm_start``).
        ``training.parent_model`` (a path) becomes the ``parent_model`` input, a ``PotentialData``
        (:meth:`~aiida_mlip.data.potential.PotentialData.from_parent_model`).
    options
        Per-step ``metadata.options``: ``{"explore": {...}, "select": {...}, "label": {...}, "train": {...}}``
        (``queue_name``, ``account``, ``resources``, ``max_wallclock_seconds``,
        ``custom_scheduler_commands``...). ``train`` may also hold ``device`` (``auto``, ``cpu``,
        ``cuda``), which goes to the training's ``device`` input; ``explore`` and ``label`` may hold
        ``max_concurrent``, the most jobs of that step running at once. The codes decide the computer of
        each step, so labelling can run on a CPU partition and training on a GPU node.
    """
    inputs = cls.get_protocol_inputs(protocol, overrides)
    if codes is None or any(
        key not in codes for key in ("mlip.train", "mlip.explore", "mlip.select", "mlip.label")
    ):
        from aiida_mlip.codes import get_or_create_localhost, register_engine_codes

        defaults = register_engine_codes(get_or_create_localhost(), log=lambda *_: None)
        codes = {**defaults, **(codes or {})}
    structures = start_structures(structures)
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
    training = dict(inputs["training"])
    if training.get("parent_model") is not None:  # the file becomes a node: an input the lineage shows
        from aiida_mlip.data.potential import PotentialData
        from aiida_mlip.potentials.train import TrainConfig

        backend = TrainConfig.from_mapping(training).backend
        builder.parent_model = PotentialData.from_parent_model(training.pop("parent_model"), backend)
    training.pop("parent_model", None)
    builder.train.parameters = orm.Dict(training)
    for step in ("explore", "label"):
        if "max_concurrent" in options.get(step, {}):
            options = {**options, step: dict(options[step])}
            builder[step].max_concurrent = orm.Int(options[step].pop("max_concurrent"))
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
