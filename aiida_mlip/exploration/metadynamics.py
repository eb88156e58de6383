"""Well-tempered metadynamics on a distance: walkers that cross barriers plain MD does not.

Gaussian hills are laid on a collective variable ``s`` (here the distance between two atoms,
minimum image, Angstrom) every ``pace`` steps; their sum ``V(s)`` is added to the potential energy,
so the walker is pushed out of the basins it has visited. In the well-tempered variant (Barducci,
Bussi & Parrinello, Phys. Rev. Lett. 100, 020603 (2008)) each new hill is lower the more bias there
already is where it is laid:

.. math::

    V(s) = \\sum_k h_k\\, e^{-(s - s_k)^2 / 2w^2}, \\qquad
    h_k = h_0\\, e^{-V(s_k) / k_B \\Delta T}, \\qquad \\Delta T = (\\gamma - 1) T,

with height ``h_0`` (eV), width ``w`` (Angstrom), bias factor ``gamma`` and the walker's
temperature ``T`` (K). The forces are ``-dV/ds ds/dR``; for a distance ``s = |R_a - R_b|``,
``ds/dR_a = (R_a - R_b) / s = -ds/dR_b``.

:class:`MetadynamicsBias` wraps any ASE calculator (the committee, or EMT in a benchmark) and adds
``V`` and its forces; the wrapped calculator's results pass through, with ``unbiased_energy`` kept
for the uncertainty watch. No stress term: metadynamics walkers run NVT or NVE.

Units: eV, Angstrom, K.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pydantic
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.geometry import find_mic

from aiida_mlip.exploration.walker_block import WalkerBlock
from aiida_mlip.settings import Settings, SettingsError

__all__ = ("CollectiveVariable", "MetadynamicsBias", "MetadynamicsSettings", "distance_cv")


class CollectiveVariable(Settings):
    """``cv``: the distance between two atoms (indices into the walker's structure), Angstrom."""

    block: ClassVar[str] = "exploration.md.metadynamics.cv"

    kind: str = "distance"
    atoms: tuple[pydantic.NonNegativeInt, pydantic.NonNegativeInt]

    @pydantic.field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value != "distance":
            raise ValueError(f"unknown collective variable {value!r}; the built-in one is 'distance'")
        return value

    @pydantic.field_validator("atoms")
    @classmethod
    def _distinct(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] == value[1]:
            raise ValueError("a distance needs two different atoms")
        return value


class MetadynamicsSettings(WalkerBlock):
    """The ``metadynamics`` key of ``exploration.md`` (see the module docstring for the symbols).

    Attributes
    ----------
    cv : CollectiveVariable
    height : float
        ``h_0``, eV.
    width : float
        ``w``, Angstrom.
    pace : int
        MD steps between two hills.
    bias_factor : float
        ``gamma`` > 1.
    walkers : list of int or None
        Indices of the walkers that run it; ``None``: all.
    """

    block: ClassVar[str] = "exploration.md.metadynamics"

    cv: CollectiveVariable
    height: pydantic.PositiveFloat = 0.05
    width: pydantic.PositiveFloat = 0.15
    pace: pydantic.PositiveInt = 25
    bias_factor: float = pydantic.Field(10.0, gt=1.0)

    def check_atoms(self, n_atoms: int, where: str = "the structure") -> None:
        """Raise :class:`SettingsError` when the collective variable names an atom ``n_atoms`` does not have."""
        beyond = [index for index in self.cv.atoms if index >= n_atoms]
        if beyond:
            raise SettingsError(
                f"`exploration.md.metadynamics.cv.atoms`: atom(s) {beyond} do not exist in {where} "
                f"({n_atoms} atoms, indices from 0)"
            )


def distance_cv(atoms: Atoms, pair: tuple[int, int]) -> tuple[float, np.ndarray]:
    """The distance ``s`` (Angstrom, minimum image) between two atoms and ``ds/dR`` (N, 3)."""
    a, b = pair
    vectors, distances = find_mic(atoms.positions[[a]] - atoms.positions[[b]], atoms.cell, atoms.pbc)
    vector, distance = vectors[0], distances[0]
    gradient = np.zeros((len(atoms), 3))
    gradient[a] = vector / distance
    gradient[b] = -vector / distance
    return float(distance), gradient


class MetadynamicsBias(Calculator):
    """A calculator plus the well-tempered metadynamics bias (module docstring).

    Call :meth:`deposit` every ``pace`` MD steps (``dynamics.attach(bias.deposit, interval=pace)``).
    ``results`` gain ``metadynamics_energy`` (eV), ``cv`` (Angstrom) and ``unbiased_energy`` (eV).

    Parameters
    ----------
    calculator
        Any ASE calculator giving energy and forces.
    settings
        The collective variable and the hills.
    temperature
        K, the walker's temperature (for ``Delta T = (gamma - 1) T``).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, calculator: Calculator, settings: MetadynamicsSettings, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.inner = calculator
        self.settings = settings
        self.delta_kt = units.kB * (settings.bias_factor - 1.0) * temperature  # eV
        self.centres: list[float] = []
        self.heights: list[float] = []

    def __getattr__(self, name):  # cutoff, elements, get_features... of the wrapped calculator
        if name in ("inner", "settings"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def bias(self, s: float) -> tuple[float, float]:
        """``V(s)`` (eV) and ``dV/ds`` (eV/Angstrom)."""
        if not self.centres:
            return 0.0, 0.0
        offsets = s - np.asarray(self.centres)
        gaussians = np.asarray(self.heights) * np.exp(-(offsets**2) / (2 * self.settings.width**2))
        return float(gaussians.sum()), float(-(gaussians * offsets).sum() / self.settings.width**2)

    def deposit(self, atoms: Atoms | None = None) -> None:
        """Lay a hill at the current value of the collective variable (height tempered by the bias there)."""
        atoms = self.atoms if atoms is None else atoms
        s, _ = distance_cv(atoms, self.settings.cv.atoms)
        height = self.settings.height * math.exp(-self.bias(s)[0] / self.delta_kt)
        self.centres.append(s)
        self.heights.append(height)
        self.reset()  # the energy surface changed

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.inner.calculate(self.atoms, ["energy", "forces"], all_changes)
        results = dict(self.inner.results)
        s, gradient = distance_cv(self.atoms, self.settings.cv.atoms)
        energy, slope = self.bias(s)
        results.setdefault("unbiased_energy", results["energy"])
        results.update(
            metadynamics_energy=energy,
            cv=s,
            energy=results["energy"] + energy,
            free_energy=results["energy"] + energy,
            forces=results["forces"] - slope * gradient,
        )
        self.results = results
