"""``aiida-mlip-explore`` run for real as a console script: files in, files out, exit codes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.io import read, write

from aiida_mlip.exploration.parameters import BREAK_FACTOR
from aiida_mlip.potentials.frames import Frames
from tests.exploration.al_committee import aluminium, committee_files

SCRIPT = Path(sys.executable).parent / "aiida-mlip-explore"


@pytest.fixture(scope="session")
def al_committee(tmp_path_factory):
    return committee_files(tmp_path_factory.getbasetemp() / "al_committee")


def explore(tmp_path, parameters, structures=None, extra=(), model=None):
    (tmp_path / "parameters.yaml").write_text(yaml.safe_dump(parameters))
    if structures is None:
        structures = [aluminium()]
    write(tmp_path / "start.extxyz", structures)
    command = [
        str(SCRIPT),
        "--model",
        str(model),
        "--structures",
        str(tmp_path / "start.extxyz"),
        "--parameters",
        str(tmp_path / "parameters.yaml"),
        "--output-dir",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_ramp_run_writes_every_output(al_committee, tmp_path):
    parameters = {
        "ensemble": "nvt",
        "temperature": [300, 2000],
        "steps": 200,
        "timestep_fs": 2.0,
        "check_interval": 10,
        "write_interval": 20,
        "trust": {"lo": 0.1, "hi": 0.3},
        "walkers": 2,
        "seed": 3,
    }
    done = explore(
        tmp_path, parameters, model=al_committee["model"], extra=["--training", str(al_committee["training"])]
    )
    assert done.returncode == 0, done.stderr
    assert "walker 1 step 0" in done.stdout and "done in" in done.stdout
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["walkers"]) == 2
    with open(out / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(w["checked_frames"] for w in summary["walkers"])
    assert {row["class"] for row in rows} <= {"accurate", "candidate", "failed"}
    assert all(np.isfinite(float(row["gamma"])) for row in rows)  # the active set came from --training
    assert (out / "active_set.npz").is_file()
    trajectory = read(out / "trajectory.extxyz", index=":")
    assert len(trajectory) == sum(w["trajectory_frames"] for w in summary["walkers"])
    candidates = Frames.read_hdf5(out / "candidates.h5")
    with open(out / "candidates.csv") as handle:
        scores = list(csv.DictReader(handle))
    assert len(candidates) == len(scores) == summary["candidates"]
    assert not candidates.is_labelled
    # a committee trained at 300 K only, ramped to 2000 K: every walker reaches the break threshold
    # (BREAK_FACTOR x trust.hi = 0.6 eV/A, or the grade's) before the end, and the frame table ends each walker on that frame
    for walker in summary["walkers"]:
        assert walker["stop_reason"] == "break_threshold" and walker["stopped_early"] is True
        assert walker["steps_done"] < parameters["steps"]
        last = [row for row in rows if int(row["walker"]) == walker["walker"]][-1]
        assert last["stop_reason"].startswith("break_threshold")
        assert int(last["step"]) == walker["steps_done"]
        if "max force deviation" in last["stop_reason"]:
            assert float(last["max_force_deviation"]) >= BREAK_FACTOR * parameters["trust"]["hi"]
        else:  # the extrapolation grade watched through --training broke it first
            assert "gamma" in last["stop_reason"]
            assert float(last["gamma"]) >= 10.0  # gamma_break = gamma_hi, 10 by default


def test_batched_setting_gives_the_same_files(al_committee, tmp_path):
    """``batched: true`` (lockstep, one committee pass per step) and ``false`` write the same tables."""
    parameters = {
        "temperature": [300, 1500],
        "steps": 100,
        "timestep": 2.0,
        "check_interval": 10,
        "trust": {"lo": 0.1, "hi": 0.3},
        "walkers": 3,
        "seed": 5,
    }
    tables, summaries = [], []
    for batched in (True, False):
        directory = tmp_path / str(batched)
        directory.mkdir()
        done = explore(directory, {**parameters, "batched": batched}, model=al_committee["model"])
        assert done.returncode == 0, done.stderr
        assert ("3 walker(s) in lockstep" in done.stdout) is batched
        assert ("lockstep: 3 walkers" in done.stdout) is batched
        with open(directory / "out" / "frames.csv") as handle:
            tables.append(list(csv.DictReader(handle)))
        summaries.append(json.loads((directory / "out" / "summary.json").read_text()))
    assert summaries[0]["parameters"]["batched"] is True and summaries[1]["parameters"]["batched"] is False
    assert [(w["stop_reason"], w["steps_done"]) for w in summaries[0]["walkers"]] == [
        (w["stop_reason"], w["steps_done"]) for w in summaries[1]["walkers"]
    ]
    assert summaries[0]["counts"] == summaries[1]["counts"]
    assert len(tables[0]) == len(tables[1])
    for lockstep, alone in zip(*tables, strict=True):
        assert (lockstep["walker"], lockstep["step"], lockstep["class"]) == (
            alone["walker"],
            alone["step"],
            alone["class"],
        )
        # float32 model: a batch of graphs and a single graph round differently in the last bits
        assert float(lockstep["energy_eV"]) == pytest.approx(float(alone["energy_eV"]), abs=1e-4)
        assert float(lockstep["max_force_deviation"]) == pytest.approx(
            float(alone["max_force_deviation"]), abs=1e-4
        )


def test_path_integral_walker_writes_bead_frames(al_committee, tmp_path):
    parameters = {"steps": 20, "timestep": 1.0, "check_interval": 10, "walkers": 1}
    parameters["path_integral"] = {"beads": 4}
    done = explore(tmp_path, parameters, model=al_committee["model"])
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["parameters"]["path_integral"]["beads"] == 4
    assert summary["walkers"][0]["checked_frames"] == 3 and summary["walkers"][0]["steps_done"] == 20
    trajectory = read(tmp_path / "out" / "trajectory.extxyz", index=":")
    assert len(trajectory) == 3 and all(0 <= frame.info["bead"] < 4 for frame in trajectory)
    with open(tmp_path / "out" / "frames.csv") as handle:  # each row names the bead it checked
        rows = list(csv.DictReader(handle))
    assert [int(row["bead"]) for row in rows] == [frame.info["bead"] for frame in trajectory]


def test_metadynamics_walker_records_its_collective_variable(al_committee, tmp_path):
    """The distance the hills are laid on is a column of frames.csv and candidates.csv (NaN on plain walkers)."""
    parameters = {
        "steps": 40,
        "timestep": 2.0,
        "check_interval": 10,
        "walkers": 2,
        "trust": {"lo": 0.0, "hi": 5.0},
        "metadynamics": {"cv": {"atoms": [0, 1]}, "pace": 5, "walkers": [1]},
    }
    done = explore(tmp_path, parameters, model=al_committee["model"])
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    trajectory = read(out / "trajectory.extxyz", index=":")
    with open(out / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and all(int(row["bead"]) == -1 for row in rows)
    for row in rows:
        value = float(row["collective_variable"])
        if int(row["walker"]) == 0:
            assert np.isnan(value)
        else:
            frame = trajectory[int(row["trajectory_index"])]
            assert value == pytest.approx(frame.get_distance(0, 1, mic=True), abs=1e-5)
            assert frame.info["collective_variable"] == pytest.approx(value, abs=1e-5)
    with open(out / "candidates.csv") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 10  # lo 0: every checked frame is a candidate
    assert [np.isfinite(float(row["collective_variable"])) for row in scores] == [
        int(row["walker"]) == 1 for row in scores
    ]
    summary = json.loads((out / "summary.json").read_text())
    low, high = summary["walkers"][1]["collective_variable_range"]
    assert summary["walkers"][0]["collective_variable_range"] is None
    walker_1 = [float(row["collective_variable"]) for row in rows if row["walker"] == "1"]
    assert (low, high) == pytest.approx((min(walker_1), max(walker_1)), abs=1e-6)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"trust": {"lo": 0.3, "hi": 0.1}}, "`exploration.md.trust`: the trust window needs lo < hi"),
        ({"temperature": -5}, "non-negative"),
        ({"ensemble": "npe"}, "unknown ensemble"),
    ],
)
def test_bad_parameters_exit_2(al_committee, tmp_path, parameters, message):
    done = explore(tmp_path, parameters, model=al_committee["model"])
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_missing_model_and_unknown_element_exit_2(al_committee, tmp_path):
    done = explore(tmp_path, {"steps": 10}, model=tmp_path / "nothing.safetensors")
    assert done.returncode == 2 and "not found" in done.stderr
    copper = Atoms("Cu2", positions=[[0, 0, 0], [1.8, 1.8, 0]], cell=[3.6] * 3, pbc=True)
    done = explore(tmp_path, {"steps": 10}, structures=[copper], model=al_committee["model"])
    assert done.returncode == 2 and "Cu" in done.stderr


def test_every_walker_exploded_exit_3(al_committee, tmp_path):
    crushed = aluminium()
    crushed.positions[1] = crushed.positions[0] + [0.2, 0.0, 0.0]
    done = explore(tmp_path, {"steps": 20, "walkers": 2}, structures=[crushed], model=al_committee["model"])
    assert done.returncode == 3, done.stderr
    assert "exploded before its first frame" in done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["all_exploded_before_first_frame"] is True
    assert [w["stop_reason"] for w in summary["walkers"]] == ["exploded", "exploded"]


def test_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "aiida_mlip.engine.explore", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--parameters" in done.stdout
