"""Relaxations shared by the property kernels: ions at fixed cell, or ions and cell together.

Both work on a copy and return it; the calculator is attached to the copy. Forces in eV/Angstrom,
stress in eV/Angstrom^3 (ASE's sign and Voigt order).
"""

from __future__ import annotations

from typing import Literal

import pydantic
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from aiida_mlip.properties.checks import require_calculator
from aiida_mlip.settings import Settings

__all__ = ("RelaxSettings", "at_fixed_cell", "prepare", "relax_cell", "relax_ions")


class RelaxSettings(Settings):
    """How a kernel relaxes the structure before computing on it (the fields every kernel block shares).

    Attributes
    ----------
    relax
        ``"cell"``: ions and cell to zero stress (default); ``"ions"``: ions at fixed cell;
        ``"none"``: the structure as given.
    fmax
        Force convergence, eV/Angstrom.
    relax_steps
        Largest number of optimiser steps of one relaxation.
    """

    relax: Literal["cell", "ions", "none"] = "cell"
    fmax: float = pydantic.Field(1e-4, gt=0)
    relax_steps: int = pydantic.Field(300, ge=0)


def relax_ions(atoms: Atoms, calculator: Calculator, fmax: float, steps: int) -> Atoms:
    """A copy of ``atoms`` with the ions relaxed at fixed cell until every force is below ``fmax`` (eV/Angstrom).

    At most ``steps`` BFGS steps; a structure already below ``fmax`` takes none.
    """
    relaxed = atoms.copy()
    relaxed.calc = calculator
    BFGS(relaxed, logfile=None).run(fmax=fmax, steps=steps)
    return relaxed


def relax_cell(atoms: Atoms, calculator: Calculator, fmax: float, steps: int) -> Atoms:
    """A copy of ``atoms`` with ions and cell relaxed to zero stress (BFGS on ASE's ``FrechetCellFilter``).

    ``fmax`` (eV/Angstrom) bounds the forces and, through the filter, the stress times the volume.
    """
    relaxed = atoms.copy()
    relaxed.calc = calculator
    BFGS(FrechetCellFilter(relaxed), logfile=None).run(fmax=fmax, steps=steps)
    return relaxed


def prepare(atoms: Atoms, calculator: Calculator | None, settings: RelaxSettings) -> tuple[Atoms, Calculator]:
    """The structure a kernel computes on (relaxed as ``settings`` say) and its calculator.

    Parameters
    ----------
    atoms
        The input structure; not modified.
    calculator
        The ASE calculator; ``None`` takes ``atoms.calc``.
    settings
        ``relax``, ``fmax`` (eV/Angstrom), ``relax_steps``.

    Raises
    ------
    PropertyInputError
        No calculator given and none attached.
    """
    calculator = require_calculator(atoms, calculator)
    if settings.relax == "cell":
        return relax_cell(atoms, calculator, settings.fmax, settings.relax_steps), calculator
    if settings.relax == "ions":
        return relax_ions(atoms, calculator, settings.fmax, settings.relax_steps), calculator
    structure = atoms.copy()
    structure.calc = calculator
    return structure, calculator


def at_fixed_cell(atoms: Atoms, calculator: Calculator, settings: RelaxSettings) -> Atoms:
    """``atoms`` (a deformed cell) with ``calculator`` attached, its ions relaxed unless ``settings.relax`` is ``"none"``."""
    if settings.relax == "none":
        atoms.calc = calculator
        return atoms
    return relax_ions(atoms, calculator, settings.fmax, settings.relax_steps)
