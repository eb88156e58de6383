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


def test_interrupted_training_resumes_for_the_epochs_left(
    generate_workchain, engine_code, aluminium_dataset, tiny_training, tmp_path
):
    from aiida.common import AttributeDict

    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.potentials.train import train_committee

    # a real checkpoint after 3 epochs of a 10-epoch training
    checkpoint_path = tmp_path / "checkpoint.safetensors"
    config = dict(tiny_training.get_dict(), max_epochs=3, min_epochs=1, patience=100)
    train_committee(aluminium_dataset.get_frames(), config, log=None, checkpoint_path=checkpoint_path)
    checkpoint = PotentialData(checkpoint_path).store()
    assert checkpoint.checkpoint_epoch == 3

    builder = TrainingWorkChain.get_builder()
    builder.train.code = engine_code("mlip.train")
    builder.train.dataset = aluminium_dataset
    builder.train.parameters = orm.Dict(dict(tiny_training.get_dict(), max_epochs=10, min_epochs=5))
    process = generate_workchain(TrainingWorkChain, builder)
    process.setup()
    interrupted = AttributeDict(
        {
            "pk": 0,
            "process_label": "TrainCalculation",
            "exit_message": "wall time",
            "exit_status": TrainCalculation.exit_codes.ERROR_INTERRUPTED.status,
            "outputs": AttributeDict({"checkpoint": checkpoint}),
            "get_job_id": lambda: "1",
        }
    )
    process.handle_interrupted(interrupted)
    assert process.ctx.inputs.parent_potential.uuid == checkpoint.uuid
    assert process.ctx.inputs.parameters["max_epochs"] == 7
    assert process.ctx.inputs.parameters["min_epochs"] == 2

    # a checkpoint of the starting weights (epoch 0) leaves the count as it was
    process.setup()
    fresh = PotentialData(checkpoint_path)
    fresh.base.attributes.set("checkpoint_epoch", 0)
    interrupted.outputs.checkpoint = fresh.store()
    process.handle_interrupted(interrupted)
    assert process.ctx.inputs.parameters["max_epochs"] == 10
