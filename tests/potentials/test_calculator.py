"""The ASE calculator: results, committee spread on every N-th call, features, NVE energy conservation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from aiida_mlip.potentials import CommitteeCalculator, load_calculator
from aiida_mlip.potentials.committee import save_committee
from tests.potentials.emt_data import aluminium

SPREAD_KEYS = {
    "committee_energy",
    "committee_forces",
    "force_deviation",
    "max_force_deviation",
    "energy_deviation",
}


@pytest.fixture(scope="module")
def model_path(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_committee(trained.model, path)
    return path


def _rattled(repeat=2, seed=0):
    atoms = aluminium(repeat)
    atoms.rattle(0.08, seed=seed)
    return atoms


def test_results_and_spread(model_path):
    calc = load_calculator(model_path, device="auto")
    assert calc.elements == ["Al"] and calc.cutoff == 5.0 and calc.committee_size == 4
    atoms = _rattled()
    atoms.calc = calc
    forces, energy, stress = atoms.get_forces(), atoms.get_potential_energy(), atoms.get_stress()
    assert forces.shape == (32, 3) and stress.shape == (6,)
    results = calc.results
    assert SPREAD_KEYS <= set(results)
    assert results["committee_energy"].shape == (4,) and results["committee_forces"].shape == (4, 32, 3)
    np.testing.assert_allclose(energy, results["committee_energy"].mean(), rtol=1e-6)
    np.testing.assert_allclose(forces, results["committee_forces"].mean(0), atol=1e-6)
    deviation = np.sqrt(((results["committee_forces"] - forces) ** 2).sum(-1).mean(0))
    np.testing.assert_allclose(results["force_deviation"], deviation, atol=1e-6)
    assert results["max_force_deviation"] == pytest.approx(deviation.max(), abs=1e-6)
    assert results["energy_deviation"] == pytest.approx(results["committee_energy"].std(), abs=1e-6)
    np.testing.assert_allclose(results["energies"].sum(), energy, rtol=1e-6)
    assert results["free_energy"] == energy


def test_spread_every_n_calls(model_path):
    atoms = _rattled()
    atoms.calc = load_calculator(model_path, spread_every=3)
    with_spread = []
    for step in range(7):
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()
        with_spread.append(SPREAD_KEYS <= set(atoms.calc.results))
        assert not (SPREAD_KEYS & set(atoms.calc.results)) or with_spread[-1], step
    assert with_spread == [True, False, False, True, False, False, True]


def test_mean_only_calls_agree_with_spread_calls(model_path):
    atoms = _rattled(seed=4)
    every, never = (
        load_calculator(model_path, spread_every=1),
        load_calculator(model_path, spread_every=10**6),
    )
    every.calculate(atoms, ["forces"])
    never.calls = 1  # skip the first call's spread
    never.calculate(atoms, ["forces"])
    assert not SPREAD_KEYS & set(never.results)
    np.testing.assert_allclose(never.results["forces"], every.results["forces"], atol=1e-5)
    np.testing.assert_allclose(never.results["energy"], every.results["energy"], rtol=1e-6)


def test_stress_only_for_periodic_cells_and_features(model_path):
    calc = load_calculator(model_path, dtype="float64")
    cluster = Atoms("Al4", positions=[[0, 0, 0], [2.8, 0, 0], [0, 2.8, 0], [0, 0, 2.9]])
    calc.calculate(cluster, ["energy", "forces"])
    assert "stress" not in calc.results and calc.results["forces"].shape == (4, 3)
    atoms = _rattled()
    hidden = calc.get_features(atoms)
    descriptor = calc.get_features(atoms, kind="descriptor")
    assert hidden.shape == (32, 4 * 64) and hidden.dtype == np.float64
    assert descriptor.shape == (32, 152) and np.isfinite(descriptor).all()


def test_verlet_skin_gives_the_same_forces(model_path):
    atoms = _rattled(seed=5)
    skinned, fresh = load_calculator(model_path, skin=1.0), load_calculator(model_path, skin=0.0)
    skinned.calculate(atoms, ["forces"])
    atoms.positions += np.random.default_rng(0).normal(0, 0.1, atoms.positions.shape)
    skinned.calculate(atoms, ["forces"])
    fresh.calculate(atoms, ["forces"])
    assert skinned.neighbours.builds == 1
    np.testing.assert_allclose(skinned.results["forces"], fresh.results["forces"], atol=1e-5)


def test_cuda_without_gpu_and_bad_arguments(model_path):
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            load_calculator(model_path, device="cuda")
    with pytest.raises(ValueError, match="spread_every"):
        load_calculator(model_path, spread_every=0)
    assert isinstance(load_calculator(model_path, device="cpu"), CommitteeCalculator)


def test_nve_energy_drift(model_path):
    """NVE MD of 108 atoms started at 600 K: the total energy drifts by less than 1 meV/atom over 5 ps."""
    atoms = aluminium(3)
    thermalize_momenta(atoms, temperature_K=1200, rng=np.random.default_rng(0))  # ~600 K after equipartition
    Stationary(atoms)
    atoms.calc = load_calculator(model_path, spread_every=10)
    dynamics = VelocityVerlet(atoms, 4 * units.fs)
    energies = []
    dynamics.attach(lambda: energies.append(atoms.get_total_energy() / len(atoms)), interval=10)
    dynamics.run(1250)
    energies = np.array(energies)
    times = np.arange(len(energies)) * 0.04  # ps
    slope = np.polyfit(times, energies, 1)[0]
    drift = abs(slope) * 5.0
    print(
        f"NVE 108 atoms, 5 ps, dt 4 fs: T_end {atoms.get_temperature():.0f} K, drift {1e3 * drift:.3f} meV/atom, "
        f"max |E - E0| {1e3 * np.abs(energies - energies[0]).max():.3f} meV/atom"
    )
    assert 300 < atoms.get_temperature() < 1000
    assert drift < 1e-3
    assert np.abs(energies - energies[0]).max() < 1e-3


def test_evaluate_many_is_each_configuration_alone(model_path):
    """One pass over a 32-atom cell, a 108-atom cell, a cluster and a broken one: each as if alone."""
    from aiida_mlip.potentials.neighbours import VerletList

    calc = load_calculator(model_path, dtype="float64")
    cluster = Atoms("Al4", positions=[[0, 0, 0], [2.8, 0, 0], [0, 2.8, 0], [0, 0, 2.9]])
    broken = _rattled(seed=3)
    broken.positions[0] = np.nan
    configurations = [_rattled(seed=1), _rattled(3, seed=2), cluster, broken]
    lists = [VerletList(calc.cutoff, 0.5) for _ in configurations]
    answers = calc.evaluate_many(configurations, lists)
    assert isinstance(answers[3], Exception)
    for atoms, answer in zip(configurations[:3], answers[:3], strict=True):
        alone = load_calculator(model_path, dtype="float64")
        alone.calculate(atoms, ["energy", "forces"])
        assert set(answer) == set(alone.results)
        for key, value in alone.results.items():
            np.testing.assert_allclose(answer[key], value, rtol=1e-10, atol=1e-10, err_msg=key)
    mean_only = calc.evaluate_many(configurations[:2], lists[:2], spread=False)
    assert "max_force_deviation" not in mean_only[0]
    np.testing.assert_allclose(mean_only[1]["forces"], answers[1]["forces"], atol=1e-10)
