"""Parser of ``TrainCalculation``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.data.potential import PotentialData
from aiida_mlip.parsers.base import EngineParser, csv_to_arraydata

__all__ = ("TrainParser",)


class TrainParser(EngineParser):
    """Turn the files of ``aiida-mlip-train`` into a PotentialData, metrics and the learning curve."""

    def _potential(self, name: str) -> PotentialData:
        with self.as_path(name) as path:
            return PotentialData(file=path, training_set_uuid=self.node.inputs.dataset.uuid)

    def parse(self, **kwargs):
        names = self.names
        if "learning_curve.csv" in names:
            self.out("learning_curve", csv_to_arraydata(self.text("learning_curve.csv")))
        metrics = self.json("metrics.json") if "metrics.json" in names else None
        if metrics is not None:
            self.out("metrics", orm.Dict(metrics))
        status = (metrics or {}).get("status")
        if status in ("ok", "no_improvement") and "model.safetensors" in names:
            self.out("potential", self._potential("model.safetensors"))
            if status == "no_improvement":  # the work chain reads metrics["status"] and acts on it
                self.logger.warning(
                    f"no improvement over the parent potential after {metrics.get('epochs_run')} epochs: "
                    "the trained weights are returned; consider training from scratch"
                )
            return None
        if "checkpoint.safetensors" in names:
            self.out("checkpoint", self._potential("checkpoint.safetensors"))
        if status == "device_unavailable":
            return self.exit_codes.ERROR_DEVICE_UNAVAILABLE.format(message=metrics.get("message", ""))
        epoch = (metrics or {}).get("epochs", "?")
        if status == "nan_loss":
            return self.exit_codes.ERROR_NAN_LOSS.format(epoch=epoch)
        if status == "diverged":
            return self.exit_codes.ERROR_DIVERGED.format(epoch=epoch)
        if "checkpoint.safetensors" in names:
            return self.exit_codes.ERROR_INTERRUPTED
        if self.cancelled_by_scheduler():
            return self.exit_codes.ERROR_CANCELLED
        message = self.bad_input_message()
        if metrics is None and message:
            return self.exit_codes.ERROR_BAD_INPUT.format(message=message)
        return self.exit_codes.ERROR_MISSING_OUTPUT
