"""Walkers in lockstep (one batched committee evaluation per step) against one walker after the other."""

import csv
import importlib.util

import numpy as np
import pytest

from aiida_mlip.exploration import ExploreParameters, explore, write_exploration
from aiida_mlip.exploration import lockstep as lockstep_module
from aiida_mlip.exploration.lockstep import run_in_lockstep
from aiida_mlip.potentials import load_calculator
from aiida_mlip.selection.trust import TrustWindow
from tests.conftest import require_component
from tests.potentials.emt_data import md_frames

from .al_committee import aluminium

WINDOW = {"trust": TrustWindow(lo=0.1, hi=0.3), "break_threshold": 0.5}


@pytest.fixture(scope="module")
def calculator(al_committee):
    # float64: the batched and the one-walker passes then agree to ~1e-12 eV/A per step
    return load_calculator(al_committee["model"], device="cpu", dtype="float64")


def starts():
    """A 32-atom cell, a 31-atom vacancy cell (other neighbour counts: padded slots in the batch),
    a rattled cell that breaks at once, and a collapsed pair that explodes at the first check."""
    vacancy = aluminium()
    del vacancy[5]
    vacancy.rattle(0.05, seed=2)
    rattled = aluminium()
    rattled.rattle(0.35, seed=3)
    collapsed = aluminium()
    collapsed.positions[1] = collapsed.positions[0] + [0.3, 0.0, 0.0]
    return [aluminium(), vacancy, rattled, collapsed]


def run_both(structures, calculator, **settings):
    results = []
    for batched in (False, True):
        parameters = ExploreParameters(batched=batched, **settings)
        results.append(explore(structures, calculator, parameters))
    return results


def assert_same(one_by_one, lockstep, tolerance=1e-7):
    assert len(one_by_one.walkers) == len(lockstep.walkers)
    for alone, batched in zip(one_by_one.walkers, lockstep.walkers, strict=True):
        assert (alone.walker, alone.stop_reason, alone.steps_done) == (
            batched.walker,
            batched.stop_reason,
            batched.steps_done,
        )
        assert [c.frame_class for c in alone.checks] == [c.frame_class for c in batched.checks]
        for name in ("energy", "max_force_deviation", "temperature", "min_distance"):
            np.testing.assert_allclose(
                [getattr(c, name) for c in batched.checks],
                [getattr(c, name) for c in alone.checks],
                rtol=0,
                atol=tolerance,
                err_msg=name,
            )
        assert len(alone.trajectory) == len(batched.trajectory)
        assert len(alone.candidates) == len(batched.candidates)
        for a, b in zip(alone.trajectory, batched.trajectory, strict=True):
            np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=tolerance)
            np.testing.assert_allclose(b.get_momenta(), a.get_momenta(), rtol=0, atol=tolerance)


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_lockstep_walkers_follow_the_one_walker_trajectories(calculator, ensemble):
    """NVE, and Langevin NVT with its per-walker random stream (seed + walker): the same trajectories."""
    structures = starts()[:2]
    one_by_one, lockstep = run_both(
        structures,
        calculator,
        ensemble=ensemble,
        temperature=600,
        steps=60,
        timestep=2.0,
        check_interval=10,
        walkers=4,
        seed=7,
        trust=TrustWindow(lo=0.1, hi=1.0),
        break_threshold=5.0,
    )
    assert_same(one_by_one, lockstep)
    assert all(w.stop_reason == "completed" and w.steps_done == 60 for w in lockstep.walkers)
    assert all(len(w.checks) == 7 for w in lockstep.walkers)
    # the walkers differ from each other (own seeds, own starts)
    energies = {round(w.checks[-1].energy, 6) for w in lockstep.walkers}
    assert len(energies) == 4


@pytest.mark.parametrize("hand_over", ["greenlet", "threads"])
def test_a_walker_that_breaks_leaves_the_batch(calculator, tmp_path, monkeypatch, hand_over):
    """The rattled walker breaks and the collapsed one explodes at the first check; the others go on.

    The same with the walkers as threads (where greenlet is not installed).
    """
    if hand_over == "threads":
        monkeypatch.setattr(lockstep_module, "greenlet", None)
    one_by_one, lockstep = run_both(
        starts(),
        calculator,
        temperature=300,
        steps=80,
        timestep=2.0,
        check_interval=10,
        walkers=4,
        seed=1,
        **WINDOW,
    )
    assert_same(one_by_one, lockstep)
    reasons = [(w.stop_reason, w.steps_done) for w in lockstep.walkers]
    print(f"stop reasons and steps: {reasons}")
    assert reasons[0] == ("completed", 80)
    assert reasons[1][0] == "break_threshold" and 0 < reasons[1][1] < 80  # left the batch mid-run
    assert reasons[2] == ("break_threshold", 0)
    assert reasons[3] == ("exploded", 0)
    assert lockstep.walkers[3].exploded_before_first_frame
    tables = []
    for name, result in (("alone", one_by_one), ("lockstep", lockstep)):
        write_exploration(result, tmp_path / name)
        with open(tmp_path / name / "frames.csv") as handle:
            tables.append(list(csv.reader(handle)))
    assert len(tables[0]) == len(tables[1]) == 1 + sum(len(w.checks) for w in lockstep.walkers)
    for alone, batched in zip(*tables, strict=True):
        for a, b in zip(alone, batched, strict=True):
            try:
                assert float(a) == pytest.approx(float(b), abs=1e-5, nan_ok=True)
            except ValueError:
                assert a == b


def test_bias_walkers_run_alone_and_errors_come_back(calculator):
    """A biased walker falls back to the one-walker path; an error of a task is raised by the driver."""
    parameters = ExploreParameters(
        temperature=300,
        steps=20,
        timestep=2.0,
        check_interval=10,
        walkers=3,
        seed=4,
        bias={"strength": 0.5, "walkers": [1]},
        **WINDOW,
    )
    lockstep = explore([aluminium()], calculator, parameters)
    one_by_one = explore([aluminium()], calculator, parameters.model_copy(update={"batched": False}))
    assert_same(one_by_one, lockstep)

    def fails(walker_calculator):
        raise RuntimeError("walker task failed")

    def fine(walker_calculator):
        atoms = aluminium()
        atoms.calc = walker_calculator
        return atoms.get_potential_energy()

    atoms = aluminium()
    atoms.calc = calculator
    for threads in (False, True):
        with pytest.raises(RuntimeError, match="walker task failed"):
            run_in_lockstep(calculator, [fine, fails, fine], threads=threads)
        energy = run_in_lockstep(calculator, [fine, fine], threads=threads)
        assert energy == pytest.approx([atoms.get_potential_energy()] * 2, abs=1e-10)


def test_mace_walkers_in_lockstep(tmp_path):
    """A tiny MACE committee (two members, trained 2 epochs): the batched graphs give the same walkers."""
    require_component(
        importlib.util.find_spec("mace") is not None, "mace-torch (pip install 'aiida-mlip[mace]')"
    )
    from aiida_mlip.potentials.backends import get_backend
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import TrainConfig
    from tests.potentials.backends.test_mace import TINY

    backend = get_backend("mace")
    frames = Frames.from_atoms(md_frames(600, 10, seed=1, repeat=1))
    model = backend.train(frames, TrainConfig.from_mapping(TINY), log=None, device="cpu").model
    backend.save(model, tmp_path / "mace.safetensors")
    mace = load_calculator(tmp_path / "mace.safetensors", device="cpu", dtype="float64")
    structures = starts()[:2]
    one_by_one, lockstep = run_both(
        structures,
        mace,
        ensemble="nve",
        temperature=300,
        steps=30,
        timestep=1.0,
        check_interval=10,
        walkers=3,
        seed=2,
        trust=TrustWindow(lo=1.0, hi=5.0),
        break_threshold=50.0,
        max_energy_jump=100.0,
    )
    assert_same(one_by_one, lockstep)
    assert [w.steps_done for w in lockstep.walkers] == [30, 30, 30]
    assert len({round(w.checks[-1].energy, 6) for w in lockstep.walkers}) == 3
