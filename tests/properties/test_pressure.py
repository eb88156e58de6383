"""Virial pressure of an NVT run on EMT equals the stress-based pressure."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.pressure import nvt_pressure
from tests.properties.conftest import emt_fcc


def test_virial_and_stress_pressures_agree():
    atoms = emt_fcc("Al", cubic=True, repeat=2)
    result = nvt_pressure(atoms, settings={"steps": 60, "equilibration": 20, "interval": 10})
    assert len(result.virial) == 6
    np.testing.assert_allclose(result.virial, result.stress, atol=1e-4)  # GPa
    assert np.all(result.kinetic > 0)
    # a = 4.0 Angstrom is EMT's 3.994 stretched by 0.15% (-0.17 GPa static), plus the thermal pressure
    assert abs(result.scalars()["P_stress"]) < 2.0
    assert 100 < result.scalars()["T"] < 400


def test_non_periodic_is_refused():
    with pytest.raises(PropertyInputError, match="pressures need a crystal periodic"):
        nvt_pressure(Atoms("Al2", positions=[[0, 0, 0], [2.5, 0, 0]]), calculator=object())
