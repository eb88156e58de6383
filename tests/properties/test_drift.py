"""NVE drift on EMT: the energy error of velocity Verlet grows as dt^2, the drift is small."""

from __future__ import annotations

import pytest

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.drift import energy_drift
from tests.properties.conftest import emt_fcc


def test_fluctuation_scales_with_the_square_of_the_time_step():
    atoms = emt_fcc("Al", cubic=True, repeat=2)
    result = energy_drift(atoms, settings={"time_steps": [1.0, 2.0, 4.0], "duration": 100.0})
    ratios = result.fluctuation[1:] / result.fluctuation[:-1]
    assert ratios == pytest.approx([4.0, 4.0], rel=0.25)
    assert abs(result.drift[0]) < 1e-3  # eV/atom/ps at 1 fs
    assert all(abs(d) < 1e-2 for d in result.drift)
    assert [len(e) for e in result.energies] == [101, 51, 26]
    assert set(result.scalars()) == {f"{k}_{dt}fs" for k in ("drift", "fluctuation") for dt in (1, 2, 4)}


def test_bad_settings():
    with pytest.raises(PropertyInputError, match=r"unknown key `drift.timesteps`; did you mean `time_steps`"):
        energy_drift(emt_fcc("Al"), settings={"timesteps": [1.0]})
    with pytest.raises(PropertyInputError, match=r"`drift.time_steps.0`: Input should be greater than 0"):
        energy_drift(emt_fcc("Al"), settings={"time_steps": [-1.0]})
