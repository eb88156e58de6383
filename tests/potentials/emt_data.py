"""Labelled aluminium configurations from ASE's EMT, the fast oracle of the potential tests and benchmarks.

Every configuration is a fcc cell (cubic, a = 4.05 Angstrom) from Langevin MD at a given
temperature, optionally strained or with a vacancy; labels (energy in eV, forces in eV/Angstrom,
stress in eV/Angstrom^3) are EMT's.
"""

from __future__ import annotations

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from aiida_mlip.potentials.frames import Frames


def aluminium(repeat: int = 2, vacancy: bool = False):
    """fcc Al, ``repeat^3`` cubic cells (4 repeat^3 atoms), optionally without atom 0."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((repeat,) * 3)
    if vacancy:
        del atoms[0]
    return atoms


def md_frames(
    temperature: float,
    n_frames: int,
    seed: int,
    repeat: int = 2,
    vacancy: bool = False,
    strain: float = 0.0,
    interval: int = 6,
    equilibrate: int = 20,
    timestep: float = 4.0,
) -> list:
    """``n_frames`` EMT-labelled snapshots of Langevin MD at ``temperature`` (K), every ``interval`` steps.

    With ``strain`` > 0 each snapshot is given a random symmetric strain of up to that size before
    labelling (positions scaled with the cell).
    """
    rng = np.random.default_rng(seed)
    atoms = aluminium(repeat, vacancy)
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(
        atoms, timestep * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False
    )
    dynamics.run(equilibrate)
    frames = []
    for _ in range(n_frames):
        dynamics.run(interval)
        snapshot = atoms.copy()
        if strain:
            deformation = rng.uniform(-strain, strain, (3, 3))
            deformation = np.eye(3) + 0.5 * (deformation + deformation.T)
            snapshot.set_cell(snapshot.cell.array @ deformation, scale_atoms=True)
        snapshot.calc = EMT()
        results = {
            "energy": snapshot.get_potential_energy(),
            "forces": snapshot.get_forces(),
            "stress": snapshot.get_stress(),
        }
        snapshot.calc = SinglePointCalculator(snapshot, **results)
        tag = f"md_{temperature:.0f}K" + ("_vacancy" if vacancy else "") + ("_strained" if strain else "")
        snapshot.info["config_type"] = tag
        frames.append(snapshot)
    return frames


def training_set(seed: int = 0, scale: int = 1) -> Frames:
    """200 x ``scale`` frames: MD at 300-1200 K, strained cells and vacancy cells (32/31 atoms)."""
    images = []
    for index, temperature in enumerate((300, 600, 900, 1200)):
        images += md_frames(temperature, 30 * scale, seed=seed * 100 + index)
    images += md_frames(600, 40 * scale, seed=seed * 100 + 10, strain=0.04)
    images += md_frames(800, 40 * scale, seed=seed * 100 + 11, vacancy=True)
    return Frames.from_atoms(images)


def test_set(seed: int = 1000) -> Frames:
    """A separate set like :func:`training_set` (other seeds), 60 frames."""
    images = []
    for index, temperature in enumerate((300, 600, 900, 1200)):
        images += md_frames(temperature, 10, seed=seed + index)
    images += md_frames(600, 10, seed=seed + 10, strain=0.04)
    images += md_frames(800, 10, seed=seed + 11, vacancy=True)
    return Frames.from_atoms(images)
