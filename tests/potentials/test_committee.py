"""The committee model: symmetries, forces and stress as derivatives, repulsion, model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy.spatial.transform import Rotation

from aiida_mlip.potentials.committee import CommitteePotential, load_committee, save_committee
from aiida_mlip.potentials.model_file import ModelFileError, read_model_metadata


def _model(dtype=torch.float32, **kwargs):
    model = CommitteePotential(["Al", "Cu"], cutoff=4.5, hidden=16, **kwargs).to(dtype)
    with torch.no_grad():
        model.reference_energies.copy_(torch.tensor([-3.0, -4.0]))
        model.energy_scale.fill_(0.3)
    return model


def _alloy(seed=0):
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    atoms.numbers[rng.choice(len(atoms), 10, replace=False)] = 29
    atoms.positions += rng.normal(0, 0.15, atoms.positions.shape)
    return atoms


def _evaluate(model, atoms, **kwargs):
    with torch.no_grad():
        output = model(model.batch(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc), **kwargs)
    return {key: value.double().numpy() for key, value in output.items()}


def test_energy_is_invariant_and_forces_rotate():
    model, atoms = _model(), _alloy()
    reference = _evaluate(model, atoms, committee=True)
    energy, forces = reference["energy"][:, 0], reference["forces"]
    tolerance = 1e-5 * np.abs(energy).max()

    rotation = Rotation.random(random_state=3).as_matrix()
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=True)
    result = _evaluate(model, rotated, committee=True)
    assert np.abs(result["energy"][:, 0] - energy).max() < tolerance
    assert np.abs(result["forces"] - forces @ rotation.T).max() < 1e-4

    translated = atoms.copy()
    translated.positions += [1.3, -0.7, 2.9]
    assert np.abs(_evaluate(model, translated)["energy"][:, 0] - energy).max() < tolerance

    order = np.arange(len(atoms))
    aluminium = np.flatnonzero(atoms.numbers == 13)
    order[aluminium] = np.random.default_rng(4).permutation(aluminium)
    permuted = atoms[order]
    result = _evaluate(model, permuted)
    assert np.abs(result["energy"][:, 0] - energy).max() < tolerance
    assert np.abs(result["forces"] - forces[:, order]).max() < 1e-4

    supercell = atoms.repeat((2, 1, 1))
    result = _evaluate(model, supercell)
    assert np.abs(result["energy"][:, 0] - 2 * energy).max() < 2 * tolerance
    assert np.abs(result["forces"][:, : len(atoms)] - forces).max() < 1e-4


def test_forces_and_stress_are_derivatives_of_the_energy():
    model, atoms = _model(torch.float64, repulsion_radius=2.5), _alloy(1)
    atoms.positions[1] = atoms.positions[0] + [1.4, 0.5, 0.2]  # inside the repulsion
    reference = _evaluate(model, atoms, committee=True, strain_derivative=True)

    def energy(positions, cell):
        probe = atoms.copy()
        probe.set_cell(cell)
        probe.positions = positions
        return _evaluate(model, probe, forces=False)["energy"][:, 0]

    step = 1e-5
    for atom in (0, 1, 17):
        for axis in range(3):
            shifted = [atoms.positions.copy(), atoms.positions.copy()]
            shifted[0][atom, axis] += step
            shifted[1][atom, axis] -= step
            difference = (energy(shifted[0], atoms.cell) - energy(shifted[1], atoms.cell)) / (2 * step)
            np.testing.assert_allclose(reference["forces"][:, atom, axis], -difference, atol=1e-6, rtol=1e-6)
    for a in range(3):
        for b in range(3):
            strained = []
            for sign in (1, -1):
                deformation = np.eye(3)
                deformation[a, b] += sign * step
                strained.append(energy(atoms.positions @ deformation.T, atoms.cell.array @ deformation.T))
            difference = (strained[0] - strained[1]) / (2 * step)
            symmetric = reference["strain_derivative"][:, 0]
            np.testing.assert_allclose(
                0.5 * (symmetric[:, a, b] + symmetric[:, b, a]), difference, atol=1e-6, rtol=1e-6
            )


def test_mean_path_equals_the_mean_of_the_members():
    model, atoms = _model(torch.float64), _alloy(2)
    members = _evaluate(model, atoms, committee=True, strain_derivative=True)
    mean = _evaluate(model, atoms, committee=False, strain_derivative=True)
    for key in ("energy", "forces", "strain_derivative", "atomic_energies"):
        np.testing.assert_allclose(mean[key], members[key].mean(0), atol=1e-10)


def test_repulsion_acts_only_at_short_range():
    plain, repulsive = _model(torch.float64), _model(torch.float64, repulsion_radius=2.0)
    repulsive.load_state_dict(plain.state_dict())
    from ase import Atoms

    for distance, expect_repulsion in ((0.5, True), (2.5, False)):
        dimer = Atoms("Al2", positions=[[0, 0, 0], [distance, 0, 0]])
        difference = _evaluate(repulsive, dimer)["energy"] - _evaluate(plain, dimer)["energy"]
        force = _evaluate(repulsive, dimer)["forces"][:, 1, 0]
        if expect_repulsion:
            assert (difference > 100).all() and (force > 100).all()  # eV, eV/Angstrom: pushes apart
        else:
            assert np.abs(difference).max() == 0


def test_model_file_round_trip(tmp_path):
    model, atoms = _model(), _alloy(3)
    path = tmp_path / "model.safetensors"
    save_committee(model, path, {"training_set_uuid": "abc"})
    metadata = read_model_metadata(path)
    assert metadata["elements"] == ["Al", "Cu"] and metadata["committee_size"] == 4
    assert metadata["cutoff"] == 4.5 and metadata["training_set_uuid"] == "abc"
    assert metadata["reference_energies"] == {"Al": -3.0, "Cu": -4.0}
    loaded = load_committee(path)
    np.testing.assert_array_equal(_evaluate(loaded, atoms)["energy"], _evaluate(model, atoms)["energy"])
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="does not match the digest"):
        load_committee(path)


def test_unknown_element_and_bad_settings_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="Fe"):
        model.species_of([13, 26])
    with pytest.raises(ValueError, match="committee_size"):
        CommitteePotential(["Al"], committee_size=0)
