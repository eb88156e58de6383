"""``ValidationWorkChain`` (``mlip.validate``): judge a potential by the properties people compute with it.

Each property asked for (equation of state, elastic constants, phonons, NEB barrier; see
:mod:`aiida_mlip.properties.validation`) is one ``compute_property`` calcfunction whose inputs are
the potential, the structure, the settings and, if given, the reference calculator: it runs the
property kernel once per committee member (``mean +- std``) and once with the reference, and
returns the property's rows of the comparison table. ``collect_comparison`` joins them into the
``comparison`` output. A quantity out of tolerance is a result, reported in the table; a property
whose calculation fails is an exit code (the others are still computed and returned).

The reference is either an ASE calculator in the form of the ASE labeller (``LabelCalculation``'s
``labeller``): ``{"calculator": "ase.calculators.emt.EMT", "kwargs": {}}``, run in this process like
the potential; or, for the equation of state, pw.x in the form of the active-learning loop's ``pw``
labeller (``reference_labelling.pw``: code, pseudo_family, protocol, overrides, options): the EOS
volume points are labelled by ``LabellingWorkChain`` (one ``PwBaseWorkChain`` each) and fitted by
``fit_reference_eos`` (see :mod:`aiida_mlip.workflows.reference_eos`), whose result is the reference
of the ``eos`` rows.

The ``cutoff`` check runs on labelled frames: the ``dataset`` input, or else the potential's
training set (the ``DatasetData`` its ``training_set_uuid`` names), an input of its calcfunction
either way. ``minima`` returns the minima it found (``minima``, a ``StructureSetData``) and, with a
reference, the spurious ones labelled by it (``spurious_minima``, a ``DatasetData`` whose
``label_settings`` are those of the ASE labeller's: the active-learning work chain takes it as its
``dataset``).
"""

from __future__ import annotations

import math
import pathlib
import tempfile

from aiida import orm
from aiida.engine import ExitCode, ToContext, WorkChain, calcfunction, if_, while_

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.engine.label import check_elements, make_calculator, validate_labeller
from aiida_mlip.properties.checks import PropertyInputError
from aiida_mlip.properties.eos import EOSResult
from aiida_mlip.properties.validation import ValidationSettings, check_inputs, summarise, validate_property
from aiida_mlip.settings import SettingsError, settings_refusal
from aiida_mlip.workflows.labelling import LabellingWorkChain
from aiida_mlip.workflows.reference_eos import (
    describe_reference,
    eos_volume_points,
    fit_reference_eos,
    validate_labelled_reference,
)

__all__ = ("ValidationWorkChain", "collect_comparison", "compute_property")

#: Exit status of ``compute_property`` when the kernel raised.
PROPERTY_FAILED = 400


def _finite(value):
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON, and PostgreSQL's JSONB, have no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


@calcfunction
def compute_property(
    potential: PotentialData,
    structure: orm.StructureData,
    settings: orm.Dict,
    name: orm.Str,
    reference: orm.Dict | None = None,
    final: orm.StructureData | None = None,
    dataset: DatasetData | None = None,
    reference_result: orm.Dict | None = None,
):
    """Property ``name`` with every member of ``potential`` and with ``reference``, on ``structure``.

    ``reference_result``: instead of ``reference``, the reference's result computed elsewhere (``eos``:
    the ``result`` of :func:`~aiida_mlip.workflows.reference_eos.fit_reference_eos`).

    Returns ``result`` (``rows``: the table rows, see
    :class:`~aiida_mlip.properties.validation.PropertyValidation`; ``details``), for phonons
    ``phonon_bands`` (PNG), for minima ``minima`` and, with a reference and any found,
    ``spurious_minima``. ``dataset``: the labelled frames of the cutoff check. A kernel that raises
    gives exit status 400 with its message.
    """
    values = ValidationSettings.from_mapping(settings.get_dict())
    committee = potential.get_calculator(device=values.device, dtype=values.dtype)
    reference_calculator = make_calculator(reference.get_dict()) if reference is not None else None
    found_reference = None
    if reference_result is not None:  # only eos has one (LABELLED_REFERENCE_PROPERTIES)
        found_reference = EOSResult.from_dict(structure.get_ase(), reference_result.get_dict())
    with tempfile.TemporaryDirectory() as folder:
        try:
            found = validate_property(
                name.value,
                structure.get_ase(),
                committee,
                values,
                reference=reference_calculator,
                final=final.get_ase() if final is not None else None,
                cutoff=potential.cutoff,
                plot=pathlib.Path(folder) / "phonon_bands.png",
                frames=dataset.get_frames() if dataset is not None else None,
                reference_result=found_reference,
            )
        except Exception as exception:  # any failure of the kernel is this property's failure
            message = " ".join(str(exception).split())
            return ExitCode(PROPERTY_FAILED, f"{name.value}: {type(exception).__name__}: {message}")
        outputs = {"result": orm.Dict(_finite({"rows": found.rows, "details": found.details}))}
        if found.plot is not None:
            outputs["phonon_bands"] = orm.SinglefileData(found.plot, filename="phonon_bands.png")
    if "minima" in found.frames:
        outputs["minima"] = StructureSetData(found.frames["minima"])
    if "spurious_minima" in found.frames:
        labeller = reference.get_dict()
        settings = {
            "method": "ase",
            "calculator": labeller["calculator"],
            "kwargs": labeller.get("kwargs", {}),
        }
        outputs["spurious_minima"] = DatasetData(found.frames["spurious_minima"], label_settings=settings)
    return outputs


@calcfunction
def collect_comparison(failures: orm.Dict | None = None, reference: orm.Dict | None = None, **results):
    """One comparison table from the ``result`` of every ``compute_property`` (see :func:`~aiida_mlip.properties.validation.summarise`).

    ``failures``: ``{property: message}`` of the properties whose calculation failed. ``reference``:
    the ASE reference, or the fit of a labelled (pw.x) one.
    """
    validations = {name: result.get_dict() for name, result in results.items()}
    validations.update({name: {"error": message} for name, message in (failures or {}).items()})
    label = describe_reference(reference.get_dict()) if reference is not None else None
    return orm.Dict(summarise(validations, reference=label))


def validate_settings(value, _):
    """Unknown keys (with the nearest known one), strains above 5%, fewer than 3 NEB images, ..."""
    return settings_refusal(ValidationSettings, value)


def validate_reference(value, _):
    """The reference must name an importable ASE calculator class (the ASE labeller's form)."""
    if value is None:
        return None
    try:
        validate_labeller(value.get_dict())
    except ValueError as exception:
        return f"invalid reference: {exception}"
    return None


def cutoff_frames(potential: PotentialData, dataset: DatasetData | None = None) -> DatasetData:
    """The labelled frames of the cutoff check: ``dataset``, else the potential's training set.

    Raises
    ------
    PropertyInputError
        Neither is there (no ``dataset``, and no stored ``DatasetData`` of the potential's ``training_set_uuid``).
    """
    if dataset is not None:
        return dataset
    uuid = potential.training_set_uuid
    found = orm.QueryBuilder().append(DatasetData, filters={"uuid": uuid}).first(flat=True) if uuid else None
    if found is None:
        raise PropertyInputError(
            f"`cutoff` needs labelled frames: potential <{potential.pk}> records "
            + (
                f"a training set {uuid} that is not in this profile"
                if uuid
                else "no training set (training_set_uuid)"
            )
            + "; give them as the `dataset` input (--dataset of aiida-mlip validate)"
        )
    return found


def validate_inputs(inputs, _):
    """The structure must suit every property asked for, and the potential and reference its elements.

    See :func:`~aiida_mlip.properties.validation.check_inputs`: periodicity for ``eos``, ``elastic``,
    ``phonons`` and random ``minima`` starts, a phonon supercell at least twice the potential's
    cutoff wide, NEB end points of the same atoms, cutoff shortenings below the cutoff of a built-in
    committee, labelled frames for ``cutoff``; the reference is tried on one atom of each element.
    """
    if "potential" not in inputs or "structure" not in inputs:
        return None
    try:
        settings = ValidationSettings.from_node(inputs.get("settings"))
    except SettingsError:
        return None  # the port validator says why
    structure = inputs["structure"]
    final = inputs.get("final_structure")
    potential = inputs["potential"]
    try:
        check_inputs(
            settings,
            structure.get_ase(),
            cutoff=potential.cutoff,
            elements=potential.elements,
            final=final.get_ase() if final is not None else None,
            backend=potential.model_backend,
        )
        if "cutoff" in settings.properties:
            frames = cutoff_frames(potential, inputs.get("dataset"))
            unknown = sorted(set(frames.elements) - set(potential.elements))
            if unknown:
                return f"the `dataset` of the cutoff check holds {unknown}, which the potential was not trained on"
    except PropertyInputError as exception:
        return str(exception)
    if "neb" not in settings.properties and final is not None:
        return "a `final_structure` was given but `neb` is not among the properties"
    if "cutoff" not in settings.properties and inputs.get("dataset") is not None:
        return "a `dataset` was given but `cutoff` is not among the properties"
    if inputs.get("reference") is not None:
        try:
            check_elements(inputs["reference"].get_dict(), structure.get_symbols_set())
        except ValueError as exception:
            return f"invalid reference: {exception}"
    return validate_labelled_reference(inputs, settings)


class ValidationWorkChain(WorkChain):
    """Compute properties with a committee potential (mean and spread) and a reference; compare them.

    Outputs ``comparison`` (one row per quantity: committee mean, std, reference, relative
    difference, tolerance, within tolerance), ``properties.<name>`` (each property's rows and
    details) and ``phonon_bands`` (PNG) when phonons were computed.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("potential", valid_type=PotentialData, help="The committee potential to judge.")
        spec.input(
            "structure",
            valid_type=orm.StructureData,
            help="The crystal (a bulk cell for eos, elastic and phonons; the NEB's initial state).",
        )
        spec.input(
            "settings",
            valid_type=orm.Dict,
            required=False,
            validator=validate_settings,
            help="Validation settings (aiida_mlip.properties.validation.ValidationSettings): `properties`, "
            "the kernels' blocks (`eos`, `elastic`, `phonons`, `neb`, `cutoff`, `minima`), relative `tolerances`, "
            "`device`, `dtype`.",
        )
        spec.input(
            "reference",
            valid_type=orm.Dict,
            required=False,
            validator=validate_reference,
            help="Reference ASE calculator, as the ASE labeller: `calculator` (import path), `kwargs`.",
        )
        spec.expose_inputs(
            LabellingWorkChain,
            namespace="reference_labelling",
            include=("pw", "max_concurrent"),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "validator": None,
                "help": "Reference computed by labelling (eos only): `pw` (code, pseudo_family, protocol, "
                "overrides, options), as the active-learning loop's pw labeller; `max_concurrent` pw.x runs.",
            },
        )
        spec.input(
            "final_structure",
            valid_type=orm.StructureData,
            required=False,
            help="The NEB's final state: the same atoms as `structure`, in the same order and cell.",
        )
        spec.input(
            "dataset",
            valid_type=DatasetData,
            required=False,
            help="Labelled frames of the cutoff check (default: the potential's training set).",
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.has_labelled_reference)(cls.label_reference, cls.fit_reference),
            while_(cls.has_next)(cls.compute),
            cls.results,
        )
        spec.output(
            "comparison",
            valid_type=orm.Dict,
            help="`quantities` (one row per quantity), `properties` (status, details), counts, `reference`.",
        )
        spec.output_namespace(
            "properties", valid_type=orm.Dict, dynamic=True, help="The rows and details of each property."
        )
        spec.output(
            "phonon_bands",
            valid_type=orm.SinglefileData,
            required=False,
            help="PNG: band structures of the committee members and the reference.",
        )
        spec.output(
            "minima",
            valid_type=StructureSetData,
            required=False,
            help="The converged minima of the potential found by `minima` (unlabelled).",
        )
        spec.output(
            "spurious_minima",
            valid_type=DatasetData,
            required=False,
            help="The spurious minima labelled by the reference: a `dataset` for the active-learning work chain.",
        )
        spec.output(
            "reference_eos",
            valid_type=orm.Dict,
            required=False,
            help="With `reference_labelling`: the reference's volumes (Angstrom^3), energies (eV), pressures "
            "(GPa) and Birch-Murnaghan fit (see fit_reference_eos).",
        )
        spec.exit_code(
            401, "ERROR_PROPERTY_FAILED", message="The calculation of {properties} failed: {message}"
        )
        spec.exit_code(
            402, "ERROR_ALL_PROPERTIES_FAILED", message="Every property calculation failed: {message}"
        )
        spec.exit_code(
            403,
            "ERROR_SUB_PROCESS_FAILED_REFERENCE_LABELLING",
            message="The labelling of the reference's volume points <{pk}> failed with exit status {status}: "
            "{message}",
        )

    def setup(self):
        """Read the settings; say what will be computed."""
        settings = ValidationSettings.from_node(self.inputs.get("settings"))
        self.ctx.todo = list(settings.properties)
        self.ctx.settings = orm.Dict(settings.to_dict())
        self.ctx.results, self.ctx.failures = {}, {}
        potential, structure = self.inputs.potential, self.inputs.structure
        if "reference" in self.inputs:
            reference = self.inputs.reference["calculator"]
        elif self.has_labelled_reference():
            pw = self.inputs.reference_labelling.pw
            reference = (
                f"pw.x ({pw.pseudo_family.value}, protocol {pw.protocol.value}) on the EOS volume points"
            )
        else:
            reference = "none"
        self.report(
            f"validating potential <{potential.pk}> (committee of {potential.committee_size}) on "
            f"{structure.get_formula()} <{structure.pk}>: {', '.join(settings.properties)}; reference: {reference}"
        )

    def has_labelled_reference(self):
        """Whether the reference is labelled through ``LabellingWorkChain`` (pw.x) rather than an ASE calculator."""
        return bool(self.inputs.get("reference_labelling", {}).get("pw"))

    def label_reference(self):
        """Make the EOS volume points of the structure and label them (``LabellingWorkChain``, pw.x)."""
        points = eos_volume_points(
            self.inputs.structure, self.ctx.settings, metadata={"call_link_label": "reference_points"}
        )
        inputs = self.exposed_inputs(LabellingWorkChain, namespace="reference_labelling")
        inputs["structures"] = points
        inputs["metadata"] = {"call_link_label": "reference_labelling"}
        self.report(f"labelling the {points.n_frames} volume points of the reference equation of state")
        return ToContext(reference_labelling=self.submit(LabellingWorkChain, **inputs))

    def fit_reference(self):
        """Fit the reference's equation of state to the labelled energies (``fit_reference_eos``)."""
        labelling = self.ctx.reference_labelling
        if not labelling.is_finished_ok or "dataset" not in labelling.outputs:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_REFERENCE_LABELLING.format(
                pk=labelling.pk, status=labelling.exit_status, message=labelling.exit_message
            )
        _, node = fit_reference_eos.run_get_node(
            self.inputs.structure, labelling.outputs.dataset, metadata={"call_link_label": "reference_fit"}
        )
        if not node.is_finished_ok:
            self.ctx.failures["eos"] = node.exit_message or f"exit status {node.exit_status}"
            self.ctx.todo.remove("eos")
            self.report(f"eos: FAILED ({node.process_label}<{node.pk}>): {self.ctx.failures['eos']}")
            return None
        self.ctx.reference_eos = node.outputs.result
        self.out("reference_eos", node.outputs.result)
        fit = node.outputs.result
        self.report(
            f"reference eos from {fit['n_points']} points: V0 {fit['v0']:.4f} Angstrom^3, B0 {fit['b0']:.2f} GPa"
            + (f", a0 {fit['lattice_constant']:.4f} Angstrom" if fit["lattice_constant"] is not None else "")
            + f" ({node.process_label}<{node.pk}>)"
        )
        return None

    def has_next(self):
        return bool(self.ctx.todo)

    def compute(self):
        """Run the next property's calcfunction; record its rows or its failure."""
        name = self.ctx.todo.pop(0)
        inputs = {
            "potential": self.inputs.potential,
            "structure": self.inputs.structure,
            "settings": self.ctx.settings,
            "name": orm.Str(name),
        }
        for port, key in (("reference", "reference"), ("final_structure", "final")):
            if port in self.inputs:
                inputs[key] = self.inputs[port]
        if name == "cutoff":
            inputs["dataset"] = cutoff_frames(self.inputs.potential, self.inputs.get("dataset"))
        if name == "eos" and "reference_eos" in self.ctx:
            inputs["reference_result"] = self.ctx.reference_eos
        _, node = compute_property.run_get_node(**inputs, metadata={"call_link_label": name})
        if not node.is_finished_ok:
            self.ctx.failures[name] = node.exit_message or f"exit status {node.exit_status}"
            self.report(f"{name}: FAILED ({node.process_label}<{node.pk}>): {self.ctx.failures[name]}")
            return
        self.ctx.results[name] = node.outputs.result
        for output in ("phonon_bands", "minima", "spurious_minima"):
            if output in node.outputs:
                self.out(output, node.outputs[output])
        self.report(f"{name}: {_summary(node.outputs.result['rows'])} ({node.process_label}<{node.pk}>)")

    def results(self):
        """Join the properties' rows into ``comparison``; fail only if a property failed."""
        inputs = dict(self.ctx.results)
        if self.ctx.failures:
            inputs["failures"] = orm.Dict(self.ctx.failures)
        if "reference" in self.inputs:
            inputs["reference"] = self.inputs.reference
        elif "reference_eos" in self.ctx:
            inputs["reference"] = self.ctx.reference_eos
        comparison = collect_comparison(**inputs, metadata={"call_link_label": "comparison"})
        self.out("comparison", comparison)
        for name, result in self.ctx.results.items():
            self.out(f"properties.{name}", result)
        if comparison["n_judged"]:
            self.report(
                f"{comparison['n_within_tolerance']} of {comparison['n_judged']} quantities within tolerance"
            )
        if self.ctx.failures:
            message = "; ".join(self.ctx.failures.values())
            if not self.ctx.results:
                return self.exit_codes.ERROR_ALL_PROPERTIES_FAILED.format(message=message)
            return self.exit_codes.ERROR_PROPERTY_FAILED.format(
                properties=", ".join(self.ctx.failures), message=message
            )
        return None


def _summary(rows: list[dict]) -> str:
    """``n quantities, k within tolerance; furthest: B0 +93% (76 +- 2 GPa, reference 39.3)`` of one property."""
    judged = [row for row in rows if row["within_tolerance"] is not None]
    if not judged:
        values = "; ".join(
            f"{row['quantity']} {'n/a' if row['mean'] is None else format(row['mean'], '.4g')}"
            f"{' ' + row['unit'] if row['unit'] else ''}"
            for row in rows[:4]
        )
        return f"{len(rows)} quantities, not judged against a reference" + (f": {values}" if values else "")
    worst = max(judged, key=lambda row: abs(row["difference"]) if row["difference"] is not None else math.inf)
    difference = "n/a" if worst["difference"] is None else f"{100 * worst['difference']:+.1f}%"
    mean = "n/a" if worst["mean"] is None else f"{worst['mean']:.4g}"
    return (
        f"{len(rows)} quantities, {sum(bool(row['within_tolerance']) for row in judged)} within tolerance; "
        f"furthest: {worst['quantity']} {difference} ({mean} +- {worst['std'] or 0:.2g}"
        f"{' ' + worst['unit'] if worst['unit'] else ''}, reference {worst['reference']:.4g})"
    )
