"""A small real committee for aluminium, trained only on 300 K EMT data; shared by the exploration tests.

Training takes about a minute on 2 cores, so the model is trained once per test session and kept in
the session's base temporary directory (``committee_files``); both tests/exploration and
tests/engine use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin

from aiida_mlip.exploration.md import thermalize_momenta
from aiida_mlip.potentials.frames import Frames

TEMPERATURE = 300.0
TRAIN_CONFIG = {
    "committee_size": 4,
    "cutoff": 4.5,
    "n_radial": 5,
    "l_max": 2,
    "hidden": 24,
    "max_epochs": 50,
    "batch_size": 4,
    "lr": 1e-2,
    "bootstrap": False,
    "seed": 0,
}


def aluminium() -> object:
    """32 atoms of fcc Al, a = 4.05 Angstrom."""
    return bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)


def emt_frames(
    temperature: float = TEMPERATURE, walkers: int = 4, per_walker: int = 12, interval: int = 20
) -> Frames:
    """EMT-labelled snapshots of Langevin MD (2 fs) at ``temperature`` (K), from independent walkers."""
    images = []
    for walker in range(walkers):
        rng = np.random.default_rng(walker)
        atoms = aluminium()
        atoms.calc = EMT()
        thermalize_momenta(atoms, temperature, rng=rng)
        dynamics = Langevin(
            atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False
        )
        dynamics.run(50)
        for _ in range(per_walker):
            dynamics.run(interval)
            snapshot = atoms.copy()
            snapshot.calc = SinglePointCalculator(
                snapshot,
                energy=atoms.get_potential_energy(),
                forces=atoms.get_forces(),
                stress=atoms.get_stress(),
            )
            images.append(snapshot)
    return Frames.from_atoms(images, config_type=f"md_{temperature:.0f}K")


def committee_files(directory: Path) -> dict[str, Path]:
    """Train (once) and return ``{"model": model.safetensors, "training": training.h5}`` in ``directory``."""
    from aiida_mlip.potentials.committee import save_committee
    from aiida_mlip.potentials.train import train_committee

    directory.mkdir(parents=True, exist_ok=True)
    paths = {"model": directory / "model.safetensors", "training": directory / "training.h5"}
    if not paths["model"].is_file():
        frames = emt_frames()
        frames.write_hdf5(paths["training"])
        result = train_committee(frames, TRAIN_CONFIG, device="cpu", log=None)
        save_committee(result.model, paths["model"])
    return paths
