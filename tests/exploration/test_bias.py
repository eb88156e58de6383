"""Uncertainty bias: forces are minus the gradient of its energy, the cap holds, bad settings are refused."""

import numpy as np
import pytest
from ase.build import bulk

from aiida_mlip.exploration.bias import BiasSettings, UncertaintyBias, bias_energy_forces
from aiida_mlip.exploration.md import explore
from aiida_mlip.exploration.parameters import ExploreParameters
from aiida_mlip.potentials.calculator import CommitteeCalculator
from aiida_mlip.potentials.committee import CommitteePotential
from aiida_mlip.settings import SettingsError


@pytest.fixture(scope="module")
def committee():
    """An untrained committee of 3 (members disagree: the energy deviation is far from zero), float64."""
    model = CommitteePotential(["Al"], cutoff=4.0, committee_size=3, hidden=8, n_radial=4, l_max=2, seed=3)
    return CommitteeCalculator(model, device="cpu", dtype="float64")


@pytest.fixture
def atoms():
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.positions += np.random.default_rng(0).normal(0, 0.1, atoms.positions.shape)
    return atoms


def test_bias_forces_are_minus_the_gradient_of_its_energy(committee, atoms):
    atoms.calc = UncertaintyBias(committee, BiasSettings(strength=2.0, cap=0.05))
    forces = atoms.get_forces()
    results = atoms.calc.results
    assert results["energy"] == pytest.approx(results["unbiased_energy"] + results["bias_energy"])
    assert results["bias_energy"] < 0 and np.abs(forces - committee.results["forces"]).max() > 1e-4
    step = 1e-5
    for index, axis in ((0, 0), (1, 2), (3, 1)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[index, axis] += sign * step
            moved.calc = atoms.calc
            energies.append(moved.get_potential_energy())
        assert -(energies[0] - energies[1]) / (2 * step) == pytest.approx(
            forces[index, axis], rel=1e-5, abs=1e-8
        )


def test_bias_is_linear_then_capped():
    rng = np.random.default_rng(1)
    forces = rng.normal(size=(4, 5, 3))
    small, _, sigma = bias_energy_forces(np.array([0.0, 1e-4, -1e-4, 0.0]), forces, strength=3.0, cap=0.2)
    assert small == pytest.approx(-3.0 * sigma, rel=1e-3)  # -s sigma while s sigma << cap
    large, large_forces, _ = bias_energy_forces(
        np.array([0.0, 10.0, -10.0, 5.0]), forces, strength=3.0, cap=0.2
    )
    assert -0.2 <= large < -0.2 + 1e-12 and np.abs(large_forces).max() < 1e-12  # saturated: no pull left
    none, none_forces, _ = bias_energy_forces(np.array([1.0, 2.0]), forces[:2], strength=0.0, cap=0.2)
    assert none == 0.0 and not none_forces.any()
    assert not BiasSettings(strength=0.0).applies_to(0)
    assert BiasSettings(walkers=[1]).applies_to(1) and not BiasSettings(walkers=[1]).applies_to(0)


@pytest.mark.parametrize(
    ("bias", "extra", "message"),
    [
        ({"strength": -1.0}, {}, "bias strength must be zero or positive"),
        ({"cap": 0.0}, {}, "bias cap must be positive"),
        ({"strenght": 1.0}, {}, "did you mean `strength`"),
        ({}, {"ensemble": "npt"}, "no stress term"),
        ({"walkers": [2]}, {"walkers": 2}, r"bias.walkers \[2\] names walkers beyond the 2"),
    ],
)
def test_bad_bias_is_refused(bias, extra, message):
    with pytest.raises(SettingsError, match=message):
        ExploreParameters.from_mapping({"bias": bias, **extra})


def test_only_the_named_walkers_are_biased(committee, atoms):
    parameters = ExploreParameters.from_mapping(
        {
            "steps": 4,
            "check_interval": 2,
            "walkers": 2,
            "bias": {"strength": 1.0, "cap": 0.1, "walkers": [1]},
            "trust": {"lo": 1e3, "hi": 2e3},
        }
    )
    result = explore([atoms], committee, parameters)
    plain, biased = result.walkers
    assert [w.steps_done for w in result.walkers] == [4, 4]
    committee.calculate(biased.trajectory[-1], ["energy"])
    assert biased.checks[-1].energy == pytest.approx(committee.results["energy"])  # recorded without the bias
    assert result.summary()["parameters"]["bias"] == {"strength": 1.0, "cap": 0.1, "walkers": [1]}
    assert plain.checks[0].energy == pytest.approx(biased.checks[0].energy)  # same start, same committee
