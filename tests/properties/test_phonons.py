"""Phonons on EMT: equal to a direct phonopy calculation, acoustic modes at Gamma, DOS, plot, imaginary modes."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.phonons import phonons
from tests.properties.conftest import EMT_CUTOFF, emt_fcc

#: fcc points in the basis of the reciprocal of phonopy's "F" primitive cell, written out here
FCC_POINTS = {
    "G": (0, 0, 0),
    "X": (0.5, 0, 0.5),
    "L": (0.5, 0.5, 0.5),
    "W": (0.5, 0.25, 0.75),
    "K": (0.375, 0.375, 0.75),
}


def direct_phonopy(atoms, supercell=3, distance=0.01):
    """Frequencies (THz) at ``FCC_POINTS`` from phonopy's API and EMT forces, nothing of ours."""
    unitcell = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        scaled_positions=atoms.get_scaled_positions(),
    )
    phonon = Phonopy(unitcell, supercell_matrix=np.eye(3, dtype=int) * supercell, primitive_matrix="F")
    phonon.generate_displacements(distance=distance)
    forces = []
    for cell in phonon.supercells_with_displacements:
        image = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        image.calc = EMT()
        forces.append(image.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    frequencies = phonon.run_qpoints(list(FCC_POINTS.values())).frequencies
    return {label: np.sort(f) for label, f in zip(FCC_POINTS, frequencies, strict=True)}


def test_al_equals_direct_phonopy(al_phonons):
    reference = direct_phonopy(al_phonons.atoms)
    for label, q in FCC_POINTS.items():
        np.testing.assert_allclose(al_phonons.special_points[label], q, atol=1e-12)
    for label in ("X", "L", "W", "K"):
        np.testing.assert_allclose(al_phonons.frequencies[label], reference[label], rtol=1e-6)
    # EMT aluminium: X 5.63 (TA, twice) and 8.60 THz (LA); L 3.50 (twice) and 8.56 THz
    np.testing.assert_allclose(al_phonons.frequencies["X"], [5.63, 5.63, 8.60], atol=0.02)
    np.testing.assert_allclose(al_phonons.frequencies["L"], [3.50, 3.50, 8.56], atol=0.02)
    assert np.abs(al_phonons.frequencies["G"]).max() < 1e-3
    assert not al_phonons.has_imaginary_modes


def test_band_structure_dos_and_plot(al_phonons):
    assert al_phonons.band_path == "GXWKGLUWLK,UX"
    assert len(al_phonons.band_distances) == 10  # 9 segments, then U-X after the break
    assert all(f.shape == (51, 3) for f in al_phonons.band_frequencies)
    # the band ends at the high-symmetry frequencies: first segment G -> X
    np.testing.assert_allclose(al_phonons.band_frequencies[0][-1], al_phonons.frequencies["X"], atol=1e-9)
    # the DOS holds 3 modes per primitive cell and ends at the highest frequency
    assert np.trapezoid(al_phonons.dos, al_phonons.dos_frequencies) == pytest.approx(3.0, rel=0.01)
    with open(al_phonons.plot, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert al_phonons.scalars()["X_3"] == pytest.approx(al_phonons.frequencies["X"][2])


def test_imaginary_modes_are_reported_not_hidden():
    stretched = emt_fcc("Al", cubic=True)
    stretched.set_cell(stretched.cell.array * 1.15, scale_atoms=True)  # a = 4.6 Angstrom, unstable at L
    result = phonons(
        stretched, settings={"relax": "none", "supercell": [3, 3, 3], "mesh": [8, 8, 8]}, cutoff=EMT_CUTOFF
    )
    assert result.frequencies["L"][0] < -1.0
    assert result.has_imaginary_modes
    assert ("L", (0.5, 0.5, 0.5), 0, pytest.approx(result.frequencies["L"][0])) in result.imaginary_modes
    assert {where for where, *_ in result.imaginary_modes} >= {"L", "band", "mesh"}
    assert result.scalars()["min_frequency"] < -1.0


def test_bad_input_is_refused_before_any_force():
    with pytest.raises(
        PropertyInputError,
        match=r"phonon supercell is 8.00 Angstrom wide .* under twice the potential's cutoff of 5.38 Angstrom .*supercell \[3, 3, 3\]",
    ):
        phonons(emt_fcc("Al", cubic=True), settings={"supercell": [2, 2, 2]}, cutoff=EMT_CUTOFF)
    with pytest.raises(PropertyInputError, match="phonons need a crystal periodic in all three directions"):
        phonons(Atoms("Al2", positions=[[0, 0, 0], [2.5, 0, 0]]), calculator=EMT())
    with pytest.raises(PropertyInputError, match="singular"):
        phonons(emt_fcc("Al"), settings={"supercell": [[1, 0, 0], [1, 0, 0], [0, 0, 1]]})
