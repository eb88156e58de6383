"""Special quasi-random structures: neighbour shells, Warren-Cowley order, the search, its settings."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from aiida_mlip.exploration.generator_settings import GenerateSettings
from aiida_mlip.exploration.generators import substitutions
from aiida_mlip.exploration.sqs import neighbour_shells, short_range_order, special_quasirandom
from aiida_mlip.settings import SettingsError

A = 3.6  # Angstrom


@pytest.fixture
def lattice():
    return bulk("Cu", "fcc", a=A, cubic=True).repeat(2)  # 32 sites


def _shuffled(lattice, counts, rng):
    alloy = lattice.copy()
    alloy.set_chemical_symbols(list(rng.permutation(np.repeat(list(counts), list(counts.values())))))
    return alloy


def test_fcc_shells_have_the_fcc_coordinations(lattice):
    shells = neighbour_shells(lattice, 3)
    for (first, _), coordination in zip(shells, (12, 6, 24), strict=True):
        assert np.bincount(first, minlength=len(lattice)).tolist() == [coordination] * len(lattice)


def test_warren_cowley_of_ordered_cu3au():
    # L1_2: every Au has 12 Cu nearest neighbours, so alpha_1(Au, Au) = 1 - 0 / x_Au = 1 and
    # alpha_1(Cu, Au) = 1 - (4 / 12) / (1 / 4) = -1/3; the second shell (at a) joins like atoms
    # only, so alpha_2(Au, Au) = 1 - 1 / (1 / 4) = -3
    ordered = bulk("Cu", "fcc", a=A, cubic=True)
    ordered.symbols[0] = "Au"
    first, second, _ = short_range_order(ordered, shells=3)
    assert first == pytest.approx(1.0)
    assert second == pytest.approx(3.0)


def test_sqs_matches_the_random_alloy_better_than_a_shuffle(lattice):
    counts = {"Cu": 24, "Au": 8}
    rng = np.random.default_rng(3)
    sqs = special_quasirandom(lattice, counts, rng, shells=3)
    assert sorted(sqs.get_chemical_symbols()).count("Au") == 8
    assert np.allclose(sqs.positions, lattice.positions) and np.allclose(sqs.cell, lattice.cell)
    assert sqs.info["sro"] == pytest.approx(short_range_order(sqs, shells=3))
    shuffles = np.array([short_range_order(_shuffled(lattice, counts, rng), 3) for _ in range(20)])
    # a 32-site shuffle of Cu3Au keeps a largest |alpha| of 0.16, 0.30, 0.16 on average (shells 1-3)
    assert np.all(shuffles.mean(axis=0) > 0.1)
    assert max(sqs.info["sro"]) < 0.05
    again = special_quasirandom(lattice, counts, np.random.default_rng(3), shells=3)
    assert again.get_chemical_symbols() == sqs.get_chemical_symbols()


def test_five_element_sqs():
    lattice = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(3)  # 108 sites
    counts = {"Cu": 22, "Ni": 22, "Pd": 22, "Ag": 21, "Au": 21}
    sqs = special_quasirandom(lattice, counts, np.random.default_rng(1), shells=2, steps=1500)
    assert {s: sqs.get_chemical_symbols().count(s) for s in counts} == counts
    assert max(sqs.info["sro"]) < 0.5 * min(sqs.info["sro_random"])


def test_substitutions_with_sqs(lattice):
    block = GenerateSettings.from_mapping(
        {"substitutions": {"composition": {"Cu": 0.5, "Au": 0.5}, "structures": 2, "method": "sqs"}}
    ).substitutions
    made = substitutions(lattice, block, np.random.default_rng(0))
    for alloy in made:
        assert alloy.info["generator"] == "substitution" and alloy.info["method"] == "sqs"
        assert alloy.info["composition"] == {"Cu": 16, "Au": 16}
        assert max(alloy.info["sro"]) < 0.05 and len(alloy.info["sro_random"]) == 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "quasi"}, "substitutions.method`: Input should be 'random' or 'sqs'"),
        ({"method": "sqs", "shells": 0}, "substitutions.shells`: Input should be greater than 0"),
        (
            {"method": "sqs", "sqs_steps": -1},
            "substitutions.sqs_steps`: Input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_sqs_settings_are_refused(values, message):
    with pytest.raises(SettingsError, match=message):
        GenerateSettings.from_mapping({"substitutions": {"composition": {"Cu": 0.5, "Au": 0.5}, **values}})


def test_sqs_needs_a_periodic_cell_and_exact_counts(lattice):
    molecule = Atoms("Cu4", positions=np.eye(4, 3) * 2.5)
    with pytest.raises(ValueError, match="periodic in all three directions"):
        special_quasirandom(molecule, {"Cu": 2, "Au": 2}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="do not add up to the 32 sites"):
        special_quasirandom(lattice, {"Cu": 20, "Au": 8}, np.random.default_rng(0))
