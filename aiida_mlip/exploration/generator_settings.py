"""The ``exploration.generate`` block: which structures to generate, with what, at which iterations.

One typed model, :class:`GenerateSettings`, read by the work chain's input validator (through
:class:`~aiida_mlip.learning.settings.ActiveLearningSettings`), by the calcfunction that generates
the structures, and by the AiiDA-free loop. Each kind is its own block with ``iterations`` (the
active-learning iterations, from 1, at which its structures join the exploration's start
structures) and ``parents`` (indices of the start structures it is applied to; all by default)::

    exploration:
      generate:
        seed: 0
        surfaces: {miller: [[1, 1, 1], [1, 0, 0]], thickness: 8.0, vacuum: 10.0, iterations: [2]}
        vacancies: {count: 1, structures: 2, iterations: [2]}
        interstitials: {element: Al, count: 1}
        substitutions: {composition: {Al: 0.75, Cu: 0.25}, structures: 2, method: sqs}
        strains: {max_strain: 0.04, shear: true, structures: 2}
        random: {structures: 4, steps: 100, fmax: 0.05, iterations: [2]}
        max_share: 0.5

``max_share`` caps the share of an iteration's walkers that start from generated structures
(:meth:`GenerateSettings.explored`): without it, a few start structures and many generated ones
gave the generated ones most walkers (8 of 10 in ``bench_data_efficiency.py --generate``), and
the bulk the user gave was explored less. When more structures were generated than the cap allows,
each iteration explores the next ones in turn, so every one is explored over the iterations.

Units: Angstrom, Angstrom^3/atom (volumes), eV/Angstrom (forces); strains and composition fractions
are dimensionless.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import pydantic
from ase.data import chemical_symbols

from aiida_mlip.settings import Settings, SettingsError

__all__ = (
    "KINDS",
    "GenerateSettings",
    "InterstitialSettings",
    "RandomSettings",
    "StrainSettings",
    "SubstitutionSettings",
    "SurfaceSettings",
    "VacancySettings",
)

#: The generator kinds, in the order they run.
KINDS = ("surfaces", "vacancies", "interstitials", "substitutions", "strains", "random")


def _element(value: Any) -> str:
    if value not in chemical_symbols[1:]:
        raise ValueError(f"{value!r} is not a chemical symbol")
    return value


def _composition(value: dict[str, float] | None) -> dict[str, float] | None:
    """Element -> fraction: chemical symbols, fractions within [0, 1] that add up to 1."""
    if value is None:
        return None
    for element, fraction in value.items():
        _element(element)
        if not (math.isfinite(fraction) and 0 <= fraction <= 1):
            raise ValueError(f"the fraction of {element} must be within [0, 1]")
    if not math.isclose(sum(value.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"the fractions must add up to 1, got {sum(value.values()):g}")
    return value


class _Kind(Settings):
    """What every kind has: when it runs and on which start structures."""

    iterations: list[pydantic.PositiveInt] = pydantic.Field(default_factory=lambda: [1])
    parents: list[pydantic.NonNegativeInt] | None = None

    def applies_to(self, parent: int) -> bool:
        """Whether this kind is applied to start structure ``parent`` (all of them without ``parents``)."""
        return self.parents is None or parent in self.parents

    @pydantic.field_validator("iterations")
    @classmethod
    def _some_iterations(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one iteration (from 1)")
        return sorted(set(value))


class _Copies(_Kind):
    structures: pydantic.PositiveInt = 1


class SurfaceSettings(_Kind):
    """``surfaces``: slabs by Miller index (of the conventional standard cell).

    Attributes
    ----------
    miller : list of [h, k, l]
        One slab per index; not all zero.
    thickness : float
        Least span of the atoms along the normal, Angstrom; at least the committee's cutoff.
    vacuum : float
        Empty space between the slab and its periodic image, Angstrom; at least the cutoff.
    min_width : float
        The slab is repeated in-plane until both widths reach it, Angstrom.
    """

    block: ClassVar[str] = "exploration.generate.surfaces"

    miller: list[tuple[int, int, int]] = pydantic.Field(default_factory=lambda: [(1, 1, 1)])
    thickness: pydantic.PositiveFloat = 8.0
    vacuum: pydantic.PositiveFloat = 10.0
    min_width: pydantic.PositiveFloat = 8.0

    @pydantic.field_validator("miller")
    @classmethod
    def _miller(cls, value: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        if not value:
            raise ValueError("give at least one Miller index")
        for index in value:
            if not any(index):
                raise ValueError(f"the Miller index {list(index)} is all zeros: it names no plane")
        return value


class VacancySettings(_Copies):
    """``vacancies``: ``count`` random sites removed from each of ``structures`` copies."""

    block: ClassVar[str] = "exploration.generate.vacancies"

    count: pydantic.PositiveInt = 1


class InterstitialSettings(_Copies):
    """``interstitials``: ``count`` atoms of ``element`` (default: the parent's most common) inserted
    at the most open of ``samples`` random points, each at least ``min_distance`` Angstrom from every atom."""

    block: ClassVar[str] = "exploration.generate.interstitials"

    element: str | None = None
    count: pydantic.PositiveInt = 1
    samples: pydantic.PositiveInt = 2000
    min_distance: pydantic.PositiveFloat = 1.5

    _symbol = pydantic.field_validator("element")(classmethod(lambda cls, v: v if v is None else _element(v)))


class SubstitutionSettings(_Copies):
    """``substitutions``: alloys on the parent's sites at ``composition`` (element -> fraction, sum 1).

    Attributes
    ----------
    method : {"random", "sqs"}
        ``random``: the species shuffled over the sites; ``sqs``: special quasi-random structures,
        whose pair correlations over the first ``shells`` neighbour shells are matched to the ideal
        random alloy's (:func:`~aiida_mlip.exploration.sqs.special_quasirandom`).
    shells : int
        Neighbour shells an ``sqs`` matches (>= 1).
    sqs_steps : int
        Attempted site swaps of each of the ``sqs`` search's 4 random starts (>= 0).
    """

    block: ClassVar[str] = "exploration.generate.substitutions"

    composition: dict[str, float]
    method: Literal["random", "sqs"] = "random"
    shells: pydantic.PositiveInt = 3
    sqs_steps: pydantic.NonNegativeInt = 3000

    _fractions = pydantic.field_validator("composition")(classmethod(lambda cls, v: _composition(v)))


class StrainSettings(_Copies):
    """``strains``: random symmetric strains, components within ``+-max_strain`` (shear ones too with ``shear``)."""

    block: ClassVar[str] = "exploration.generate.strains"

    max_strain: float = 0.05
    shear: bool = True

    @pydantic.field_validator("max_strain")
    @classmethod
    def _bounded(cls, value: float) -> float:
        if not (0 < value < 0.5):
            raise ValueError("max_strain must be within (0, 0.5)")
        return value


class RandomSettings(_Copies):
    """``random``: random structure search in the spirit of AIRSS (Pickard and Needs, J. Phys.:
    Condens. Matter 23, 053201 (2011)): ``structures`` random packings in random cells, each relaxed
    with the committee of the iteration at which it is made (see
    :func:`~aiida_mlip.exploration.random_search.random_structures`).

    Attributes
    ----------
    composition : dict, optional
        Element -> fraction (sum 1); default: the parent's composition.
    atoms : int, optional
        Atoms per packing (>= 1); default: the parent's number of atoms.
    volume_per_atom : float, optional
        Of the random cell, Angstrom^3/atom (> 0); default: the parent's.
    min_distance : float, optional
        Least distance between any two atoms of a packing, Angstrom (> 0); default per pair:
        ``radius_factor`` times the sum of the two covalent radii.
    radius_factor : float
        In (0, 2]: the default ``min_distance`` of a pair in units of its summed covalent radii.
    max_aspect : float
        In [1, 4]: the largest ratio of the random cell's widths (distances between opposite faces).
    steps : int
        Largest number of FIRE steps of the relaxation (>= 0; 0: no relaxation).
    fmax : float
        The relaxation stops when every atomic force is below it, eV/Angstrom (> 0).
    cell : bool
        Relax the cell too (zero pressure, ASE's ``FrechetCellFilter``).
    repulsion : float
        Stiffness k of the soft hard core added to the committee during the relaxation, eV/Angstrom^2
        (>= 0; 0: none): a pair closer than its least distance d (``min_distance``) adds
        k/2 (d - r)^2 eV (AIRSS's minimum separation), against committees that let atoms collapse.
    """

    block: ClassVar[str] = "exploration.generate.random"

    structures: pydantic.PositiveInt = 4
    composition: dict[str, float] | None = None
    atoms: pydantic.PositiveInt | None = None
    volume_per_atom: pydantic.PositiveFloat | None = None
    min_distance: pydantic.PositiveFloat | None = None
    radius_factor: float = pydantic.Field(0.9, gt=0.0, le=2.0)
    max_aspect: float = pydantic.Field(2.0, ge=1.0, le=4.0)
    steps: pydantic.NonNegativeInt = 100
    fmax: pydantic.PositiveFloat = 0.05
    cell: bool = False
    repulsion: pydantic.NonNegativeFloat = 1000.0

    _fractions = pydantic.field_validator("composition")(classmethod(lambda cls, v: _composition(v)))

    @pydantic.field_validator("volume_per_atom", "min_distance", "fmax", "repulsion")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be finite")
        return value


class GenerateSettings(Settings):
    """The ``exploration.generate`` block (see the module docstring); every kind is off unless given.

    Attributes
    ----------
    seed : int
        Of the generators' random numbers.
    max_share : float
        In (0, 1]: the largest share of an iteration's walkers that start from generated structures
        (1: no cap). At least one generated structure is explored whenever there is one.
    surfaces, vacancies, interstitials, substitutions, strains, random
        The kinds; ``None``: off.
    """

    block: ClassVar[str] = "exploration.generate"

    seed: int = 0
    max_share: float = pydantic.Field(0.5, gt=0.0, le=1.0)
    surfaces: SurfaceSettings | None = None
    vacancies: VacancySettings | None = None
    interstitials: InterstitialSettings | None = None
    substitutions: SubstitutionSettings | None = None
    strains: StrainSettings | None = None
    random: RandomSettings | None = None

    def kinds_at(self, iteration: int) -> list[tuple[str, _Kind]]:
        """The (name, block) of each kind due at ``iteration`` (from 1), in the order of :data:`KINDS`."""
        blocks = [(name, getattr(self, name)) for name in KINDS]
        return [
            (name, block) for name, block in blocks if block is not None and iteration in block.iterations
        ]

    def explored(self, n_generated: int, start_walkers: int, walkers_each: int, iteration: int) -> list[int]:
        """Indices of the generated structures explored at ``iteration`` (from 1), sorted.

        Parameters
        ----------
        n_generated : int
            Generated structures so far.
        start_walkers : int
            Walkers that start from the given structures in this iteration.
        walkers_each : int
            Walkers that start from each explored generated structure.
        iteration : int

        The largest ``k`` with ``k walkers_each <= max_share (start_walkers + k walkers_each)``
        (at least 1) are explored: a window of ``k`` that moves on by ``k`` each iteration.
        """
        if n_generated <= 0:
            return []
        if self.max_share >= 1.0:
            count = n_generated
        else:
            allowed = self.max_share * start_walkers / ((1.0 - self.max_share) * walkers_each)
            count = min(n_generated, max(1, math.floor(allowed + 1e-9)))
        first = ((iteration - 1) * count) % n_generated
        return sorted((first + offset) % n_generated for offset in range(count))

    @property
    def iterations(self) -> list[int]:
        """Every iteration at which some kind runs, sorted."""
        return sorted({i for name in KINDS if getattr(self, name) for i in getattr(self, name).iterations})

    @property
    def elements(self) -> set[str]:
        """The elements the generators may put in (substitutions, interstitials, random compositions)."""
        found = set()
        for block in (self.substitutions, self.random):
            if block is not None and block.composition is not None:
                found |= {e for e, fraction in block.composition.items() if fraction > 0}
        if self.interstitials is not None and self.interstitials.element is not None:
            found.add(self.interstitials.element)
        return found

    def check(self, cutoff: float | None = None, n_structures: int | None = None) -> None:
        """Check the block against the committee's cutoff (Angstrom) and the number of start structures.

        Raises
        ------
        SettingsError
            A slab thinner than the cutoff, a vacuum under it (the slab would see its periodic image),
            or a ``parents`` index beyond the start structures.
        """
        surfaces = self.surfaces
        if cutoff is not None and surfaces is not None:
            for name in ("thickness", "vacuum"):
                if getattr(surfaces, name) < cutoff:
                    raise SettingsError(
                        f"`exploration.generate.surfaces.{name}`: {getattr(surfaces, name)} A is under the "
                        f"committee's cutoff ({cutoff} A)"
                        + (
                            ": the slab's two surfaces would see each other"
                            if name == "thickness"
                            else ": the slab would see its periodic image"
                        )
                    )
        if n_structures is None:
            return
        for name in KINDS:
            block = getattr(self, name)
            beyond = [i for i in (block.parents or []) if i >= n_structures] if block else []
            if beyond:
                raise SettingsError(
                    f"`exploration.generate.{name}.parents`: {beyond} beyond the {n_structures} start structure(s)"
                )
