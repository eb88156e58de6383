"""Uncertainty-watched MD with the real committee (trained on 300 K EMT aluminium only)."""

import csv
import json

import numpy as np
import pytest
from ase import Atoms

from aiida_mlip.exploration import ExploreParameters, explore, grader, run_walker, write_exploration
from aiida_mlip.potentials import load_calculator
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.selection.maxvol import ActiveSet
from aiida_mlip.selection.trust import TrustWindow

from .al_committee import aluminium

# trust window on the max force deviation, eV/A; the committee's deviation on its own training
# frames is below 0.1 eV/A (see test_training_frames_are_accurate)
WINDOW = {"trust": TrustWindow(lo=0.1, hi=0.3), "break_threshold": 0.5}


@pytest.fixture(scope="module")
def calculator(al_committee):
    return load_calculator(al_committee["model"], device="cpu", spread_every=1)


def test_training_frames_are_accurate(al_committee, calculator):
    deviations = []
    for atoms in Frames.read_hdf5(al_committee["training"]).to_atoms()[::4]:
        atoms.calc = calculator
        atoms.get_forces()
        deviations.append(calculator.results["max_force_deviation"])
    print(
        f"max force deviation on training frames: median {np.median(deviations):.3f}, max {max(deviations):.3f} eV/A"
    )
    assert np.median(deviations) < WINDOW["trust"].lo


def test_300K_run_is_mostly_accurate(calculator, tmp_path):
    parameters = ExploreParameters(
        temperature=300, steps=400, timestep=2.0, check_interval=10, seed=1, **WINDOW
    )
    result = explore([aluminium()], calculator, parameters)
    counts = result.counts
    walker = result.walkers[0]
    print(
        f"300 K: {counts}, stop {walker.stop_reason} after {walker.steps_done} steps, max deviation "
        f"{walker.summary()['max_force_deviation_seen']:.3f} eV/A"
    )
    assert counts["accurate"] > 0.5 * sum(counts.values())
    assert counts["accurate"] > counts["candidate"] + counts["failed"]


def test_ramp_to_2000K_finds_candidates_then_breaks(calculator, tmp_path):
    parameters = ExploreParameters(
        temperature=[300, 2000],
        steps=400,
        timestep=2.0,
        check_interval=10,
        write_interval=20,
        seed=1,
        **WINDOW,
    )
    result = explore([aluminium()], calculator, parameters)
    walker = result.walkers[0]
    counts = result.counts
    print(
        f"300 -> 2000 K: {counts}, stop {walker.stop_reason} at step {walker.steps_done} "
        f"(target {walker.checks[-1].target_temperature:.0f} K): {walker.detail}"
    )
    assert len(walker.candidates) > 0
    # the pool holds the window and the frames above hi that did not explode (for the top-up),
    # the breaking frame included; accurate frames are not in it
    in_pool = [check for _, check in walker.candidates]
    assert {check.frame_class for check in in_pool} == {"candidate", "failed"}
    assert len(in_pool) == counts["candidate"] + counts["failed"]
    assert all(
        check.max_force_deviation >= WINDOW["trust"].hi for check in in_pool if check.frame_class == "failed"
    )
    assert in_pool[-1] is walker.checks[-1]
    assert walker.stop_reason == "break_threshold"
    assert walker.steps_done < parameters.steps
    assert walker.checks[-1].max_force_deviation >= parameters.break_threshold
    assert all(check.max_force_deviation < parameters.break_threshold for check in walker.checks[:-1])

    paths = write_exploration(result, tmp_path)
    summary = json.loads(paths["summary"].read_text())
    assert summary["walkers"][0]["stop_reason"] == "break_threshold"
    assert summary["walkers"][0]["stopped_early"] is True
    assert summary["walkers"][0]["steps_done"] == walker.steps_done
    assert summary["counts"] == counts and summary["candidates"] == len(walker.candidates)
    with open(paths["frames"]) as handle:
        rows = list(csv.DictReader(handle))
    assert rows[-1]["stop_reason"].startswith("break_threshold")
    assert [row["class"] for row in rows].count("candidate") == counts["candidate"]
    candidates = Frames.read_hdf5(paths["candidates"])
    assert len(candidates) == len(walker.candidates)
    # the breaking frame is the last one of the trajectory
    assert walker.trajectory[-1].info["step"] == walker.steps_done


def test_npt_with_pressure_ramp_and_nve(calculator):
    npt = ExploreParameters(
        ensemble="npt",
        temperature=300,
        pressure=[0.0, 1.0],
        steps=40,
        timestep=2.0,
        check_interval=10,
        trust=TrustWindow(lo=0.1, hi=0.5),
    )
    walker = run_walker(aluminium(), calculator, npt)
    assert walker.steps_done == 40 and walker.stop_reason in ("completed", "break_threshold")
    assert np.isfinite([check.pressure for check in walker.checks]).all()
    assert walker.trajectory[-1].get_volume() != pytest.approx(aluminium().get_volume(), rel=1e-6)
    nve = ExploreParameters(
        ensemble="nve",
        temperature=100,
        steps=40,
        timestep=1.0,
        check_interval=10,
        trust=TrustWindow(lo=0.05, hi=0.5),
    )
    walker = run_walker(aluminium(), calculator, nve)
    total = [check.energy + 1.5 * 32 * 8.617333e-5 * check.temperature for check in walker.checks]
    assert np.ptp(total) < 0.05  # eV over 40 fs of velocity Verlet


def test_gamma_watch_and_explosions_are_outcomes(al_committee, calculator):
    training = Frames.read_hdf5(al_committee["training"]).to_atoms()[::3]
    features = np.concatenate([calculator.get_features(atoms) for atoms in training])
    numbers = np.concatenate([atoms.numbers for atoms in training])
    active = ActiveSet.build(features, numbers)
    grade = grader(calculator, active)
    assert max(grade(atoms) for atoms in training) <= 1 + 1e-3
    parameters = ExploreParameters(temperature=300, steps=20, check_interval=10, gamma_lo=1.5, gamma_hi=50.0)
    walker = run_walker(aluminium(), calculator, parameters, grade=grade)
    assert np.isfinite([check.gamma for check in walker.checks]).all()

    crushed = aluminium()
    crushed.positions[5] = crushed.positions[4] + [0.3, 0, 0]
    walker = run_walker(crushed, calculator, parameters, grade=grade)
    assert walker.stop_reason == "exploded" and walker.exploded_before_first_frame
    assert "apart" in walker.detail and walker.trajectory == []
    lonely = Atoms("Al", positions=[[0, 0, 0]], cell=[20, 20, 20], pbc=False)
    walker = run_walker(lonely, calculator, ExploreParameters(temperature=300, steps=10, check_interval=5))
    assert walker.stop_reason in ("completed", "exploded", "break_threshold")
