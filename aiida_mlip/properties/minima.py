"""Spurious minima: relax many rattled and random structures with the potential, judge the minima with a reference.

A learned potential can have minima the true energy surface does not have ("potholes" of the fit,
e.g. S. Chmiela et al., Nat. Commun. 9, 3887 (2018) on spurious minima of ML force fields;
A. A. Peterson, R. Christensen and A. Khorshidi, Phys. Chem. Chem. Phys. 19, 10978 (2017) on
committee uncertainty there). A molecular dynamics or a structure search with the potential
can fall into one and report a structure that does not exist. This kernel looks for them:

1. Start structures from the given one: ``rattled`` copies with every atom displaced by a
   Gaussian of standard deviation ``rattle`` (Angstrom, per Cartesian component), and ``random``
   ones with the same atoms at uniformly random positions in the same cell, no two closer than
   0.7 times the given structure's shortest interatomic distance (periodic images included).
2. Relax the ions of each at fixed cell (BFGS, until every force is below ``fmax`` eV/Angstrom or
   after ``steps`` steps) with the committee **mean**, the potential as MD and relaxations use it;
   the committee spread is read at each minimum (``max_force_deviation``, eV/Angstrom, and
   ``energy_deviation``, eV, of the committee calculator).
3. With a reference (any ASE calculator, e.g. the labeller), a single point at each minimum: a
   converged minimum where the largest reference force exceeds ``force_threshold`` (eV/Angstrom)
   is **spurious**: the potential holds the atoms there and the reference pushes them away.

The spurious minima with their reference energy, forces and stress are labelled frames
(:meth:`MinimaResult.spurious_frames`), the configurations the training set lacked: the validation
work chain stores them as a ``DatasetData`` that the active-learning work chain takes as its
``dataset``. Without a reference only the minima and their committee spread are reported.

No AiiDA import. Units: eV, Angstrom, eV/Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_mlip.potentials.frames import Frames
from aiida_mlip.properties.checks import require_calculator, resolve_settings
from aiida_mlip.settings import Settings

__all__ = ("CONFIG_TYPE", "Minimum", "MinimaResult", "MinimaSettings", "spurious_minima", "start_structures")

#: ``config_type`` of the labelled frames of spurious minima.
CONFIG_TYPE = "spurious_minimum"
#: Random starts keep atoms at least this fraction of the given structure's shortest distance apart.
RANDOM_DISTANCE_FRACTION = 0.7


class MinimaSettings(Settings):
    """Settings of :func:`spurious_minima` (block ``minima``).

    Attributes
    ----------
    rattled, random
        Numbers of start structures of each kind (together at least 1).
    rattle
        Standard deviation of the rattled starts' displacements, Angstrom.
    fmax
        Force convergence of the relaxations with the potential, eV/Angstrom.
    steps
        Largest number of BFGS steps of one relaxation; a relaxation that needs more is reported as
        not converged and is not judged.
    force_threshold
        A converged minimum whose largest reference force (per-atom norm) exceeds this is spurious,
        eV/Angstrom.
    seed
        Of the random displacements and positions.
    """

    block = "minima"

    rattled: int = pydantic.Field(8, ge=0)
    random: int = pydantic.Field(4, ge=0)
    rattle: float = pydantic.Field(0.2, gt=0, allow_inf_nan=False)
    fmax: float = pydantic.Field(0.05, gt=0, allow_inf_nan=False)
    steps: int = pydantic.Field(200, ge=1)
    force_threshold: float = pydantic.Field(0.5, gt=0, allow_inf_nan=False)
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _some_structures(self):
        if self.rattled + self.random == 0:
            raise ValueError("`minima` needs at least one start structure: `rattled` and `random` are both 0")
        return self


@dataclass
class Minimum:
    """One relaxation with the potential and, with a reference, its judgement.

    Attributes
    ----------
    start
        ``"rattled"`` or ``"random"``.
    converged, steps
        Whether every force fell below ``fmax``, and the BFGS steps taken.
    energy_per_atom, max_force
        Of the potential (committee mean) at the minimum: eV/atom, eV/Angstrom.
    max_force_deviation, energy_deviation
        The committee spread there (eV/Angstrom, eV), ``None`` for a calculator without one.
    reference_energy_per_atom, reference_max_force
        The reference's, eV/atom and eV/Angstrom (``None`` without a reference).
    spurious
        Converged and ``reference_max_force > force_threshold`` (``None`` without a reference).
    """

    start: str
    converged: bool
    steps: int
    energy_per_atom: float
    max_force: float
    max_force_deviation: float | None
    energy_deviation: float | None
    reference_energy_per_atom: float | None = None
    reference_max_force: float | None = None
    spurious: bool | None = None
    atoms: Atoms | None = field(default=None, repr=False)
    labelled: Atoms | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """The JSON-able fields (not the structures)."""
        return {key: value for key, value in vars(self).items() if key not in ("atoms", "labelled")}


@dataclass
class MinimaResult:
    """The minima of the potential found from the start structures.

    Attributes
    ----------
    minima
        One :class:`Minimum` per start structure, rattled ones first.
    force_threshold
        eV/Angstrom.
    has_reference
        Whether the minima were judged.
    """

    minima: list[Minimum]
    force_threshold: float
    has_reference: bool

    @property
    def converged(self) -> list[Minimum]:
        return [minimum for minimum in self.minima if minimum.converged]

    @property
    def spurious(self) -> list[Minimum]:
        return [minimum for minimum in self.minima if minimum.spurious]

    def scalars(self) -> dict[str, float]:
        """``n_minima`` (converged), ``max_force_deviation`` (eV/Angstrom, largest over them) and, with a
        reference, ``n_spurious`` and ``max_reference_force`` (eV/Angstrom, largest over them)."""
        converged = self.converged
        deviations = [m.max_force_deviation for m in converged if m.max_force_deviation is not None]
        values = {"n_minima": float(len(converged))}
        if deviations:
            values["max_force_deviation"] = float(max(deviations))
        if self.has_reference:
            values["n_spurious"] = float(len(self.spurious))
            if converged:
                values["max_reference_force"] = float(max(m.reference_max_force for m in converged))
        return values

    def details(self) -> dict[str, Any]:
        """JSON-able: how the minima were found and every minimum's record."""
        return {
            "relaxed_with": "committee mean",
            "force_threshold": self.force_threshold,
            "n_starts": len(self.minima),
            "n_unconverged": len(self.minima) - len(self.converged),
            "minima": [minimum.record() for minimum in self.minima],
        }

    def minima_frames(self) -> Frames | None:
        """The converged minima, unlabelled (config types ``minimum_rattled``, ``minimum_random``)."""
        converged = self.converged
        if not converged:
            return None
        return Frames.from_atoms(
            [m.atoms for m in converged],
            require_labels=False,
            config_type=[f"minimum_{m.start}" for m in converged],
        )

    def spurious_frames(self) -> Frames | None:
        """The spurious minima labelled with the reference's energy, forces and stress (``None`` if none)."""
        spurious = self.spurious
        if not spurious:
            return None
        return Frames.from_atoms([m.labelled for m in spurious], config_type=CONFIG_TYPE)


def _random_positions(
    atoms: Atoms, rng: np.random.Generator, min_distance: float, tries: int = 2000
) -> Atoms:
    """``atoms`` with every atom at a uniformly random point of the cell, no two closer than ``min_distance``."""
    from ase.geometry import get_distances

    placed: list[np.ndarray] = []
    cell = atoms.cell.array
    for index in range(len(atoms)):
        for _ in range(tries):
            point = rng.random(3) @ cell
            if not placed:
                break
            _, distances = get_distances([point], np.array(placed), cell=cell, pbc=atoms.pbc)
            if distances.min() >= min_distance:
                break
        else:
            raise RuntimeError(
                f"could not place atom {index} at least {min_distance:.2f} Angstrom from the others in "
                f"{tries} tries: the cell is too dense for random starts; use `random: 0`"
            )
        placed.append(point)
    start = atoms.copy()
    start.positions = np.array(placed)
    return start


def start_structures(atoms: Atoms, settings: MinimaSettings) -> list[tuple[str, Atoms]]:
    """``(kind, atoms)`` of the start structures: ``rattled`` then ``random`` ones (see the module)."""
    from aiida_mlip.potentials.neighbours import minimum_distance

    rng = np.random.default_rng(settings.seed)
    starts = []
    for _ in range(settings.rattled):
        start = atoms.copy()
        start.positions = start.positions + rng.normal(0.0, settings.rattle, start.positions.shape)
        starts.append(("rattled", start))
    if settings.random:
        shortest = minimum_distance(atoms)
        min_distance = RANDOM_DISTANCE_FRACTION * (shortest if np.isfinite(shortest) else 2.0)
        starts += [("random", _random_positions(atoms, rng, min_distance)) for _ in range(settings.random)]
    for _, start in starts:
        start.calc = None
        start.wrap()
    return starts


def _max_force(forces: np.ndarray) -> float:
    return float(np.linalg.norm(forces, axis=1).max())


def _relax(kind: str, start: Atoms, calculator: Calculator, settings: MinimaSettings) -> Minimum:
    from ase.optimize import BFGS

    relaxed = start.copy()
    relaxed.calc = calculator
    optimiser = BFGS(relaxed, logfile=None)
    converged = bool(optimiser.run(fmax=settings.fmax, steps=settings.steps))
    forces = relaxed.get_forces()
    results = calculator.results
    deviation = results.get("max_force_deviation")
    energy_deviation = results.get("energy_deviation")
    minimum = relaxed.copy()
    minimum.calc = None
    return Minimum(
        start=kind,
        converged=converged,
        steps=int(optimiser.nsteps),
        energy_per_atom=float(relaxed.get_potential_energy()) / len(relaxed),
        max_force=_max_force(forces),
        max_force_deviation=None if deviation is None else float(deviation),
        energy_deviation=None if energy_deviation is None else float(energy_deviation),
        atoms=minimum,
    )


def _judge(minimum: Minimum, reference: Calculator, threshold: float) -> None:
    labelled = minimum.atoms.copy()
    labelled.calc = reference
    energy = float(labelled.get_potential_energy())
    forces = np.array(labelled.get_forces())
    results = {"energy": energy, "forces": forces}
    if labelled.pbc.all() and "stress" in reference.implemented_properties:
        results["stress"] = np.array(labelled.get_stress())
    labelled.calc = SinglePointCalculator(labelled, **results)
    minimum.labelled = labelled
    minimum.reference_energy_per_atom = energy / len(labelled)
    minimum.reference_max_force = _max_force(forces)
    minimum.spurious = bool(minimum.converged and minimum.reference_max_force > threshold)


def spurious_minima(
    atoms: Atoms,
    calculator: Calculator | None = None,
    settings: MinimaSettings | dict | None = None,
    reference: Calculator | None = None,
) -> MinimaResult:
    """Relax start structures made from ``atoms`` with the potential; judge the minima with ``reference``.

    Parameters
    ----------
    atoms
        The structure the starts are made from (its atoms and cell); not modified.
    calculator
        The potential: the committee calculator (its mean relaxes, its spread is read at the minima),
        or any ASE calculator; default ``atoms.calc``.
    settings
        :class:`MinimaSettings` or a mapping of its keys.
    reference
        ASE calculator of the reference single points, or ``None`` (minima and spread only).

    Raises
    ------
    PropertyInputError
        Bad settings or no calculator, before any relaxation.
    """
    settings = resolve_settings(MinimaSettings, settings)
    calculator = require_calculator(atoms, calculator)
    minima = [_relax(kind, start, calculator, settings) for kind, start in start_structures(atoms, settings)]
    if reference is not None:
        for minimum in minima:
            _judge(minimum, reference, settings.force_threshold)
    return MinimaResult(minima, settings.force_threshold, reference is not None)
