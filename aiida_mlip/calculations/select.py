"""``SelectCalculation`` (``mlip.select``): pick the configurations to label with ``aiida-mlip-select``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.calculations.base import EngineCalculation
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData

__all__ = ("SelectCalculation",)


def validate_parameters(value, _):
    """The selection block and trust window (:class:`~aiida_mlip.selection.settings.SelectParameters`)."""
    if value is None:
        return None
    from aiida_mlip.selection.settings import SelectParameters

    try:
        SelectParameters.from_mapping(value.get_dict())
    except ValueError as exception:
        return f"invalid selection parameters: {exception}"
    return None


class SelectCalculation(EngineCalculation):
    """Select a de-duplicated batch of configurations to label from a pool of candidates."""

    ACTION = "The selection"
    MISSING_OUTPUT = "wrote no selection.json"
    RETRIEVE = ("selected.h5", "selection.json")

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "pool",
            valid_type=StructureSetData,
            help="Candidates, with their scores table when they have one.",
        )
        spec.input("potential", valid_type=PotentialData, help="The committee: features and deviations.")
        spec.input(
            "training_set",
            valid_type=DatasetData,
            required=False,
            help="Its frames start the active set and are never selected again.",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            validator=validate_parameters,
            help="SelectParameters: `strategy` (default random), `windowed`, `budget` (>= 1), `seed`, the strategy's options "
            "and `trust` (`lo`, `hi` in eV/A).",
        )
        spec.inputs["metadata"]["options"]["parser_name"].default = "mlip.select"
        spec.output(
            "selected", valid_type=StructureSetData, required=False, help="The configurations to label."
        )
        spec.output(
            "selection", valid_type=orm.Dict, help="Each pick's index in the pool and score; strategy info."
        )

    def write_inputs(self, folder, local_copy_list):
        pool, potential = self.inputs.pool, self.inputs.potential
        local_copy_list.append(self.copy_from_repository(pool, pool.FILENAME, "pool.h5"))
        if pool.SCORES_FILENAME in pool.base.repository.list_object_names():
            local_copy_list.append(self.copy_from_repository(pool, pool.SCORES_FILENAME, "pool.csv"))
        local_copy_list.append(self.copy_from_repository(potential, potential.FILENAME, "model.safetensors"))
        self.write_json(folder, "parameters.json", self.inputs.parameters.get_dict())
        arguments = [
            "--pool",
            "pool.h5",
            "--model",
            "model.safetensors",
            "--parameters",
            "parameters.json",
            "--output-dir",
            ".",
        ]
        self.upload_training_set(local_copy_list, arguments)
        return arguments
