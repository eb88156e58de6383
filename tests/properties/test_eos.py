"""Equation of state on EMT: the fit equals ASE's own Birch-Murnaghan fit; EMT's lattice constants."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.eos import EquationOfState

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.eos import birch_murnaghan_fit, cubic_lattice_constant, equation_of_state
from tests.properties.conftest import emt_fcc


def ase_fit(result):
    eos = EquationOfState(result.volumes, result.energies, eos="birchmurnaghan")
    v0, e0, b0 = eos.fit()
    return v0, e0, b0 / units.GPa, eos.eos_parameters[2]


def test_fit_recovers_birch_murnaghan_parameters_exactly():
    v0, e0, b0, b0_prime = 16.5, -3.2, 0.5, 4.5  # Angstrom^3, eV, eV/Angstrom^3
    volumes = np.linspace(15, 18, 7)
    eta = (v0 / volumes) ** (2 / 3)
    energies = e0 + 9 * v0 * b0 / 16 * ((eta - 1) ** 3 * b0_prime + (eta - 1) ** 2 * (6 - 4 * eta))
    np.testing.assert_allclose(birch_murnaghan_fit(volumes, energies), (v0, e0, b0, b0_prime), rtol=1e-9)


def test_al_matches_ase_fit_and_lattice_constant(al_eos):
    v0, e0, b0, b0_prime = ase_fit(al_eos)
    assert al_eos.v0 == pytest.approx(v0, rel=1e-6)
    assert al_eos.e0 == pytest.approx(e0, rel=1e-6)
    assert al_eos.b0 == pytest.approx(b0, rel=1e-6)
    assert al_eos.b0_prime == pytest.approx(b0_prime, rel=1e-5)
    # one atom per primitive cell: a = (4 V0)^(1/3); EMT's aluminium is 3.994 Angstrom, B0 39.3 GPa
    assert al_eos.lattice_constant == pytest.approx((4 * al_eos.v0) ** (1 / 3), rel=1e-12)
    assert al_eos.lattice_constant == pytest.approx(3.994, abs=0.002)
    assert al_eos.b0 == pytest.approx(39.3, abs=0.5)
    assert al_eos.bracketed
    # the relaxed cell is at zero pressure, and the pressure falls with volume
    assert abs(al_eos.pressures[len(al_eos.pressures) // 2]) < 0.01
    assert np.all(np.diff(al_eos.pressures) < 0)
    assert set(al_eos.scalars()) == {"V0", "E0", "B0", "B0_prime", "a0"}


def test_cu_conventional_supercell_matches_ase_fit():
    atoms = emt_fcc("Cu", cubic=True, repeat=2)
    result = equation_of_state(atoms, settings={"points": 7, "volume_range": 0.04})
    v0, e0, b0, _ = ase_fit(result)
    assert result.v0 == pytest.approx(v0, rel=1e-6)
    assert result.b0 == pytest.approx(b0, rel=1e-6)
    assert result.lattice_constant == pytest.approx((result.v0 / 8) ** (1 / 3), rel=1e-9)  # 2x2x2 cubic cells
    assert result.lattice_constant == pytest.approx(3.590, abs=0.002)


def test_lattice_constant_only_for_cubic_crystals():
    cell = [[3.2, 0, 0], [-1.6, 1.6 * 3**0.5, 0], [0, 0, 5.2]]
    hcp = Atoms("Mg2", cell=cell, scaled_positions=[[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]], pbc=True)
    assert cubic_lattice_constant(hcp) is None


def test_bad_input_is_refused_before_any_energy():
    molecule = Atoms("Al2", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(PropertyInputError, match="periodic in all three directions"):
        equation_of_state(molecule, calculator=object())
    with pytest.raises(PropertyInputError, match=r"unknown key `eos.point`; did you mean `points`"):
        equation_of_state(emt_fcc("Al"), settings={"point": 7})
    with pytest.raises(PropertyInputError, match=r"`eos.points`: .*greater than or equal to 5"):
        equation_of_state(emt_fcc("Al"), settings={"points": 3})
