"""Shared EMT results of the property tests, computed once per session (ASE's EMT: exact references in seconds)."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from tests.calculations.conftest import tiny_model_file  # noqa: F401  (a committee of 3 trained in seconds)

#: ASE's EMT for Al and Cu: the cutoff (Angstrom) its neighbour sums stop at (``EMT().rc``).
EMT_CUTOFF = 5.38


def emt_fcc(symbol: str, cubic: bool = False, repeat: int = 1):
    """fcc ``symbol`` (a = 4.0 Angstrom, EMT relaxes it), primitive or conventional, repeated, with EMT attached."""
    atoms = bulk(symbol, "fcc", a=4.0, cubic=cubic).repeat(repeat)
    atoms.calc = EMT()
    return atoms


@pytest.fixture(scope="session")
def al_eos():
    from aiida_mlip.properties.eos import equation_of_state

    return equation_of_state(emt_fcc("Al"))


@pytest.fixture(scope="session")
def al_elastic():
    from aiida_mlip.properties.elastic import elastic_constants

    return elastic_constants(emt_fcc("Al"))


@pytest.fixture(scope="session")
def al_phonons(tmp_path_factory):
    from aiida_mlip.properties.phonons import phonons

    plot = tmp_path_factory.mktemp("phonons") / "al.png"
    return phonons(emt_fcc("Al", cubic=True), settings={"supercell": [3, 3, 3]}, cutoff=EMT_CUTOFF, plot=plot)
