"""``LabelCalculation`` (``mlip.label``): label configurations with an ASE calculator."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.calculations.base import EngineCalculation
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.engine.label import check_elements, overlap_message, validate_labeller

__all__ = ("LabelCalculation", "validate_ase_labelling")


def validate_labeller_input(value, _):
    """Refuse a labeller whose calculator does not import or is not an ASE calculator."""
    if value is None:
        return None
    try:
        validate_labeller(value.get_dict())
    except ValueError as exception:
        return f"invalid labeller: {exception}"
    return None


def validate_ase_labelling(structures: StructureSetData, labeller: orm.Dict) -> str | None:
    """Pre-checks of an ASE labeller on its structures, on the submitting machine.

    Overlapping atoms are refused with the minimum distance the ``pw`` labeller uses, and the
    calculator must label one isolated atom of every element of the structures (see
    :func:`aiida_mlip.engine.label.check_elements`), so that e.g. EMT with Si is a submission error.
    """
    from aiida_mlip.workflows.pw_labels import min_interatomic_distance

    settings = labeller.get_dict()
    try:
        calculator = validate_labeller(settings)["calculator"]
        check_elements(settings, structures.elements or [])
    except ValueError as exception:
        return f"invalid labeller: {exception}"
    return overlap_message(structures.get_atoms(), min_interatomic_distance(), calculator)


def validate_inputs(inputs, _):
    """The labeller must be able to label the structures (overlaps, elements)."""
    if "structures" in inputs and "labeller" in inputs and inputs["structures"].n_frames:
        return validate_ase_labelling(inputs["structures"], inputs["labeller"])
    return None


def validate_structures(value, _):
    if value is not None and not value.n_frames:
        return "the structures are empty: there is nothing to label"
    return None


class LabelCalculation(EngineCalculation):
    """Label configurations with any ASE calculator named by import path (``aiida-mlip-label``).

    This is the fast oracle of tests and demos (``ase.calculators.emt.EMT``) and a real labeller for
    codes that are driven through ASE. Frames whose calculation fails are reported in the
    ``failures`` output and the frames that succeeded are kept.
    """

    ACTION = "The labeller"
    MISSING_OUTPUT = "wrote no summary: it did not run to the end"
    RETRIEVE = ("labelled.h5", "labelled_indices.json", "failures.json", "summary.json")

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "structures",
            valid_type=StructureSetData,
            validator=validate_structures,
            help="The configurations to label.",
        )
        spec.input(
            "labeller",
            valid_type=orm.Dict,
            validator=validate_labeller_input,
            help="`calculator` (import path of an ASE calculator class), `kwargs` (its constructor "
            "arguments) and `properties` (energy, forces and optionally stress).",
        )
        spec.inputs["metadata"]["options"]["parser_name"].default = "mlip.label"
        spec.inputs.validator = validate_inputs
        spec.output(
            "labelled",
            valid_type=DatasetData,
            help="The labelled frames (eV, eV/Angstrom, eV/Angstrom^3); each frame's source is this job.",
        )
        spec.output(
            "failures",
            valid_type=orm.Dict,
            required=False,
            help="`failures`: index in the input and error of each frame that could not be labelled.",
        )
        spec.output("summary", valid_type=orm.Dict, help="Counts and wall time.")
        spec.exit_code(310, "ERROR_ALL_LABELS_FAILED", message="Every structure failed to be labelled.")
        spec.exit_code(
            311,
            "ERROR_SOME_LABELS_FAILED",
            message="{count} structure(s) failed to be labelled; the others are in the outputs.",
        )

    def write_inputs(self, folder, local_copy_list):
        local_copy_list.append(
            self.copy_from_repository(
                self.inputs.structures, self.inputs.structures.FILENAME, "structures.h5"
            )
        )
        self.write_json(folder, "labeller.json", validate_labeller(self.inputs.labeller.get_dict()))
        return ["--structures", "structures.h5", "--labeller", "labeller.json", "--output-dir", "."]
