"""Committee error bars: a property kernel run once per committee member, mean and spread of every scalar.

The spread of a property over the members of a committee trained on bootstrap resamples estimates
the model error of that property, as the force spread does for forces (A. A. Peterson, R.
Christensen and A. Khorshidi, Phys. Chem. Chem. Phys. 19, 10978 (2017); Imbalzano et al., J.
Chem. Phys. 154, 074102 (2021)). The spread is the standard deviation over members (``ddof=0``,
as the committee calculator's force and energy deviations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

__all__ = ("CommitteeProperty", "Estimate", "committee_property", "member_calculators")


@dataclass(frozen=True)
class Estimate:
    """A committee estimate of one scalar: ``mean +- spread`` over the members' ``values``, in the kernel's unit."""

    mean: float
    spread: float
    values: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.mean:.4g} +- {self.spread:.2g}"


@dataclass
class CommitteeProperty:
    """A property computed with every committee member.

    Attributes
    ----------
    members
        The kernel's result for each member, in member order.
    estimates
        ``{scalar name: Estimate}`` for every name of the members' ``scalars()`` (a name missing
        for some member, e.g. no cubic lattice constant, is kept over the members that have it).
    """

    members: list[Any]
    estimates: dict[str, Estimate]

    def __getitem__(self, name: str) -> Estimate:
        return self.estimates[name]

    def table(self) -> str:
        """The estimates as aligned text lines ``name  mean +- spread``."""
        width = max((len(name) for name in self.estimates), default=0)
        return "\n".join(f"{name:<{width}}  {estimate}" for name, estimate in self.estimates.items())


def member_calculators(committee: Calculator | Sequence[Calculator]) -> list[Calculator]:
    """One ASE calculator per member.

    Parameters
    ----------
    committee
        A calculator with ``member_calculators()`` (the committee calculator,
        :meth:`~aiida_mlip.potentials.calculator.CommitteeCalculator.member_calculators`), or an
        explicit sequence of calculators (any ASE calculators, e.g. several independently trained
        potentials).
    """
    if hasattr(committee, "member_calculators"):
        return list(committee.member_calculators())
    if isinstance(committee, Sequence) and not isinstance(committee, str | bytes):
        return list(committee)
    raise TypeError(
        f"expected a committee calculator or a sequence of calculators, got {type(committee).__name__}"
    )


def committee_property(
    kernel: Callable[..., Any],
    atoms: Atoms,
    committee: Calculator | Sequence[Calculator],
    **kwargs: Any,
) -> CommitteeProperty:
    """Run ``kernel(atoms, calculator=member, **kwargs)`` for every member; mean and spread of each scalar.

    Parameters
    ----------
    kernel
        A property kernel of this package (:func:`~.eos.equation_of_state`,
        :func:`~.elastic.elastic_constants`, :func:`~.phonons.phonons`, ...) or any function with
        that call signature whose result has ``scalars() -> {name: float}``.
    atoms
        The structure; not modified.
    committee
        See :func:`member_calculators`.
    **kwargs
        Passed to the kernel (``settings=...``, ``cutoff=...``); checked by the kernel before the
        first member runs, so bad input fails once, before any calculation.

    Returns
    -------
    CommitteeProperty
        Every member's result and ``{name: Estimate}`` in the kernel's units.
    """
    calculators = member_calculators(committee)
    if not calculators:
        raise ValueError("the committee has no members")
    members = [kernel(atoms, calculator=calculator, **kwargs) for calculator in calculators]
    collected: dict[str, list[float]] = {}
    for result in members:
        for name, value in result.scalars().items():
            collected.setdefault(name, []).append(float(value))
    estimates = {
        name: Estimate(float(np.mean(values)), float(np.std(values)), tuple(values))
        for name, values in collected.items()
    }
    return CommitteeProperty(members, estimates)
