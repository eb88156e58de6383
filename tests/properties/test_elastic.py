"""Elastic constants on EMT: equal to a direct ASE stress-strain calculation, cubic symmetry, B against the EOS."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.emt import EMT

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.elastic import elastic_constants, sound_speeds, voigt_reuss_hill
from tests.properties.conftest import emt_fcc


def direct_stiffness(atoms, strains=(0.005, 0.01)):
    """C11, C12, C44 (GPa) of a cubic crystal from ASE stresses: central differences, Richardson-extrapolated."""

    def stress(deformation):
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        strained.calc = EMT()
        return strained.get_stress() / units.GPa

    columns = []
    for h in strains:
        xx = lambda e: np.diag([1 + e, 1, 1])  # noqa: E731
        yz = lambda e: np.array([[1, 0, 0], [0, 1, e / 2], [0, e / 2, 1]])  # noqa: E731
        d_xx = (stress(xx(h)) - stress(xx(-h))) / (2 * h)
        d_yz = (stress(yz(h)) - stress(yz(-h))) / (2 * h)
        columns.append(np.array([d_xx[0], d_xx[1], d_yz[3]]))
    return (4 * columns[0] - columns[1]) / 3


def test_al_equals_direct_calculation_and_is_cubic(al_elastic):
    c = al_elastic.c
    np.testing.assert_allclose([c[0, 0], c[0, 1], c[3, 3]], direct_stiffness(al_elastic.atoms), rtol=1e-6)
    assert c[0, 0] == pytest.approx(c[1, 1], rel=1e-6) and c[0, 0] == pytest.approx(c[2, 2], rel=1e-6)
    assert c[0, 1] == pytest.approx(c[0, 2], rel=1e-6) and c[0, 1] == pytest.approx(c[1, 2], rel=1e-6)
    assert c[3, 3] == pytest.approx(c[4, 4], rel=1e-6) and c[3, 3] == pytest.approx(c[5, 5], rel=1e-6)
    off = np.ones((6, 6), bool)
    off[:3, :3] = False
    off[np.diag_indices(6)] = False
    assert np.abs(c[off]).max() < 1e-6 * c[0, 0]
    # EMT aluminium: C11 53.3, C12 32.9, C44 36.2 GPa
    assert (c[0, 0], c[0, 1], c[3, 3]) == pytest.approx((53.33, 32.89, 36.20), abs=0.05)
    # per-strain central differences differ by the O(h^2) term only
    assert np.abs(al_elastic.c_by_strain[0.01] - al_elastic.c_by_strain[0.005]).max() < 0.1


def test_moduli_and_sound_speeds(al_elastic, al_eos):
    c = al_elastic.c
    # cubic: Voigt and Reuss bulk moduli are both (C11 + 2 C12) / 3, and equal B0 of the EOS within a few %
    assert al_elastic.bulk_voigt == pytest.approx((c[0, 0] + 2 * c[0, 1]) / 3, rel=1e-12)
    assert al_elastic.bulk_reuss == pytest.approx(al_elastic.bulk_voigt, rel=1e-9)
    assert al_elastic.bulk_hill == pytest.approx(al_eos.b0, rel=0.03)
    assert al_elastic.shear_reuss < al_elastic.shear_hill < al_elastic.shear_voigt
    assert al_elastic.shear_voigt == pytest.approx((c[0, 0] - c[0, 1] + 3 * c[3, 3]) / 5, rel=1e-12)
    # density of fcc Al at a = 3.994 Angstrom: 4 x 26.98 amu / a^3
    assert al_elastic.density == pytest.approx(26.9815385 * 1.66053906660e-27 / (al_eos.v0 * 1e-30), rel=1e-4)
    assert al_elastic.speed_transverse < al_elastic.speed_mean < al_elastic.speed_longitudinal
    assert al_elastic.speed_longitudinal == pytest.approx(
        np.sqrt((al_elastic.bulk_hill + 4 / 3 * al_elastic.shear_hill) * 1e9 / al_elastic.density), rel=1e-12
    )
    assert len(al_elastic.scalars()) == 21 + 9


def test_isotropic_moduli_formulas():
    bulk, shear = 100.0, 40.0
    lam = bulk - 2 * shear / 3
    c = np.zeros((6, 6))
    c[:3, :3] = lam
    c[np.diag_indices(3)] = lam + 2 * shear
    c[3:, 3:] = np.eye(3) * shear
    moduli = voigt_reuss_hill(c)
    assert [moduli[k] for k in ("K_V", "K_R", "G_V", "G_R")] == pytest.approx([bulk, bulk, shear, shear])
    longitudinal, transverse, mean = sound_speeds(bulk, shear, 1000.0)
    assert transverse == pytest.approx(np.sqrt(40e9 / 1000))


def test_relaxed_ions_in_a_rattled_supercell_recover_the_crystal():
    atoms = emt_fcc("Cu", cubic=True)
    atoms.rattle(0.02, seed=1)
    result = elastic_constants(atoms, settings={"strains": [0.01]})
    c = result.c
    assert c[0, 0] == pytest.approx(c[2, 2], rel=1e-3)
    assert c[3, 3] == pytest.approx(c[5, 5], rel=1e-3)
    assert (c[0, 0], c[0, 1], c[3, 3]) == pytest.approx((172.6, 115.4, 89.9), abs=0.3)


def test_bad_input_is_refused_before_any_stress():
    with pytest.raises(PropertyInputError, match=r"strain of 0.08 \(8%\) is above 5%"):
        elastic_constants(emt_fcc("Al"), settings={"strains": [0.01, 0.08]})
    with pytest.raises(PropertyInputError, match="strain magnitudes must be positive"):
        elastic_constants(emt_fcc("Al"), settings={"strains": [-0.01]})
    slab = emt_fcc("Al", cubic=True)
    slab.pbc = [True, True, False]
    with pytest.raises(
        PropertyInputError,
        match=r"elastic constants need a crystal periodic in all three directions.*pbc=\[True, True, False\]",
    ):
        elastic_constants(slab)
    with pytest.raises(PropertyInputError, match="periodic"):
        elastic_constants(Atoms("Al"), calculator=EMT())
