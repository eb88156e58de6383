"""``SelectCalculation`` (``mlip.select``): pick the configurations to label with ``aiida-mlip-select``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.calculations.base import EngineCalculation
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData

__all__ = ("SelectCalculation",)


def validate_parameters(value, _):
    """A known strategy, a non-negative budget, a sensible trust window."""
    if value is None:
        return None
    from aiida_mlip.selection.strategies import STRATEGIES

    parameters = value.get_dict()
    strategy = parameters.get("strategy", "hybrid")
    if strategy not in STRATEGIES:
        return f"unknown selection strategy {strategy!r}; choose one of {sorted(STRATEGIES)}"
    budget = parameters.get("budget")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        return f"the selection needs a non-negative integer budget, got {budget!r}"
    lo, hi = parameters.get("lo"), parameters.get("hi")
    if lo is not None and hi is not None and not 0 <= lo < hi:
        return f"the trust window needs 0 <= lo < hi, got lo={lo}, hi={hi}"
    return None


class SelectCalculation(EngineCalculation):
    """Select a de-duplicated batch of configurations to label from a pool of candidates."""

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
            help="`strategy` (default hybrid), `budget` and the strategy's options (`lo`, `hi` in eV/A, ...).",
        )
        spec.inputs["metadata"]["options"]["parser_name"].default = "mlip.select"
        spec.output(
            "selected", valid_type=StructureSetData, required=False, help="The configurations to label."
        )
        spec.output(
            "selection", valid_type=orm.Dict, help="Each pick's index in the pool and score; strategy info."
        )
        spec.exit_code(300, "ERROR_MISSING_OUTPUT", message="The selection wrote no selection.json.")
        spec.exit_code(301, "ERROR_BAD_INPUT", message="The selection refused its input: {message}")

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
