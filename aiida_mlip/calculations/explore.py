"""``ExploreCalculation`` (``mlip.explore``): uncertainty-watched MD with ``aiida-mlip-explore``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.calculations.base import EngineCalculation
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData

__all__ = ("ExploreCalculation",)


def validate_parameters(value, _):
    """Refuse MD parameters the engine would refuse (negative temperature, trust lo >= hi, ...)."""
    if value is None:
        return None
    from aiida_mlip.exploration.parameters import ExploreParameters

    try:
        ExploreParameters.from_mapping(value.get_dict())
    except ValueError as exception:
        return f"invalid exploration parameters: {exception}"
    return None


def validate_inputs(inputs, _):
    """The potential must know every element of the start structures."""
    potential, structures = inputs.get("potential"), inputs.get("structures")
    if potential is not None and structures is not None:
        unknown = sorted(set(structures.elements) - set(potential.elements))
        if unknown:
            return (
                f"the structures contain elements {unknown} that the potential (elements "
                f"{potential.elements}) does not know"
            )
    if structures is not None and not structures.n_frames:
        return "no start structures given"
    return None


class ExploreCalculation(EngineCalculation):
    """Run MD walkers with a committee potential and collect the configurations it is unsure of.

    Walkers that reach the break threshold stop early and explosions are recorded: both are outcomes
    in ``summary``, not failures. The job fails (``ERROR_ALL_WALKERS_EXPLODED``) only when no walker
    produced a single frame.
    """

    ACTION = "The exploration"
    MISSING_OUTPUT = "wrote no summary"
    RETRIEVE = ("trajectory.extxyz", "frames.csv", "candidates.h5", "candidates.csv", "summary.json")

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("potential", valid_type=PotentialData, help="The committee that drives the MD.")
        spec.input(
            "structures", valid_type=StructureSetData, help="Start structures (walker i starts from i % n)."
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            validator=validate_parameters,
            help="MD parameters (aiida_mlip.exploration.parameters.ExploreParameters): ensemble, "
            "temperature (K), pressure (GPa), steps, timestep (fs), `trust` ({lo, hi} in eV/A), break_threshold, "
            "walkers...",
        )
        spec.input(
            "training_set",
            valid_type=DatasetData,
            required=False,
            help="The committee's training set: its active set gives the extrapolation grade gamma.",
        )
        spec.inputs.validator = validate_inputs
        spec.inputs["metadata"]["options"]["parser_name"].default = "mlip.explore"
        spec.output(
            "candidates",
            valid_type=StructureSetData,
            required=False,
            help="The selection pool, with scores: frames in the trust window and those above it that did not "
            "explode (up to the breaking frame), for the selection's top-up.",
        )
        spec.output(
            "frames",
            valid_type=orm.ArrayData,
            help="The per-frame table: step, time (fs), T (K), P (GPa), E (eV), max force deviation, ...",
        )
        spec.output("trajectory", valid_type=orm.SinglefileData, required=False, help="extxyz trajectory.")
        spec.output("summary", valid_type=orm.Dict, help="Per walker: steps, why it stopped, class counts.")
        spec.exit_code(
            310,
            "ERROR_ALL_WALKERS_EXPLODED",
            message="Every walker exploded before its first frame: the structures or the potential are broken.",
        )

    def write_inputs(self, folder, local_copy_list):
        potential, structures = self.inputs.potential, self.inputs.structures
        local_copy_list.append(self.copy_from_repository(potential, potential.FILENAME, "model.safetensors"))
        local_copy_list.append(self.copy_from_repository(structures, structures.FILENAME, "structures.h5"))
        self.write_json(folder, "parameters.json", self.inputs.parameters.get_dict())
        arguments = [
            "--model",
            "model.safetensors",
            "--structures",
            "structures.h5",
            "--parameters",
            "parameters.json",
            "--output-dir",
            ".",
        ]
        self.upload_training_set(local_copy_list, arguments)
        return arguments
