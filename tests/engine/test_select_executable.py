"""``aiida-mlip-select`` run for real as a console script on a pool of configurations."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiida_mlip.potentials.frames import Frames
from tests.exploration.al_committee import committee_files, emt_frames

SCRIPT = Path(sys.executable).parent / "aiida-mlip-select"


@pytest.fixture(scope="session")
def al_committee(tmp_path_factory):
    return committee_files(tmp_path_factory.getbasetemp() / "al_committee")


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    """12 frames at 900 K plus exact copies of frames 0..3 (frames 12..15)."""
    frames = emt_frames(temperature=900.0, walkers=2, per_walker=6, interval=5)
    pool = Frames.concatenate([frames, frames.subset([0, 1, 2, 3])])
    path = tmp_path_factory.mktemp("pool") / "pool.h5"
    pool.write_hdf5(path)
    return path


def select(tmp_path, parameters, pool, *extra):
    (tmp_path / "select.yaml").write_text(yaml.safe_dump(parameters))
    command = [
        str(SCRIPT),
        "--pool",
        str(pool),
        "--parameters",
        str(tmp_path / "select.yaml"),
        "--output-dir",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("strategy", ["hybrid", "d_optimal"])
def test_selects_within_budget_without_duplicates(al_committee, pool_file, tmp_path, strategy):
    parameters = {"strategy": strategy, "budget": 6, "seed": 0}
    if strategy == "hybrid":
        parameters["trust"] = {"lo": 0.0, "hi": 10.0}  # every pool frame is a candidate: D-optimality decides
    done = select(
        tmp_path,
        parameters,
        pool_file,
        "--model",
        str(al_committee["model"]),
        "--training",
        str(al_committee["training"]),
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out" / "selection.json").read_text())
    picked = [item["pool_index"] for item in record["selected"]]
    assert 0 < len(picked) <= 6 and len(set(picked)) == len(picked)
    originals = {index if index < 12 else index - 12 for index in picked}
    assert len(originals) == len(picked), picked  # a frame and its copy are never both picked
    selected = Frames.read_hdf5(tmp_path / "out" / "selected.h5")
    assert len(selected) == len(picked) and not selected.is_labelled
    assert (tmp_path / "out" / "active_set.npz").is_file()
    assert all(item["file"] == str(pool_file) for item in record["selected"])


def test_max_deviation_from_sidecar_scores_needs_no_model(pool_file, tmp_path):
    pool = tmp_path / "pool.h5"
    pool.write_bytes(pool_file.read_bytes())
    rows = ["candidate_index,max_force_deviation"] + [f"{i},{0.05 * i}" for i in range(16)]
    pool.with_suffix(".csv").write_text("\n".join(rows) + "\n")
    done = select(tmp_path, {"strategy": "max_deviation", "budget": 3, "duplicate_tol": None}, pool)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert [item["pool_index"] for item in record["selected"]] == [15, 14, 13]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"strategy": "best", "budget": 2}, "unknown strategy"),
        (
            {"strategy": "random", "budget": 0},
            "`selection.budget`: Input should be greater than or equal to 1",
        ),
        ({"strategy": "random", "budget": -1}, "budget"),
        ({"strategy": "random", "budget": 2, "lo": 0.1}, "unknown key `selection.lo`"),
        ({"strategy": "random", "budget": 2, "tol": 0.1}, "strategy 'random' ignores option(s) tol"),
        ({"strategy": "d_optimal", "budget": 2}, "features"),
    ],
)
def test_bad_input_exit_2(pool_file, tmp_path, parameters, message):
    done = select(tmp_path, parameters, pool_file)
    assert done.returncode == 2
    assert message in done.stderr
