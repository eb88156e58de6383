"""Parsers on recorded outputs, failures included (no executable runs here)."""

import json

from aiida import orm
from ase.build import bulk

from aiida_mlip.calculations.explore import ExploreCalculation
from aiida_mlip.calculations.label import LabelCalculation
from aiida_mlip.calculations.train import TrainCalculation
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.parsers.explore import ExploreParser
from aiida_mlip.parsers.label import LabelParser
from aiida_mlip.parsers.select import SelectParser
from aiida_mlip.parsers.train import TrainParser
from tests.calculations.conftest import emt_aluminium_images

CURVE = "epoch,lr,train_loss,valid_loss\n1,0.005,1.0,1.2\n2,0.004,nan,nan\n"


def parse(parser, node):
    return parser.parse_from_node(node, store_provenance=False)


def test_train_nan_loss_keeps_checkpoint(recorded_calculation, aluminium_dataset, tiny_model_file):
    files = {
        "metrics.json": json.dumps({"status": "nan_loss", "epochs": 2}),
        "learning_curve.csv": CURVE,
        "checkpoint.safetensors": tiny_model_file.read_bytes(),
        "aiida.out": "epoch 2 loss nan\n",
    }
    node = recorded_calculation("mlip.train", {"dataset": aluminium_dataset}, files)
    results, calcfunction = parse(TrainParser, node)
    assert calcfunction.exit_status == TrainCalculation.exit_codes.ERROR_NAN_LOSS.status
    assert "epoch 2" in calcfunction.exit_message
    assert results["checkpoint"].training_set_uuid == aluminium_dataset.uuid
    assert "potential" not in results
    assert list(results["learning_curve"].get_array("epoch")) == [1.0, 2.0]


def test_train_no_improvement_still_outputs_the_trained_potential(
    recorded_calculation, aluminium_dataset, tiny_model_file
):
    metrics = {
        "status": "no_improvement",
        "epochs_run": 10,
        "best_epoch": 4,
        "new_frames": {"n": 8, "forces_before": 0.21, "forces_after": 0.1},
    }
    files = {"metrics.json": json.dumps(metrics), "model.safetensors": tiny_model_file.read_bytes()}
    node = recorded_calculation("mlip.train", {"dataset": aluminium_dataset}, files)
    results, calcfunction = parse(TrainParser, node)
    assert calcfunction.exit_status == 0
    assert results["potential"].training_set_uuid == aluminium_dataset.uuid
    assert results["metrics"]["status"] == "no_improvement" and results["metrics"]["epochs_run"] == 10


def test_train_diverged_interrupted_missing_and_bad_input(
    recorded_calculation, aluminium_dataset, tiny_model_file
):
    codes = TrainCalculation.exit_codes
    cases = [
        ({"metrics.json": json.dumps({"status": "diverged", "epochs": 7})}, codes.ERROR_DIVERGED),
        (
            {"checkpoint.safetensors": tiny_model_file.read_bytes(), "learning_curve.csv": CURVE},
            codes.ERROR_INTERRUPTED,
        ),
        ({"aiida.out": ""}, codes.ERROR_MISSING_OUTPUT),
        ({"aiida.err": "aiida-mlip-train: bad config: unknown keys ['x']\n"}, codes.ERROR_BAD_INPUT),
    ]
    for files, expected in cases:
        node = recorded_calculation("mlip.train", {"dataset": aluminium_dataset}, files)
        _, calcfunction = parse(TrainParser, node)
        assert calcfunction.exit_status == expected.status, (files.keys(), calcfunction.exit_message)
    assert "unknown keys" in calcfunction.exit_message


def test_label_partial_and_total_failure(recorded_calculation, tmp_path):
    from aiida_mlip.potentials.frames import Frames

    structures = StructureSetData.from_atoms(emt_aluminium_images(2)).store()
    labeller = orm.Dict({"calculator": "ase.calculators.emt.EMT"}).store()
    labelled = tmp_path / "labelled.h5"
    Frames.from_atoms(emt_aluminium_images(1)).write_hdf5(labelled)
    failures = [{"index": 1, "error": "RuntimeError: SCF not converged"}]
    summary = {"n_frames": 2, "n_labelled": 1, "n_failed": 1}
    partial = {
        "summary.json": json.dumps(summary),
        "failures.json": json.dumps(failures),
        "labelled.h5": labelled.read_bytes(),
    }
    node = recorded_calculation("mlip.label", {"structures": structures, "labeller": labeller}, partial)
    results, calcfunction = parse(LabelParser, node)
    assert calcfunction.exit_status == LabelCalculation.exit_codes.ERROR_SOME_LABELS_FAILED.status
    assert results["labelled"].n_frames == 1
    assert set(results["labelled"].get_frames().source_uuid) == {node.uuid}
    assert results["failures"]["failures"] == failures

    total = {"summary.json": json.dumps(summary), "failures.json": json.dumps(failures * 2)}
    node = recorded_calculation("mlip.label", {"structures": structures, "labeller": labeller}, total)
    _, calcfunction = parse(LabelParser, node)
    assert calcfunction.exit_status == LabelCalculation.exit_codes.ERROR_ALL_LABELS_FAILED.status

    refused = {"aiida.err": "aiida-mlip-label: bad input: cannot read structures.h5\n"}
    node = recorded_calculation("mlip.label", {"structures": structures, "labeller": labeller}, refused)
    _, calcfunction = parse(LabelParser, node)
    assert calcfunction.exit_status == LabelCalculation.exit_codes.ERROR_BAD_INPUT.status


def test_explore_all_walkers_exploded(recorded_calculation):
    summary = {
        "counts": {"accurate": 0, "candidate": 0, "failed": 1},
        "all_exploded_before_first_frame": True,
        "stop_reasons": {"exploded": 2},
        "walkers": [],
    }
    files = {"summary.json": json.dumps(summary), "frames.csv": "walker,step,max_force_deviation\n0,0,nan\n"}
    start = StructureSetData.from_atoms([bulk("Al", cubic=True)]).store()
    node = recorded_calculation("mlip.explore", {"structures": start}, files)
    results, calcfunction = parse(ExploreParser, node)
    assert calcfunction.exit_status == ExploreCalculation.exit_codes.ERROR_ALL_WALKERS_EXPLODED.status
    assert results["summary"]["stop_reasons"] == {"exploded": 2}
    assert "candidates" not in results


def test_select_missing_output(recorded_calculation):
    node = recorded_calculation("mlip.select", {}, {"aiida.out": "killed\n"})
    _, calcfunction = parse(SelectParser, node)
    assert calcfunction.exit_status == 300
