"""The ``aiida-mlip-train`` console script, run as a real subprocess: files, metrics, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiida_mlip.potentials.frames import Frames
from tests.potentials.emt_data import md_frames

EXECUTABLE = shutil.which("aiida-mlip-train") or str(Path(sys.executable).parent / "aiida-mlip-train")
SMALL = "max_epochs: 2\ncommittee_size: 2\nhidden: 8\nbatch_size: 4\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    frames = Frames.from_atoms(md_frames(600, 12, seed=21, interval=3, equilibrate=5))
    frames.write_hdf5(folder / "dataset.h5")
    frames.write_extxyz(folder / "dataset.extxyz")
    return folder


def _run(tmp_path, dataset_file, config_text, *extra):
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        EXECUTABLE,
        "--dataset",
        str(dataset_file),
        "--config",
        str(config),
        "--output-dir",
        str(tmp_path / "out"),
    ]
    return subprocess.run([*command, *extra], capture_output=True, text=True, env=environment, timeout=300)


def test_training_writes_model_metrics_and_curve(tmp_path, dataset):
    run = _run(tmp_path, dataset / "dataset.h5", SMALL)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("epoch ") >= 2
    out = tmp_path / "out"
    for name in ("model.safetensors", "checkpoint.safetensors", "learning_curve.csv", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 2 and metrics["device"] == "cpu"
    assert metrics["final_lr"] > 0 and metrics["seconds_per_epoch"] > 0
    assert metrics["valid"]["mean"]["forces"] > 0
    assert len((out / "learning_curve.csv").read_text().splitlines()) == 3

    from aiida_mlip.potentials import load_calculator

    assert load_calculator(out / "model.safetensors").committee_size == 2


def test_nan_loss_exits_3_and_leaves_a_usable_checkpoint(tmp_path, dataset):
    run = _run(tmp_path, dataset / "dataset.h5", SMALL + "lr: 1e6\n")
    assert run.returncode == 3, run.stdout + run.stderr
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "nan_loss"
    assert not (out / "model.safetensors").exists()
    checkpoint = tmp_path / "checkpoint.safetensors"
    shutil.copy(out / "checkpoint.safetensors", checkpoint)
    # the checkpoint restarts a run (from extended XYZ this time)
    restart = _run(tmp_path, dataset / "dataset.extxyz", "max_epochs: 1\n", "--init", str(checkpoint))
    assert restart.returncode == 0, restart.stderr
    assert "warm start" in restart.stdout


@pytest.mark.parametrize(
    ("config_text", "message"),
    [("lr: -1\n", "lr"), ("not_a_key: 1\n", "unknown"), ("[1, 2]\n", "mapping"), ("lr: [\n", "YAML")],
)
def test_bad_config_exits_2(tmp_path, dataset, config_text, message):
    run = _run(tmp_path, dataset / "dataset.h5", config_text)
    assert run.returncode == 2
    assert message in run.stderr


def test_missing_dataset_exits_2(tmp_path):
    run = _run(tmp_path, tmp_path / "nowhere.h5", SMALL)
    assert run.returncode == 2 and "does not exist" in run.stderr


def test_module_entry_point(tmp_path, dataset):
    config = tmp_path / "config.json"
    config.write_text('{"committee_size": 0}')
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiida_mlip.engine.train",
            "--dataset",
            str(dataset / "dataset.h5"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "committee_size" in run.stderr


def test_cuda_without_a_gpu_exits_5_before_training(tmp_path, dataset):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    run = _run(tmp_path, dataset / "dataset.h5", SMALL, "--device", "cuda")
    assert run.returncode == 5, run.stderr
    assert "CUDA is not available" in run.stderr and "epoch " not in run.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] == "device_unavailable" and metrics["device"] == "cuda"
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_warm_start_knows_the_new_frames_from_the_parent_file(tmp_path, dataset):
    (tmp_path / "first").mkdir()
    first = _run(tmp_path / "first", dataset / "dataset.h5", SMALL)
    assert first.returncode == 0, first.stderr
    parent = tmp_path / "first" / "out" / "model.safetensors"
    from aiida_mlip.potentials.model_file import read_model_metadata

    assert len(read_model_metadata(parent)["training_frames"]) == 12  # train + validation frames
    grown = Frames.concatenate(
        [Frames.read_hdf5(dataset / "dataset.h5"), Frames.from_atoms(md_frames(1200, 6, seed=22, interval=3))]
    )
    grown.write_hdf5(tmp_path / "grown.h5")
    warm = _run(tmp_path, tmp_path / "grown.h5", SMALL + "min_epochs: 2\n", "--init", str(parent))
    assert warm.returncode == 0, warm.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] in ("ok", "no_improvement")
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] >= 1
    new = metrics["new_frames"]
    assert new["n"] == 6 and new["identified_by"] == "training_frames recorded in the parent's model file"
    assert new["n_valid"] >= 1  # the stratified split validates on new frames too
    assert new["forces_before"] > 0 and new["forces_after"] > 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_mace_backend_without_mace_torch_exits_2_naming_the_extra(tmp_path, dataset, monkeypatch, capsys):
    """``backend: mace`` on a node without mace-torch: exit 2 before training, the message names the extra."""
    from importlib.metadata import PackageNotFoundError

    from aiida_mlip.engine.train import main
    from aiida_mlip.potentials.backends import mace_settings

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(mace_settings, "package_version", missing)
    (tmp_path / "config.yaml").write_text(SMALL + "backend: mace\n")
    arguments = ["--dataset", str(dataset / "dataset.h5"), "--config", str(tmp_path / "config.yaml")]
    assert main([*arguments, "--output-dir", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert "pip install 'aiida-mlip[mace]'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_fine_tuning_from_a_parent_model_in_the_config(tmp_path, dataset):
    """``parent_model`` in the config: a committee of 3 made from a parent of 2; a bad path exits 2."""
    (tmp_path / "first").mkdir()
    first = _run(tmp_path / "first", dataset / "dataset.h5", SMALL)
    assert first.returncode == 0, first.stderr
    parent = tmp_path / "first" / "out" / "model.safetensors"
    missing = _run(tmp_path, dataset / "dataset.h5", SMALL + f"parent_model: {tmp_path / 'none.model'}\n")
    assert missing.returncode == 2 and "none.model does not exist" in missing.stderr
    config = SMALL.replace("committee_size: 2", "committee_size: 3") + f"parent_model: {parent}\n"
    tuned = _run(tmp_path, dataset / "dataset.h5", config)
    assert tuned.returncode == 0, tuned.stderr
    assert "fine-tuning from the parent model" in tuned.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["parent_model"]["parent_committee_size"] == 2 and metrics["committee_size"] == 3
    from aiida_mlip.potentials.model_file import file_sha256

    assert metrics["parent_model"]["sha256"] == file_sha256(parent)
