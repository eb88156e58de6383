"""The first structures of an active-learning run: each given structure plus rattled and strained copies.

Without an initial dataset, the loop labels these to train its first committee. The copies span
small to large distortions so that the first committee sees the curvature of the energy surface
near equilibrium and a little beyond; exploration then takes over.

No AiiDA import: the ``generate_initial_structures`` calcfunction (in
``workflows/active_learning_inputs.py``) and the AiiDA-free loop
(:func:`aiida_mlip.learning.loop.run_active_learning`) both call :func:`initial_structures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pydantic
from ase import Atoms

from aiida_mlip.settings import Settings

__all__ = ("InitialSettings", "initial_structures")


class InitialSettings(Settings):
    """The ``initial`` block: how many distorted copies of each structure to label first, and how far.

    Attributes
    ----------
    copies_per_structure : int
        Rattled and strained copies per given structure (>= 1).
    rattle : float
        Standard deviation of the Gaussian atomic displacements of the most distorted copy, Angstrom.
    strain : float
        Largest component of the random symmetric strain of the most distorted copy (dimensionless,
        below 0.5).
    seed : int
        Of the random numbers; the same seed gives the same structures.
    """

    block: ClassVar[str] = "initial"

    copies_per_structure: int = pydantic.Field(8, ge=1)
    rattle: float = pydantic.Field(0.05, ge=0.0)
    strain: float = pydantic.Field(0.03, ge=0.0, lt=0.5)
    seed: int = 0


def initial_structures(images: Sequence[Atoms], settings: InitialSettings | None = None) -> list[Atoms]:
    """Return each structure followed by ``settings.copies_per_structure`` rattled and strained copies.

    The copies' amplitudes go linearly from a third of ``rattle`` (Angstrom) and ``strain`` to their
    full values, so that the set holds both small and large distortions. Each strain is the
    symmetric part of a matrix of components drawn uniformly from ``[-strain, strain]``; the cell is
    deformed with the atoms. ``atoms.info["config_type"]`` is ``initial_<i>`` for the given structure
    ``i`` and ``initial_<i>_rattled`` for its copies. The inputs are not modified and the outputs
    carry no calculator.

    Parameters
    ----------
    images
        The structures (ASE ``Atoms``).
    settings
        The ``initial`` block; its defaults when omitted.

    Returns
    -------
    list of Atoms, ``len(images) * (1 + copies_per_structure)`` long.
    """
    settings = InitialSettings() if settings is None else settings
    rng = np.random.default_rng(settings.seed)
    copies = settings.copies_per_structure
    structures = []
    for index, original in enumerate(images):
        atoms = original.copy()
        atoms.calc = None
        atoms.info["config_type"] = f"initial_{index}"
        structures.append(atoms)
        for number in range(copies):
            # amplitudes grow from a third of the given ones to the full ones: near and far from equilibrium
            scale = (1 + 2 * number / max(copies - 1, 1)) / 3
            copy = atoms.copy()
            strain = rng.uniform(-settings.strain, settings.strain, (3, 3)) * scale
            copy.set_cell(copy.cell.array @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
            copy.positions += rng.normal(0.0, settings.rattle * scale, copy.positions.shape)
            copy.info["config_type"] = f"initial_{index}_rattled"
            structures.append(copy)
    return structures
