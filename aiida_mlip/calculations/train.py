"""``TrainCalculation`` (``mlip.train``): train a committee potential with ``aiida-mlip-train``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.calculations.base import EngineCalculation
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData

__all__ = ("TrainCalculation",)


def validate_parameters(value, _):
    """Refuse training parameters the engine would refuse, before any job starts."""
    if value is None:
        return None
    from aiida_mlip.potentials.train import TrainConfig

    try:
        TrainConfig.from_mapping(value.get_dict())
    except (TypeError, ValueError) as exception:
        return f"invalid training parameters: {exception}"
    return None


def validate_dataset(value, _):
    if value is not None and not value.n_frames:
        return "the training dataset is empty"
    return None


def is_device_name(device: str) -> bool:
    """Whether ``device`` names a training device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    return device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())


def validate_device(value, _):
    """The training device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if value is None or is_device_name(value.value):
        return None
    return f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value.value!r}"


def validate_parent_model(parent_model, dataset, parameters) -> str | None:
    """A ``parent_model`` node must be of ``training.backend`` and know the dataset's elements; a
    ``parent_model`` path in the parameters must come as that node instead (so the lineage records it)."""
    values = parameters.get_dict() if parameters is not None else {}
    if "parent_model" in values:
        return (
            "training parameter `parent_model` is a path on this machine: give the parent model as the "
            "`parent_model` input instead (PotentialData.from_parent_model(path)), so that the provenance "
            "records it and the job can upload it"
        )
    if parent_model is None:
        return None
    from aiida_mlip.potentials.train import TrainConfig

    backend = values.get("backend", TrainConfig.model_fields["backend"].default)
    if parent_model.model_backend != backend:
        return (
            f"the parent model is a `{parent_model.model_backend}` model but training.backend is `{backend}`: "
            "a committee is fine-tuned from a parent of its own backend"
        )
    if dataset is not None:
        unknown = sorted(set(dataset.elements) - set(parent_model.elements))
        if unknown:
            return (
                f"the dataset has elements {unknown} that the parent model (elements {parent_model.elements}) "
                "does not know: fine-tune from a parent that covers them, or train from scratch"
            )
    return None


def validate_inputs(inputs, _):
    """A warm start must know every element of the dataset; so must a parent model to fine-tune from."""
    parent = inputs.get("parent_potential")
    dataset = inputs.get("dataset")
    if parent is not None and dataset is not None:
        unknown = sorted(set(dataset.elements) - set(parent.elements))
        if unknown:
            return (
                f"the dataset has elements {unknown} that the parent potential (elements {parent.elements}) "
                "does not know: train from scratch instead of warm-starting"
            )
    return validate_parent_model(inputs.get("parent_model"), dataset, inputs.get("parameters"))


class TrainCalculation(EngineCalculation):
    """Train a committee of potentials on a dataset (the ``aiida-mlip-train`` executable).

    The dataset (and the parent potential of a warm start) are uploaded from the AiiDA repository,
    so the job runs the same on ``localhost`` and on a cluster's GPU node. A checkpoint is written
    during training and retrieved whatever the outcome, so a run that hit NaN, diverged or was cut
    by its wall time can be restarted from it (see ``TrainingWorkChain``).
    """

    ACTION = "The training"
    MISSING_OUTPUT = "wrote neither a model nor a checkpoint"
    RETRIEVE = ("model.safetensors", "metrics.json", "learning_curve.csv", "checkpoint.safetensors")

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "dataset", valid_type=DatasetData, validator=validate_dataset, help="The labelled training data."
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            validator=validate_parameters,
            help="Training parameters (see aiida_mlip.potentials.train.TrainConfig).",
        )
        spec.input(
            "parent_potential",
            valid_type=PotentialData,
            required=False,
            help="Warm start: the training begins from these weights.",
        )
        spec.input(
            "parent_model",
            valid_type=PotentialData,
            required=False,
            help="Fine-tune from this model (training.parent_model, e.g. a foundation model): a committee "
            "of `committee_size` members is made from its weights and architecture. A `parent_potential` "
            "(warm start, checkpoint restart) takes precedence.",
        )
        spec.input(
            "device",
            valid_type=orm.Str,
            default=lambda: orm.Str("auto"),
            validator=validate_device,
            help="Torch device of the training: `auto` (CUDA when the node has a GPU, else the CPU with a "
            "warning), `cpu`, `cuda`, `cuda:N`. `cuda` on a node without a visible GPU fails with exit "
            "code 302 instead of training on the CPU. Pair `cuda` with `metadata.options."
            "custom_scheduler_commands` such as `#SBATCH --gres=gpu:1`.",
        )
        spec.inputs.validator = validate_inputs
        spec.inputs["metadata"]["options"]["parser_name"].default = "mlip.train"
        spec.output("potential", valid_type=PotentialData, required=False, help="The trained committee.")
        spec.output(
            "metrics",
            valid_type=orm.Dict,
            required=False,
            help="Train/validation RMSE of energy per atom (eV/atom), forces (eV/A) and stress (eV/A^3), "
            "per member and for the committee mean; `status` (`ok`, or `no_improvement` when a warm start "
            "did not beat its parent's validation loss: the potential output is then the trained weights "
            "all the same), `epochs_run`, `best_epoch`, timings, device; on a warm start `new_frames`: "
            "force RMSE (eV/A) of the frames the parent had not seen, before and after.",
        )
        spec.output(
            "learning_curve",
            valid_type=orm.ArrayData,
            required=False,
            help="One array per column of the learning curve (epoch, learning rate, losses, RMSEs).",
        )
        spec.output(
            "checkpoint",
            valid_type=PotentialData,
            required=False,
            help="The last good weights of a run that did not finish: the restart point.",
        )
        spec.exit_code(
            302, "ERROR_DEVICE_UNAVAILABLE", message="The requested training device is missing: {message}"
        )
        spec.exit_code(310, "ERROR_NAN_LOSS", message="The loss became NaN at epoch {epoch}.")
        spec.exit_code(311, "ERROR_DIVERGED", message="The loss diverged at epoch {epoch}.")
        spec.exit_code(
            320,
            "ERROR_INTERRUPTED",
            message="The training stopped before the end (wall time, cancelled job); a checkpoint exists.",
        )
        spec.exit_code(
            321,
            "ERROR_CANCELLED",
            message="The scheduler cancelled the job before the training wrote a checkpoint.",
        )

    def write_inputs(self, folder, local_copy_list):
        dataset = self.inputs.dataset
        local_copy_list.append(self.copy_from_repository(dataset, dataset.FILENAME, "dataset.h5"))
        config = self.inputs.parameters.get_dict()
        if "parent_model" in self.inputs:
            parent = self.inputs.parent_model
            local_copy_list.append(
                self.copy_from_repository(parent, parent.FILENAME, "parent_model.safetensors")
            )
            config["parent_model"] = "parent_model.safetensors"
        self.write_json(folder, "config.json", config)
        arguments = ["--dataset", "dataset.h5", "--config", "config.json", "--output-dir", "."]
        arguments += ["--device", self.inputs.device.value]
        if "parent_potential" in self.inputs:
            parent = self.inputs.parent_potential
            local_copy_list.append(self.copy_from_repository(parent, parent.FILENAME, "init.safetensors"))
            arguments += ["--init", "init.safetensors"]
        return arguments
