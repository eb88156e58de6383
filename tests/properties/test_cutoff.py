"""Cutoff check: the tiny committee on its own training set, with its cutoff shortened (not retrained)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_mlip.potentials.calculator import CommitteeCalculator
from aiida_mlip.potentials.committee import load_committee
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.shortened import shortened_committee
from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.cutoff import CutoffSettings, cutoff_sensitivity
from aiida_mlip.settings import SettingsError
from tests.calculations.conftest import emt_aluminium_images


@pytest.fixture(scope="module")
def training_frames():
    """The frames ``tiny_model_file`` was trained on (cutoff 4 Angstrom, committee of 3)."""
    return Frames.from_atoms(emt_aluminium_images(24, seed=5))


def test_change_is_zero_unshortened_and_grows_with_the_shortening(tiny_model_file, training_frames):
    model = load_committee(tiny_model_file).double()
    found = cutoff_sensitivity(model, training_frames, {"shortenings": [1.0, 0, 0.5, 0.25]})
    assert found.shortenings == [0.0, 0.25, 0.5, 1.0] and found.cutoff == 4.0
    assert found.energy_change.shape == found.force_change.shape == (4, 3)
    assert (found.energy_change[0] == 0).all() and (found.force_change[0] == 0).all()  # the trained committee
    for change in (found.energy_change.mean(1), found.force_change.mean(1)):
        assert (np.diff(change) > 0).all(), change
    # 1 Angstrom off a 4 Angstrom cutoff damps the nearest neighbours (2.86 Angstrom): a large change
    assert found.force_change[3].mean() > 100 and found.energy_change[3].mean() > 10
    # the error against the labels at shortening 0 is the trained committee's
    assert found.energy_rmse[0] == pytest.approx(found.energy_rmse[1], abs=1e-9)
    assert found.force_rmse[0] == pytest.approx(found.force_rmse[1], abs=1e-9)
    estimates = found.estimates()
    assert list(estimates)[:2] == ["energy_change_0", "force_change_0"]
    assert estimates["force_change_1"].mean == pytest.approx(found.force_change[3].mean())
    assert found.details()["shortened_cutoffs"] == [4.0, 3.75, 3.5, 3.0]


def test_pairs_beyond_the_shorter_cutoff_contribute_nothing(tiny_model_file):
    model = load_committee(tiny_model_file).double()
    short = shortened_committee(model, 0.5)
    assert (short.cutoff, short.neighbour_cutoff, model.neighbour_cutoff) == (4.0, 3.5, 4.0)

    def energy(potential, distance):
        atoms = Atoms("Al2", positions=[[5, 5, 5], [5 + distance, 5, 5]], cell=[30, 30, 30], pbc=True)
        atoms.calc = CommitteeCalculator(potential, device="cpu", dtype="float64")
        return atoms.get_potential_energy(), atoms.get_forces()

    alone, _ = energy(model, 12.0)
    short_alone, _ = energy(short, 12.0)
    assert short_alone == pytest.approx(alone, abs=1e-12)
    trained, trained_forces = energy(model, 3.7)  # inside the trained cutoff: a bond
    shortened, shortened_forces = energy(short, 3.7)  # beyond the shorter one: two free atoms
    assert abs(trained - alone) > 1e-4 and np.abs(trained_forces).max() > 1e-4
    assert shortened == pytest.approx(alone, abs=1e-12) and np.abs(shortened_forces).max() < 1e-12
    # inside r_c - 2 delta the pair counts as in training
    assert energy(short, 2.9)[0] == pytest.approx(energy(model, 2.9)[0], abs=1e-12)


def test_shortened_forces_are_the_energy_gradient(tiny_model_file, training_frames):
    short = shortened_committee(load_committee(tiny_model_file).double(), 0.5)
    atoms = training_frames.to_atoms(3)
    atoms.calc = CommitteeCalculator(short, device="cpu", dtype="float64", skin=0.0)
    forces = atoms.get_forces()
    step = 1e-5
    for atom, axis in ((0, 0), (2, 1), (3, 2)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[atom, axis] += sign * step
            energies.append(moved.get_potential_energy())
        assert -(energies[0] - energies[1]) / (2 * step) == pytest.approx(forces[atom, axis], abs=1e-6)


def test_bad_input_is_refused(tiny_model_file, training_frames):
    model = load_committee(tiny_model_file)
    with pytest.raises(
        PropertyInputError, match="4 Angstrom is not shorter than the potential's cutoff of 4"
    ):
        cutoff_sensitivity(model, training_frames, {"shortenings": [0.5, 4]})
    with pytest.raises(SettingsError, match="a cutoff shortening is a length >= 0 Angstrom, got -0.5"):
        CutoffSettings.from_mapping({"shortenings": [-0.5]})
    with pytest.raises(SettingsError, match="give at least one cutoff shortening"):
        CutoffSettings.from_mapping({"shortenings": []})
    with pytest.raises(SettingsError, match=r"unknown key `cutoff.shortening`; did you mean `shortenings`\?"):
        CutoffSettings.from_mapping({"shortening": [0.5]})
    with pytest.raises(PropertyInputError, match="the cutoff check needs the built-in committee"):
        cutoff_sensitivity(object(), training_frames)
