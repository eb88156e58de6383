"""Small real inputs for the CalcJobs of the engine executables: EMT-labelled aluminium."""

import numpy as np
import pytest
from aiida import orm
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.data.dataset import DatasetData

#: A committee small enough to train in seconds on 2 cores (the tests check plumbing, not accuracy).
TINY_TRAINING = {
    "committee_size": 2,
    "n_radial": 4,
    "l_max": 2,
    "hidden": 8,
    "max_epochs": 4,
    "batch_size": 4,
    "cutoff": 4.0,
    "valid_fraction": 0.2,
    "seed": 1,
}


def emt_aluminium_images(count, seed=0, rattle=0.08, repeat=(1, 1, 1)):
    """Rattled and slightly strained fcc Al cells labelled with EMT (eV, eV/A, eV/A^3)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(repeat)
        atoms.set_cell(atoms.cell.array * (1 + rng.uniform(-0.02, 0.02)), scale_atoms=True)
        atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_forces()
        atoms.get_stress()
        images.append(atoms)
    return images


@pytest.fixture
def aluminium_dataset():
    return DatasetData.from_atoms(emt_aluminium_images(16)).store()


@pytest.fixture
def tiny_training():
    return orm.Dict(dict(TINY_TRAINING))


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """A committee trained in-process on EMT aluminium (a few seconds), as a model file."""
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import save_committee, train_committee

    frames = Frames.from_atoms(emt_aluminium_images(24, seed=5))
    result = train_committee(
        frames,
        dict(TINY_TRAINING, max_epochs=30, committee_size=3),
        device="cpu",
        log=lambda *args, **kwargs: None,
    )
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_committee(result.model, path)
    return path


@pytest.fixture
def tiny_potential(tiny_model_file):
    from aiida_mlip.data.potential import PotentialData

    return PotentialData(file=tiny_model_file).store()
