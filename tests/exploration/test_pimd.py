"""Ring-polymer MD: quantum spread of a harmonic oscillator, P = 1 is classical, beads reach the pool."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from aiida_mlip.exploration.md import run_walker
from aiida_mlip.exploration.parameters import ExploreParameters
from aiida_mlip.exploration.pimd import HBAR, PathIntegralSettings, RingPolymerDynamics, normal_modes
from aiida_mlip.settings import SettingsError

MASS = 1.008  # hydrogen, amu
QUANTUM = 0.2  # hbar omega, eV: beta hbar omega = 7.7 at 300 K
TEMPERATURE = 300.0
OMEGA = QUANTUM / HBAR
SPRING = MASS * OMEGA**2  # eV / A^2
BETA = 1 / (units.kB * TEMPERATURE)


class Harmonic(Calculator):
    """Independent isotropic harmonic wells; a planted committee deviation grows with the displacement."""

    implemented_properties = ("energy", "forces")

    def __init__(self, centres, deviation_per_angstrom=0.0):
        super().__init__()
        self.centres = centres
        self.slope = deviation_per_angstrom

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        displacement = self.atoms.positions - self.centres
        self.results = {
            "energy": 0.5 * SPRING * float(np.sum(displacement**2)),
            "forces": -SPRING * displacement,
            "max_force_deviation": self.slope * float(np.linalg.norm(displacement, axis=1).max()),
            "energy_deviation": 0.0,
        }


def hydrogens(count=16):
    centres = np.arange(count)[:, None] * np.array([5.0, 0.0, 0.0])
    return Atoms(f"H{count}", positions=centres.copy()), centres


def sample(beads, steps, seed=0):
    atoms, centres = hydrogens()
    settings = PathIntegralSettings(beads=beads)
    dynamics = RingPolymerDynamics(
        atoms, Harmonic(centres), settings, TEMPERATURE, 0.5, 20.0, np.random.default_rng(seed)
    )
    dynamics.run(100)
    spread, kinetic = [], []
    for _ in range(steps // 2):
        dynamics.run(2)
        spread.append(np.mean((dynamics.q - centres) ** 2))
        kinetic.append(dynamics.virial_kinetic_energy() / (3 * len(atoms)))
    return float(np.mean(spread)), float(np.mean(kinetic))


def test_normal_modes_are_orthogonal_and_diagonalise_the_ring():
    for beads in (2, 5, 8):
        matrix, sines = normal_modes(beads)
        assert np.allclose(matrix.T @ matrix, np.eye(beads))
        ring = 2 * np.eye(beads) - np.roll(np.eye(beads), 1, 0) - np.roll(np.eye(beads), -1, 0)
        assert np.allclose(matrix.T @ ring @ matrix, np.diag(4 * sines**2))


def test_twelve_beads_give_the_quantum_spread_and_kinetic_energy():
    x2, kinetic = sample(12, 500)
    classical = 1 / (BETA * MASS * OMEGA**2)  # <x^2> per Cartesian direction, A^2
    quantum = HBAR / (2 * MASS * OMEGA) / np.tanh(BETA * QUANTUM / 2)
    ring = 2 * 12 / (BETA * HBAR) * np.sin(np.arange(12) * np.pi / 12)
    exact_for_12 = float(np.sum(1 / (OMEGA**2 + ring**2)) / (BETA * MASS))  # the discretised path integral
    assert x2 > 3.5 * classical
    assert x2 == pytest.approx(exact_for_12, rel=0.06)
    assert x2 == pytest.approx(quantum, rel=0.08)
    # centroid virial kinetic energy per degree of freedom, eV: hbar omega / 4 coth(beta hbar omega / 2)
    assert kinetic > 3.5 / (2 * BETA)
    assert kinetic == pytest.approx(QUANTUM / 4 / np.tanh(BETA * QUANTUM / 2), rel=0.08)


def test_one_bead_is_classical_langevin_md():
    x2, kinetic = sample(1, 3000, seed=1)
    assert x2 == pytest.approx(1 / (BETA * MASS * OMEGA**2), rel=0.08)
    assert kinetic == pytest.approx(0.5 / BETA, rel=1e-12)  # no beads to spread: exactly k_B T / 2


def test_walker_with_eight_beads_puts_untrusted_beads_in_the_pool():
    atoms, centres = hydrogens(4)
    parameters = ExploreParameters.from_mapping(
        {
            "temperature": TEMPERATURE,
            "timestep": 0.5,
            "steps": 100,
            "check_interval": 10,
            "thermostat_time": 20.0,
            "walkers": 2,
            "trust": {"lo": 0.15, "hi": 0.5},
            "path_integral": {"beads": 8, "walkers": [1]},
        }
    )
    calculator = Harmonic(centres, deviation_per_angstrom=1.0)  # 0.15 eV/A deviation at 0.15 A
    classical = run_walker(atoms, calculator, parameters, walker=0)
    quantum = run_walker(atoms, calculator, parameters, walker=1)
    assert quantum.stop_reason == classical.stop_reason == "completed"
    assert len(quantum.checks) == len(classical.checks) == 11
    # the beads reach further than the classical atom does, so more frames leave the trusted range
    spread = [np.mean([c.max_force_deviation for c in w.checks[1:]]) for w in (classical, quantum)]
    assert spread[1] > 1.5 * spread[0]
    assert len(quantum.candidates) > len(classical.candidates)
    frame, check = quantum.candidates[-1]
    assert 0 <= frame.info["bead"] < 8 and frame.info["walker"] == 1
    assert check.max_force_deviation == pytest.approx(np.linalg.norm(frame.positions - centres, axis=1).max())
    assert "bead" not in classical.candidates[0][0].info if classical.candidates else True
    # the bead frames carry momenta at the physical temperature scale
    assert 50 < np.mean([c.temperature for c in quantum.checks[1:]]) < 1000


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"path_integral": {"beads": 0}}, "beads"),
        ({"path_integral": {"beads": 8, "pile_lambda": -1.0}}, "pile_lambda must be positive"),
        ({"path_integral": {"beads": 8}, "ensemble": "npt"}, "path_integral walkers run nvt"),
        ({"path_integral": {"beads": 8}, "ensemble": "nve"}, "path_integral walkers run nvt"),
        ({"path_integral": {"beads": 8}, "bias": {"strength": 1.0}}, "does not combine with bias"),
        ({"path_integral": {"beads": 8, "walkers": [3]}, "walkers": 2}, "beyond the 2 of the exploration"),
        ({"path_integral": {"beeds": 8}}, "beeds"),
    ],
)
def test_bad_path_integral_is_refused(values, message):
    with pytest.raises(SettingsError, match=message):
        ExploreParameters.from_mapping(values)
