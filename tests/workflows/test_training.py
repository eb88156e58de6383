"""``TrainingWorkChain`` restarts a poisoned training and finishes."""

from aiida import orm
from aiida.engine import run_get_node

from aiida_mlip.calculations.train import TrainCalculation
from aiida_mlip.workflows.training import TrainingWorkChain


def test_nan_loss_is_restarted_with_a_lower_learning_rate(engine_code, aluminium_dataset, tiny_training):
    builder = TrainingWorkChain.get_builder()
    builder.train.code = engine_code("mlip.train")
    builder.train.dataset = aluminium_dataset
    builder.train.parameters = orm.Dict(
        dict(tiny_training.get_dict(), lr=1e9, gradient_clip=0.0, max_epochs=3)
    )
    builder.learning_rate_reduction = orm.Float(1e12)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    attempts = sorted(node.called, key=lambda n: n.ctime)
    assert [type(a.process_class) for a in attempts] and all(
        a.process_class is TrainCalculation for a in attempts
    )
    assert len(attempts) == 2
    assert attempts[0].exit_status in (
        TrainCalculation.exit_codes.ERROR_NAN_LOSS.status,
        TrainCalculation.exit_codes.ERROR_DIVERGED.status,
    )
    assert attempts[1].is_finished_ok
    assert attempts[1].inputs.parameters["lr"] == 1e9 / 1e12
    # the restart goes on from the poisoned run's last good weights, not from scratch
    assert "checkpoint" in attempts[0].outputs
    assert attempts[1].inputs.parent_potential.uuid == attempts[0].outputs.checkpoint.uuid
    assert results["potential"].uuid == attempts[1].outputs.potential.uuid
