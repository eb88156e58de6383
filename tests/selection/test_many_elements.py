"""Five elements: descriptor shapes, one active set per element, a D-optimal batch over all five."""

import numpy as np
from ase.build import bulk
from ase.data import atomic_numbers

from aiida_mlip.exploration.generator_settings import SubstitutionSettings
from aiida_mlip.exploration.generators import substitutions
from aiida_mlip.potentials.calculator import CommitteeCalculator
from aiida_mlip.potentials.committee import CommitteePotential
from aiida_mlip.selection.batch import select_batch
from aiida_mlip.selection.features import active_set_from
from aiida_mlip.selection.settings import SelectionSettings
from aiida_mlip.selection.trust import TrustWindow

FIVE = ["Cu", "Ni", "Pd", "Ag", "Au"]
NUMBERS = sorted(atomic_numbers[e] for e in FIVE)


def alloys(count, seed):
    """Rattled 32-atom random fcc alloys of the five elements (equal fractions)."""
    parent = bulk("Cu", "fcc", a=3.84, cubic=True).repeat(2)
    settings = SubstitutionSettings(composition={e: 0.2 for e in FIVE}, structures=count)
    images = substitutions(parent, settings, np.random.default_rng(seed))
    for number, atoms in enumerate(images):
        atoms.rattle(0.05, seed=seed + number)
    return images


def committee(**kwargs):
    model = CommitteePotential(FIVE, cutoff=4.0, committee_size=2, hidden=8, n_radial=3, l_max=1, **kwargs)
    return CommitteeCalculator(model, dtype="float64", spread_every=1)


def test_five_element_descriptor_shapes():
    atoms = alloys(1, seed=0)[0]
    assert sorted(set(atoms.numbers)) == NUMBERS
    compressed, onehot = committee(), committee(species_channels=5)
    # q = channels x n_radial; q + q(q+1)/2 (l_max + 1) features: 3 channels by default, 5 one-hot
    assert compressed.get_features(atoms, kind="descriptor").shape == (32, 9 + 45 * 2)
    assert onehot.get_features(atoms, kind="descriptor").shape == (32, 15 + 120 * 2)
    assert compressed.get_features(atoms, kind="hidden").shape == (32, 16)
    atoms.calc = compressed
    forces = atoms.get_forces()
    assert forces.shape == (32, 3) and np.isfinite(forces).all()
    assert np.isfinite(atoms.calc.results["max_force_deviation"])


def test_five_element_selection_has_a_block_per_element():
    calculator = committee()
    training, pool = alloys(3, seed=1), alloys(6, seed=2)
    active_set = active_set_from(calculator, training)
    assert sorted(active_set.elements) == NUMBERS
    grades = active_set.grade(calculator.get_features(pool[0]), pool[0].numbers)
    assert grades.shape == (32,) and np.isfinite(grades).all()
    settings = SelectionSettings(strategy="d_optimal", budget=3, seed=0, windowed=False)
    scores = {"max_force_deviation": np.full(len(pool), 0.2)}
    outcome = select_batch(
        pool, settings, TrustWindow(lo=0.05, hi=0.5), calculator=calculator, scores=scores, training=training
    )
    assert 1 <= len(outcome.indices) <= 3
    assert sorted(outcome.active_set.elements) == NUMBERS
    # the picked frames' environments grew the active set of every element (log-volume, per element)
    before, after = active_set.log_volume(), outcome.active_set.log_volume()
    assert all(after[number] > before[number] + 1e-6 for number in NUMBERS), (before, after)
