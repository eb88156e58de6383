"""Well-tempered metadynamics on a distance: forces, tempered hills, settings refused with their reason."""

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.exploration.metadynamics import MetadynamicsBias, MetadynamicsSettings, distance_cv
from aiida_mlip.exploration.parameters import ExploreParameters
from aiida_mlip.settings import SettingsError

SETTINGS = {"cv": {"atoms": [0, 1]}, "height": 0.1, "width": 0.2, "pace": 5, "bias_factor": 5.0}


@pytest.fixture
def biased():
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.positions += np.random.default_rng(2).normal(0, 0.1, atoms.positions.shape)
    atoms.calc = MetadynamicsBias(EMT(), MetadynamicsSettings.from_mapping(SETTINGS), temperature=300.0)
    return atoms


def test_hills_are_tempered_and_forces_are_minus_the_gradient(biased):
    calc = biased.calc
    s, _ = distance_cv(biased, (0, 1))
    assert s == pytest.approx(biased.get_distance(0, 1, mic=True))
    calc.deposit(biased)
    calc.deposit(biased)  # the second hill, where the first is, is lower by exp(-V / k dT)
    assert calc.heights[0] == 0.1
    assert calc.heights[1] == pytest.approx(0.1 * np.exp(-0.1 / (units.kB * 4 * 300.0)))
    biased.positions[0] += [0.05, 0.02, 0.0]  # off the hills' centre: a force along the distance
    forces = biased.get_forces()
    results = calc.results
    assert results["energy"] == pytest.approx(results["unbiased_energy"] + results["metadynamics_energy"])
    assert 0 < results["metadynamics_energy"] < sum(calc.heights)
    step = 1e-5
    for index, axis in ((0, 0), (1, 1), (2, 2)):
        energies = []
        for sign in (1, -1):
            moved = biased.copy()
            moved.positions[index, axis] += sign * step
            moved.calc = calc
            energies.append(moved.get_potential_energy())
        assert -(energies[0] - energies[1]) / (2 * step) == pytest.approx(forces[index, axis], abs=2e-6)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**SETTINGS, "cv": {"atoms": [3, 3]}}, "two different atoms"),
        ({**SETTINGS, "cv": {"kind": "angle", "atoms": [0, 1]}}, "unknown collective variable 'angle'"),
        ({**SETTINGS, "bias_factor": 1.0}, "bias_factor"),
        ({**SETTINGS, "height": -0.1}, "height"),
        (
            {key: value for key, value in SETTINGS.items() if key != "cv"},
            "missing key `exploration.md.metadynamics.cv`",
        ),
    ],
)
def test_bad_metadynamics_is_refused(values, message):
    with pytest.raises(SettingsError, match=message):
        ExploreParameters.from_mapping({"metadynamics": values})


def test_atoms_that_do_not_exist_are_refused():
    settings = MetadynamicsSettings.from_mapping({"cv": {"atoms": [0, 40]}})
    with pytest.raises(SettingsError, match=r"atom\(s\) \[40\] do not exist in start structure 1 \(32 atoms"):
        settings.check_atoms(32, "start structure 1")
