"""Uncertainty-biased MD: a bias energy that pulls walkers towards configurations where the committee disagrees.

The bias lowers the energy where the committee's energy deviation ``sigma`` (eV, the standard
deviation over members of the total energy) is large, so a thermostatted walker drifts to what the
committee does not know sooner than plain MD at the same temperature (uncertainty-driven dynamics,
Kulichenko et al., Nat. Comput. Sci. 3, 230 (2023)).
Here the bias is linear in ``sigma`` for small deviations and saturates smoothly at ``-cap``:

.. math::

    E_b = -c \\left(1 - e^{-s \\sigma / c}\\right), \\qquad
    \\sigma = \\sqrt{\\tfrac{1}{K} \\sum_k (E_k - \\bar E)^2},

with strength ``s`` (dimensionless, eV of bias per eV of deviation) and cap ``c`` (eV), so no walker
can gain more than ``c`` by leaving known ground (as the bounded bias of Kulichenko et al. does).
Its forces are exact from the members' energies and forces, no extra pass through the model:

.. math::

    F_{b,i} = -\\frac{\\partial E_b}{\\partial R_i}
           = -\\frac{s\\, e^{-s\\sigma/c}}{K \\sigma} \\sum_k (E_k - \\bar E)(F_{k,i} - \\bar F_i).

:class:`UncertaintyBias` wraps the committee calculator (which must give the spread on every call)
and adds ``E_b`` and ``F_b`` to its energy and forces; the committee's results (spread included)
pass through, so the uncertainty watch sees the same numbers as for plain MD. The bias has no
stress term: biased walkers run NVT or NVE (checked by
:class:`~aiida_mlip.exploration.parameters.ExploreParameters`).

Units: eV, eV/Angstrom.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pydantic
from ase.calculators.calculator import Calculator, all_changes

from aiida_mlip.exploration.walker_block import WalkerBlock

__all__ = ("BiasSettings", "UncertaintyBias", "bias_energy_forces")


class BiasSettings(WalkerBlock):
    """The ``bias`` key of ``exploration.md`` (or of a schedule entry): which walkers are biased, how much.

    Attributes
    ----------
    strength : float
        ``s`` >= 0: eV of bias per eV of committee energy deviation (0: plain MD).
    cap : float
        ``c`` > 0, eV: the deepest the bias goes.
    walkers : list of int or None
        Indices of the biased walkers (of ``walkers``); ``None``: all of them.
    """

    block: ClassVar[str] = "exploration.md.bias"

    strength: float = 1.0
    cap: float = 0.5

    @pydantic.field_validator("strength")
    @classmethod
    def _strength(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError("the bias strength must be zero or positive")
        return value

    @pydantic.field_validator("cap")
    @classmethod
    def _cap(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("the bias cap must be positive (eV)")
        return value

    def applies_to(self, walker: int) -> bool:
        """Whether walker ``walker`` runs biased (never with strength 0)."""
        return self.strength > 0 and super().applies_to(walker)


def bias_energy_forces(
    energies: np.ndarray, forces: np.ndarray, strength: float, cap: float
) -> tuple[float, np.ndarray, float]:
    """The bias energy (eV), its forces (N, 3) eV/Angstrom and ``sigma`` (eV) from a committee's results.

    Parameters
    ----------
    energies
        (K,) every member's total energy, eV.
    forces
        (K, N, 3) every member's forces, eV/Angstrom.
    strength, cap
        See :class:`BiasSettings`.
    """
    energies = np.asarray(energies, dtype=float)
    forces = np.asarray(forces, dtype=float)
    sigma = float(energies.std())
    if sigma < 1e-12 or strength == 0:  # the members agree: no bias, and its gradient is undefined
        return 0.0, np.zeros(forces.shape[1:]), sigma
    damping = math.exp(-strength * sigma / cap)
    energy = -cap * (1.0 - damping)
    weights = energies - energies.mean()
    gradient = -np.einsum("k,kij->ij", weights, forces - forces.mean(0)) / (len(energies) * sigma)
    return energy, strength * damping * gradient, sigma


class UncertaintyBias(Calculator):
    """The committee calculator plus the uncertainty bias (module docstring): an ASE calculator for MD.

    ``energy`` and ``forces`` include the bias; ``bias_energy`` (eV) and ``unbiased_energy`` (eV)
    are added to the committee's results, which otherwise pass through unchanged (``stress``, the
    spread keys).

    Parameters
    ----------
    committee
        A :class:`~aiida_mlip.potentials.calculator.CommitteeCalculator` with ``spread_every=1``.
    settings
        The strength and cap.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, committee: Calculator, settings: BiasSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        self.committee = committee
        self.settings = settings

    def __getattr__(self, name):  # cutoff, elements, get_features... of the committee
        if name in ("committee", "settings"):
            raise AttributeError(name)
        return getattr(self.committee, name)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.committee.calculate(self.atoms, ["energy", "forces"], all_changes)
        results = dict(self.committee.results)
        if "committee_energy" not in results:
            raise RuntimeError(
                "the uncertainty bias needs the committee spread on every call (spread_every=1)"
            )
        energy, forces, _ = bias_energy_forces(
            results["committee_energy"],
            results["committee_forces"],
            self.settings.strength,
            self.settings.cap,
        )
        results.update(
            unbiased_energy=results["energy"],
            bias_energy=energy,
            energy=results["energy"] + energy,
            free_energy=results["energy"] + energy,
            forces=results["forces"] + forces,
        )
        self.results = results
