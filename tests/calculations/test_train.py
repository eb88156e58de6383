"""``TrainCalculation`` runs ``aiida-mlip-train`` for real on localhost."""

import importlib.util

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlip.calculations.train import TrainCalculation
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.potentials.model_file import file_sha256


@pytest.fixture
def builder(engine_code, aluminium_dataset, tiny_training):
    builder = TrainCalculation.get_builder()
    builder.code = engine_code("mlip.train")
    builder.dataset = aluminium_dataset
    builder.parameters = tiny_training
    return builder


def test_training_gives_a_potential_metrics_and_curve(builder, aluminium_dataset):
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    potential = results["potential"]
    assert isinstance(potential, PotentialData)
    assert potential.elements == ["Al"] and potential.committee_size == 2
    assert potential.training_set_uuid == aluminium_dataset.uuid
    metrics = results["metrics"].get_dict()
    assert metrics["status"] == "ok"
    assert metrics["valid"]["mean"]["forces"] > 0
    assert len(results["learning_curve"].get_arraynames()) >= 2
    potential.verify()
    calculator = potential.get_calculator(device="cpu")
    atoms = aluminium_dataset.get_atoms()[0]
    atoms.calc = calculator
    assert abs(atoms.get_potential_energy() / len(atoms) - aluminium_dataset.get_frames().energy[0] / 4) < 1.0


def test_warm_start_from_parent(builder):
    first, _ = run_get_node(builder)
    builder.parent_potential = first["potential"]
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert node.inputs.parent_potential.uuid == first["potential"].uuid


def test_nan_learning_rate_gives_exit_code_and_checkpoint(builder, tiny_training):
    builder.parameters = orm.Dict(dict(tiny_training.get_dict(), lr=1e12, gradient_clip=0.0, max_epochs=3))
    results, node = run_get_node(builder)
    assert node.exit_status in (
        TrainCalculation.exit_codes.ERROR_NAN_LOSS.status,
        TrainCalculation.exit_codes.ERROR_DIVERGED.status,
    ), node.exit_message
    assert results["metrics"]["status"] in ("nan_loss", "diverged")
    assert "potential" not in results
    # the last good weights (before the poisoned epoch) come back as the restart point
    checkpoint = results["checkpoint"]
    assert isinstance(checkpoint, PotentialData)
    checkpoint.verify()
    assert checkpoint.training_set_uuid == builder.dataset.uuid
    atoms = builder.dataset.get_atoms()[0]
    atoms.calc = checkpoint.get_calculator(device="cpu")
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"lr": -1.0}, r"`training.lr`: Input should be greater than 0"),
        ({"committee_size": 0}, r"`training.committee_size`: Input should be greater than or equal to 1"),
        ({"learning_rat": 0.1}, r"unknown key `training.learning_rat`"),
    ],
)
def test_bad_parameters_are_refused_at_submission(builder, parameters, message):
    with pytest.raises(ValueError, match=message):
        builder.parameters = orm.Dict(parameters)
        run_get_node(builder)


def test_empty_or_foreign_dataset_is_refused(builder, aluminium_dataset):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from aiida_mlip.data.dataset import DatasetData

    first, _ = run_get_node(builder)
    copper = bulk("Cu", cubic=True)
    copper.calc = EMT()
    copper.get_forces()
    builder.dataset = DatasetData.from_atoms([copper]).store()
    builder.parent_potential = first["potential"]
    with pytest.raises(ValueError, match=r"elements \['Cu'\] that the parent potential"):
        run_get_node(builder)


def test_cuda_without_a_gpu_fails_clearly_and_is_not_retried(builder):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the CPU-only failure path cannot be shown here")
    builder.device = orm.Str("cuda")
    _, node = run_get_node(builder)
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_DEVICE_UNAVAILABLE.status
    assert "CUDA is not available" in node.exit_message
    assert "potential" not in node.outputs

    from aiida_mlip.workflows.training import TrainingWorkChain

    inputs = {key: builder[key] for key in ("code", "dataset", "parameters", "device")}
    _, chain = run_get_node(TrainingWorkChain, train=inputs)
    assert chain.exit_status == TrainingWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_TRAIN.status
    assert len(chain.called) == 1  # a missing GPU is not retried


def test_auto_device_trains_on_the_cpu_with_a_warning(builder):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: auto picks it")
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert results["metrics"]["device"] == "cpu"
    assert "training on the CPU" in node.outputs.retrieved.base.repository.get_object_content("aiida.err")


def test_unknown_device_is_refused_at_submission(builder):
    with pytest.raises(ValueError, match="device must be"):
        builder.device = orm.Str("gpu")  # refused as it is set
    with pytest.raises(ValueError, match="device must be"):
        run_get_node(TrainCalculation, **{**builder._inputs(prune=True), "device": orm.Str("gpu")})


def test_fine_tuning_from_a_parent_model_is_in_the_lineage(builder, tiny_model_file):
    """The parent model node is an input of the training; the lineage of the result lists it."""
    from aiida_mlip.queries import potential_lineage

    parent = PotentialData.from_parent_model(tiny_model_file).store()
    builder.parent_model = parent
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert node.inputs.parent_model.uuid == parent.uuid
    metrics = results["metrics"].get_dict()
    # the engine fine-tuned from the uploaded copy: same file, its committee of 3 made into the config's 2
    assert metrics["parent_model"]["sha256"] == parent.sha256 == file_sha256(tiny_model_file)
    assert metrics["parent_model"]["parent_committee_size"] == 3
    assert results["potential"].committee_size == 2
    lineage = potential_lineage(results["potential"])
    assert [model.uuid for model in lineage.parent_models] == [parent.uuid]
    assert "fine-tuned from 1 parent model(s)" in lineage.summary()
    assert ("parent model", parent.pk) in [row[:2] for row in lineage.as_table()]


def test_bad_parent_models_are_refused_at_submission(builder, tiny_model_file, tiny_training):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from aiida_mlip.data.dataset import DatasetData

    parameters = tiny_training.get_dict()
    builder.parameters = orm.Dict(dict(parameters, parent_model=str(tiny_model_file)))
    with pytest.raises(ValueError, match=r"give the parent model as the `parent_model` input"):
        run_get_node(builder)
    builder.parameters = tiny_training
    builder.parent_model = PotentialData.from_parent_model(tiny_model_file).store()
    copper = bulk("Cu", cubic=True)
    copper.calc = EMT()
    copper.get_forces()
    dataset = builder.dataset
    builder.dataset = DatasetData.from_atoms([copper]).store()
    with pytest.raises(ValueError, match=r"elements \['Cu'\] that the parent model"):
        run_get_node(builder)
    if importlib.util.find_spec("mace") is not None:
        builder.dataset = dataset
        builder.parameters = orm.Dict(dict(parameters, backend="mace"))
        with pytest.raises(
            ValueError, match=r"parent model is a `builtin` model but training.backend is `mace`"
        ):
            run_get_node(builder)
