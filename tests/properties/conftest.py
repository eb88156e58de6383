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


@pytest.fixture(scope="session")
def poor_model_file(tmp_path_factory):
    """A committee of 2 trained for one epoch on 8 EMT aluminium frames: its minima are not EMT's (spurious)."""
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import save_committee, train_committee
    from tests.calculations.conftest import TINY_TRAINING, emt_aluminium_images

    frames = Frames.from_atoms(emt_aluminium_images(8, seed=5))
    settings = dict(TINY_TRAINING, max_epochs=1, committee_size=2)
    result = train_committee(frames, settings, device="cpu", log=lambda *args, **kwargs: None)
    path = tmp_path_factory.mktemp("poor") / "poor.safetensors"
    save_committee(result.model, path)
    return path
