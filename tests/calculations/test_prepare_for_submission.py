"""What each CalcJob hands the scheduler: arguments, uploaded and written files, the retrieve list.

``generate_calc_job`` (tests/conftest.py) calls ``prepare_for_submission`` on a folder without
running anything, so these tests check the submission of every CalcJob in milliseconds.
"""

import pytest
from aiida import orm
from ase.build import bulk

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData

#: What the scheduler brings back from every engine job besides the outputs: its stdout and stderr.
STREAMS = {"aiida.out", "aiida.err"}


def assert_uploads_exist(prepared):
    """Every file named in ``local_copy_list`` is in the repository of the node it is copied from."""
    for target, (uuid, name) in prepared.uploads.items():
        assert name in orm.load_node(uuid).base.repository.list_object_names(), target


@pytest.fixture
def start():
    return StructureSetData.from_atoms([bulk("Al", "fcc", a=4.05, cubic=True)]).store()


def test_train_from_scratch(generate_calc_job, engine_code, aluminium_dataset, tiny_training):
    prepared = generate_calc_job(
        "mlip.train",
        {"code": engine_code("mlip.train"), "dataset": aluminium_dataset, "parameters": tiny_training},
    )
    assert prepared.option("--dataset") == "dataset.h5"
    assert prepared.option("--config") == "config.json"
    assert prepared.option("--device") == "auto"  # the default: CUDA when the node has one, else the CPU
    assert "--init" not in prepared.arguments
    assert prepared.uploads == {"dataset.h5": (aluminium_dataset.uuid, DatasetData.FILENAME)}
    assert_uploads_exist(prepared)
    assert prepared.written() == ["config.json"]
    assert prepared.read_json("config.json") == tiny_training.get_dict()
    retrieved = set(prepared.calcinfo.retrieve_list)
    assert retrieved == STREAMS | {
        "model.safetensors",
        "metrics.json",
        "learning_curve.csv",
        "checkpoint.safetensors",  # retrieved whatever the outcome: the restart point
    }


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_train_warm_start_and_device(
    generate_calc_job, engine_code, aluminium_dataset, tiny_training, tiny_potential, device
):
    prepared = generate_calc_job(
        "mlip.train",
        {
            "code": engine_code("mlip.train"),
            "dataset": aluminium_dataset,
            "parameters": tiny_training,
            "parent_potential": tiny_potential,
            "device": orm.Str(device),
        },
    )
    assert prepared.option("--device") == device
    assert prepared.option("--init") == "init.safetensors"
    assert prepared.uploads == {
        "dataset.h5": (aluminium_dataset.uuid, DatasetData.FILENAME),
        "init.safetensors": (tiny_potential.uuid, PotentialData.FILENAME),
    }
    assert_uploads_exist(prepared)


def test_train_refuses_a_bad_device_before_preparing(
    generate_calc_job, engine_code, aluminium_dataset, tiny_training
):
    with pytest.raises(ValueError, match="device"):
        generate_calc_job(
            "mlip.train",
            {
                "code": engine_code("mlip.train"),
                "dataset": aluminium_dataset,
                "parameters": tiny_training,
                "device": orm.Str("gpu0"),
            },
        )


@pytest.mark.parametrize("with_training_set", [False, True])
def test_explore(generate_calc_job, engine_code, tiny_potential, start, aluminium_dataset, with_training_set):
    parameters = {"temperature": [300, 600], "steps": 20, "trust": {"lo": 0.05, "hi": 0.3}}
    inputs = {
        "code": engine_code("mlip.explore"),
        "potential": tiny_potential,
        "structures": start,
        "parameters": orm.Dict(parameters),
    }
    if with_training_set:
        inputs["training_set"] = aluminium_dataset
    prepared = generate_calc_job("mlip.explore", inputs)
    expected = {
        "model.safetensors": (tiny_potential.uuid, PotentialData.FILENAME),
        "structures.h5": (start.uuid, StructureSetData.FILENAME),
    }
    if with_training_set:
        expected["training.h5"] = (aluminium_dataset.uuid, DatasetData.FILENAME)
        assert prepared.option("--training") == "training.h5"
    else:
        assert "--training" not in prepared.arguments
    assert prepared.uploads == expected
    assert_uploads_exist(prepared)
    assert prepared.option("--model") == "model.safetensors"
    assert prepared.option("--structures") == "structures.h5"
    assert prepared.option("--parameters") == "parameters.json"
    assert prepared.read_json("parameters.json") == parameters
    assert set(prepared.calcinfo.retrieve_list) == STREAMS | {
        "trajectory.extxyz",
        "frames.csv",
        "candidates.h5",
        "candidates.csv",
        "summary.json",
    }


@pytest.mark.parametrize("with_scores", [False, True])
def test_select(generate_calc_job, engine_code, tiny_potential, aluminium_dataset, tmp_path, with_scores):
    pool = StructureSetData.from_atoms(aluminium_dataset.get_atoms()[:3])
    if with_scores:
        table = tmp_path / "scores.csv"
        table.write_text("max_force_deviation\n0.1\n0.2\n0.3\n")
        pool.set_scores_file(table)
    pool.store()
    parameters = {"strategy": "hybrid", "budget": 2, "trust": {"lo": 0.05, "hi": 0.5}}
    prepared = generate_calc_job(
        "mlip.select",
        {
            "code": engine_code("mlip.select"),
            "pool": pool,
            "potential": tiny_potential,
            "training_set": aluminium_dataset,
            "parameters": orm.Dict(parameters),
        },
    )
    expected = {
        "pool.h5": (pool.uuid, StructureSetData.FILENAME),
        "model.safetensors": (tiny_potential.uuid, PotentialData.FILENAME),
        "training.h5": (aluminium_dataset.uuid, DatasetData.FILENAME),
    }
    if with_scores:  # the exploration's scores travel with the pool
        expected["pool.csv"] = (pool.uuid, StructureSetData.SCORES_FILENAME)
    assert prepared.uploads == expected
    assert_uploads_exist(prepared)
    assert prepared.option("--pool") == "pool.h5"
    assert prepared.option("--training") == "training.h5"
    assert prepared.read_json("parameters.json") == parameters
    assert set(prepared.calcinfo.retrieve_list) == STREAMS | {"selected.h5", "selection.json"}


def test_label(generate_calc_job, engine_code, start):
    labeller = {"calculator": "ase.calculators.emt.EMT", "kwargs": {"asap_cutoff": True}}
    prepared = generate_calc_job(
        "mlip.label",
        {"code": engine_code("mlip.label"), "structures": start, "labeller": orm.Dict(labeller)},
    )
    assert prepared.uploads == {"structures.h5": (start.uuid, StructureSetData.FILENAME)}
    assert_uploads_exist(prepared)
    assert prepared.option("--labeller") == "labeller.json"
    written = prepared.read_json("labeller.json")
    assert written["calculator"] == labeller["calculator"]
    assert written["kwargs"] == labeller["kwargs"]
    assert {"energy", "forces"} <= set(written["properties"])  # the defaults are made explicit
    assert set(prepared.calcinfo.retrieve_list) == STREAMS | {
        "labelled.h5",
        "labelled_indices.json",
        "failures.json",
        "summary.json",
    }
