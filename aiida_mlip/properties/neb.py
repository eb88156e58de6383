"""Nudged elastic band with ASE: the barrier between two minima and, with a committee, its spread per image.

The end points are relaxed (ions, fixed cell), the path is interpolated linearly (minimum-image
convention for periodic cells) and relaxed with ASE's NEB (G. Henkelman, B. P. Uberuaga and H.
Jonsson, J. Chem. Phys. 113, 9901 (2000), climbing image by default) and the FIRE optimiser. With a
committee calculator each image's energy and forces are also taken from every member: the spread of
the members' energies relative to the initial state, and the committee's largest force deviation on
each image (:func:`~aiida_mlip.selection.deviation.force_deviation`, as the active-learning loop
watches it), show where along the path the potential is unsure (the images one would label first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pydantic
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.mep import NEB
from ase.optimize import FIRE

from aiida_mlip.properties.checks import check_endpoints, check_images, require_calculator, resolve_settings
from aiida_mlip.properties.relax import relax_ions
from aiida_mlip.selection.deviation import force_deviation
from aiida_mlip.settings import Settings

__all__ = ("NEBResult", "NEBSettings", "nudged_elastic_band")


class NEBSettings(Settings):
    """Settings of :func:`nudged_elastic_band` (block ``neb``).

    Attributes
    ----------
    images
        Number of images including both end points (at least 3).
    climb
        Climbing image (the highest image climbs to the saddle point).
    method
        ASE's tangent and force projection: ``"improvedtangent"`` (G. Henkelman and H. Jonsson,
        J. Chem. Phys. 113, 9978 (2000)), ``"aseneb"``, ``"eb"``, ``"spline"`` or ``"string"``.
    spring
        Spring constant, eV/Angstrom^2.
    fmax
        Convergence of the path, eV/Angstrom.
    steps
        Largest number of FIRE steps of the path.
    relax_endpoints
        Relax the ions of both end points first (to ``endpoint_fmax``, eV/Angstrom).
    endpoint_fmax
        eV/Angstrom.
    """

    block = "neb"

    images: int = 5
    climb: bool = True
    method: Literal["improvedtangent", "aseneb", "eb", "spline", "string"] = "improvedtangent"
    spring: float = pydantic.Field(0.1, gt=0)
    fmax: float = pydantic.Field(0.03, gt=0)
    steps: int = pydantic.Field(300, ge=1)
    relax_endpoints: bool = True
    endpoint_fmax: float = pydantic.Field(0.01, gt=0)

    @pydantic.field_validator("images")
    @classmethod
    def _at_least_three(cls, value: int) -> int:
        check_images(value)
        return value


@dataclass
class NEBResult:
    """A relaxed minimum-energy path.

    Attributes
    ----------
    images
        The relaxed path, end points included.
    energies
        (n,) eV, relative to the initial state.
    barrier, reverse_barrier
        eV: highest image minus the initial (final) state.
    converged
        Whether the path reached ``fmax`` within ``steps``.
    member_energies
        (K, n) eV relative to each member's initial-state energy, on the same path; ``None`` without
        a committee calculator.
    spread
        (n,) eV: standard deviation over members of ``member_energies``; ``None`` without a committee.
    barrier_spread, reverse_barrier_spread
        eV: standard deviation over members of each member's forward (reverse) barrier at the
        committee's highest image; ``None`` without a committee.
    force_deviation
        (n,) eV/Angstrom: the committee's largest per-atom force deviation on each image; ``None``
        without a committee of at least two members.
    """

    images: list[Atoms] = field(repr=False)
    energies: np.ndarray
    barrier: float
    reverse_barrier: float
    converged: bool
    member_energies: np.ndarray | None = field(default=None, repr=False)
    spread: np.ndarray | None = None
    barrier_spread: float | None = None
    reverse_barrier_spread: float | None = None
    force_deviation: np.ndarray | None = None

    def scalars(self) -> dict[str, float]:
        """``barrier``, ``reverse_barrier`` (eV) and ``E_{i}`` (eV, each image relative to the initial state)."""
        values = {"barrier": self.barrier, "reverse_barrier": self.reverse_barrier}
        values.update({f"E_{i}": float(energy) for i, energy in enumerate(self.energies)})
        return values


def nudged_elastic_band(
    initial: Atoms,
    final: Atoms,
    calculator: Calculator | None = None,
    settings: NEBSettings | dict | None = None,
) -> NEBResult:
    """The minimum-energy path from ``initial`` to ``final`` and its barrier.

    Parameters
    ----------
    initial, final
        End points: the same atoms, in the same order, in the same cell; not modified.
    calculator
        ASE calculator with energy and forces; default ``initial.calc``. A committee calculator
        (one with ``member_calculators()``) also gives the per-image committee spread.
    settings
        :class:`NEBSettings` or a mapping of its keys.

    Returns
    -------
    NEBResult
        Energies and barriers in eV.

    Raises
    ------
    PropertyInputError
        Fewer than 3 images, end points with different atoms, elements or cells, or bad settings.
    """
    settings = resolve_settings(NEBSettings, settings)
    check_endpoints(initial, final)
    calculator = require_calculator(initial, calculator)
    ends = []
    for end in (initial, final):
        if settings.relax_endpoints:
            end = relax_ions(end, calculator, settings.endpoint_fmax, settings.steps)
        ends.append(end.copy())
    images = [ends[0]] + [ends[0].copy() for _ in range(settings.images - 2)] + [ends[1]]
    for image in images:
        image.calc = calculator
    band = NEB(
        images, k=settings.spring, climb=settings.climb, method=settings.method, allow_shared_calculator=True
    )
    band.interpolate(mic=bool(initial.pbc.any()))
    converged = bool(FIRE(band, logfile=None).run(fmax=settings.fmax, steps=settings.steps))
    energies = np.array([image.get_potential_energy() for image in images])
    energies -= energies[0]
    member_energies = spread = deviation = None
    barrier_spread = reverse_barrier_spread = None
    if hasattr(calculator, "member_calculators"):
        members = calculator.member_calculators()
        member_energies = np.zeros((len(members), len(images)))
        member_forces = np.zeros((len(images), len(members), len(initial), 3))
        for k, member in enumerate(members):
            for i, image in enumerate(images):
                member_energies[k, i] = member.get_potential_energy(image)
                member_forces[i, k] = member.get_forces(image)  # from the same evaluation
        if len(members) >= 2:
            deviation = np.array([force_deviation(forces).max() for forces in member_forces])
        member_energies -= member_energies[:, :1]
        spread = member_energies.std(axis=0)
        top = int(np.argmax(energies))
        barrier_spread = float(spread[top])
        reverse_barrier_spread = float((member_energies[:, top] - member_energies[:, -1]).std())
    return NEBResult(
        images=images,
        energies=energies,
        barrier=float(energies.max()),
        reverse_barrier=float(energies.max() - energies[-1]),
        converged=converged,
        member_energies=member_energies,
        spread=spread,
        barrier_spread=barrier_spread,
        reverse_barrier_spread=reverse_barrier_spread,
        force_deviation=deviation,
    )
