"""``training.parent_model`` in ``ActiveLearningWorkChain``: the first committee is fine-tuned from it."""

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlip.data.potential import PotentialData
from aiida_mlip.potentials.model_file import file_sha256
from aiida_mlip.queries import potential_lineage
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from tests.calculations.conftest import TINY_TRAINING
from tests.workflows.test_active_learning import al_builder


def fine_tuning_builder(engine_code, model_file, structures=None, **training):
    return al_builder(
        engine_code,
        structures,
        training={**TINY_TRAINING, "max_epochs": 4, "parent_model": str(model_file), **training},
    )


def test_the_builder_stores_the_parent_model_as_an_input(engine_code, tiny_model_file):
    builder = fine_tuning_builder(engine_code, tiny_model_file)
    assert isinstance(builder.parent_model, PotentialData)
    assert builder.parent_model.sha256 == file_sha256(tiny_model_file)
    assert "parent_model" not in builder.train.parameters.get_dict()  # a path is no job's input


def test_the_first_training_is_fine_tuned_and_the_lineage_shows_the_parent(engine_code, tiny_model_file):
    builder = fine_tuning_builder(engine_code, tiny_model_file)
    builder.convergence = orm.Dict({"max_iterations": 1, "accurate_fraction": 0.01, "patience": 1})
    results, node = run_get_node(builder)
    assert "potential" in results, node.exit_message
    parent = node.inputs.parent_model
    first = next(call for call in node.called if call.process_label == "TrainingWorkChain")
    assert first.base.links.get_incoming(link_type=LinkType.CALL_WORK).one().link_label == "train_0"
    calculation = first.called[0]
    assert calculation.inputs.parent_model.uuid == parent.uuid
    assert calculation.outputs.metrics["parent_model"]["sha256"] == parent.sha256
    later = [
        call for call in node.called if call.process_label == "TrainingWorkChain" and call.pk != first.pk
    ]
    assert all("parent_model" not in call.called[0].inputs for call in later)  # the first committee only
    lineage = potential_lineage(results["potential"])
    assert [model.uuid for model in lineage.parent_models] == [parent.uuid]


def test_bad_parent_models_are_refused_before_anything_runs(engine_code, tiny_model_file, generate_workchain):
    copper = [bulk("Cu", "fcc", a=3.6, cubic=True)]
    builder = fine_tuning_builder(engine_code, tiny_model_file, structures=copper)
    with pytest.raises(ValueError, match=r"knows the elements \['Al'\], not \['Cu'\] of the structures"):
        generate_workchain(ActiveLearningWorkChain, builder)
    with pytest.raises(ValueError, match="does not exist"):
        fine_tuning_builder(engine_code, tiny_model_file.parent / "missing.model")
    pytest.importorskip("mace")
    with pytest.raises(ValueError, match=r"is a `builtin` model but training.backend is `mace`"):
        fine_tuning_builder(engine_code, tiny_model_file, backend="mace")


def test_a_parent_model_beside_an_initial_potential_is_refused(
    engine_code, tiny_model_file, generate_workchain
):
    builder = fine_tuning_builder(engine_code, tiny_model_file)
    builder.potential = PotentialData(file=tiny_model_file)
    with pytest.raises(ValueError, match="either an initial `potential` or a `parent_model`"):
        generate_workchain(ActiveLearningWorkChain, builder)
    builder = al_builder(engine_code)
    builder.train.parameters = orm.Dict({**TINY_TRAINING, "parent_model": str(tiny_model_file)})
    with pytest.raises(ValueError, match=r"parent_model`? is a path"):
        generate_workchain(ActiveLearningWorkChain, builder)


#: each test here (or its fixtures) takes over ~30 s: `make test` starts this file early (tests/conftest.py)
pytestmark = pytest.mark.slow
