"""``TrainingWorkChain`` (``mlip.training``): train a committee, restarting from checkpoints on failure."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_mlip.calculations.train import TrainCalculation

__all__ = ("TrainingWorkChain",)

#: The training parameter that holds the initial learning rate.
LEARNING_RATE = "lr"


class TrainingWorkChain(BaseRestartWorkChain):
    """Run a ``TrainCalculation`` and fix the failures training meets.

    * NaN or diverged loss: restart from the last good checkpoint with the learning rate divided by
      ``learning_rate_reduction``.
    * Interrupted (wall time, cancelled job): restart from the checkpoint for the epochs that are left
      (``max_epochs`` and ``min_epochs`` less the checkpoint's epoch), so a job cut by its wall time
      makes progress on every attempt instead of starting its epoch count again.

    Every attempt is a ``TrainCalculation`` called by this work chain, so the provenance shows each.
    """

    _process_class = TrainCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(TrainCalculation, namespace="train")
        spec.input(
            "learning_rate_reduction",
            valid_type=orm.Float,
            default=lambda: orm.Float(10.0),
            help="Divide the learning rate by this after a NaN or diverged loss.",
        )
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.expose_outputs(TrainCalculation)
        spec.exit_code(401, "ERROR_SUB_PROCESS_FAILED_TRAIN", message="The training failed: {message}")

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(TrainCalculation, "train"))

    def _restart_from_checkpoint(self, node) -> bool:
        if "checkpoint" in node.outputs:
            self.ctx.inputs.parent_potential = node.outputs.checkpoint
            self.ctx.inputs.pop("parent_model", None)  # the checkpoint continues the fine-tuning
            return True
        return False

    @process_handler(
        priority=500,
        exit_codes=[TrainCalculation.exit_codes.ERROR_NAN_LOSS, TrainCalculation.exit_codes.ERROR_DIVERGED],
    )
    def handle_unstable_loss(self, node):
        """Lower the learning rate and go on from the last good checkpoint."""
        parameters = self.ctx.inputs.parameters.get_dict()
        from aiida_mlip.potentials.train import TrainConfig

        old = parameters.get(LEARNING_RATE, TrainConfig().lr)
        parameters[LEARNING_RATE] = old / self.inputs.learning_rate_reduction.value
        self.ctx.inputs.parameters = orm.Dict(parameters)
        restarted = self._restart_from_checkpoint(node)
        self.report(
            f"{node.process_label}<{node.pk}>: {node.exit_message}; learning rate {old:g} -> "
            f"{parameters[LEARNING_RATE]:g}, " + ("from its checkpoint" if restarted else "from scratch")
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(
        priority=400,
        exit_codes=[
            TrainCalculation.exit_codes.ERROR_INTERRUPTED,
            TrainCalculation.exit_codes.ERROR_CANCELLED,
        ],
    )
    def handle_interrupted(self, node):
        """Resubmit a run cut short by its wall time or a cancelled job, from its checkpoint if it has one.

        From a checkpoint, only the epochs that are left are run: ``max_epochs`` (and ``min_epochs``)
        less the epochs the checkpoint holds, at least one.
        """
        restarted = self._restart_from_checkpoint(node)
        how = "resubmitting from the start"
        if restarted:
            how = "resubmitting from its checkpoint"
            done = node.outputs.checkpoint.checkpoint_epoch or 0
            if done > 0:
                from aiida_mlip.potentials.train import TrainConfig

                parameters = self.ctx.inputs.parameters.get_dict()
                config = TrainConfig.from_mapping(parameters)
                parameters["max_epochs"] = max(1, config.max_epochs - done)
                parameters["min_epochs"] = max(1, config.min_epochs - done)
                self.ctx.inputs.parameters = orm.Dict(parameters)
                how += f" (epoch {done} of {config.max_epochs}; {parameters['max_epochs']} epoch(s) left)"
        self.report(
            f"{node.process_label}<{node.pk}> (job {node.get_job_id()}) was interrupted: {node.exit_message}; "
            + how
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=300, exit_codes=[TrainCalculation.exit_codes.ERROR_DEVICE_UNAVAILABLE])
    def handle_device_unavailable(self, node):
        """A missing GPU is a set-up error: stop with a clear message rather than retrying."""
        self.report(f"{node.process_label}<{node.pk}>: {node.exit_message}")
        return ProcessHandlerReport(
            do_break=True,
            exit_code=self.exit_codes.ERROR_SUB_PROCESS_FAILED_TRAIN.format(message=node.exit_message),
        )
