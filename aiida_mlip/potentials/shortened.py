"""A trained committee evaluated with a shorter cutoff, not retrained: how local is what it learned?

What "shortened by ``delta``" means for the built-in committee
(:class:`~aiida_mlip.potentials.committee.CommitteePotential`, trained cutoff ``r_c``):

- every radial function of the descriptor keeps its trained form ``R_n(r) = sqrt(2 / r_c)
  sin(n pi r / r_c) / r * f_c(r / r_c)`` (the readouts learned features of exactly these functions)
  and is multiplied by the same quintic C2 step ``f_c`` (:func:`~.descriptor.cutoff_envelope`) taken
  over the last ``delta`` before the shorter radius ``r_c' = r_c - delta``::

      s(r) = f_c((r - (r_c - 2 delta)) / delta):   1 for r <= r_c - 2 delta,   0 for r >= r_c - delta

  so pairs closer than ``r_c - 2 delta`` count as in training, pairs beyond ``r_c'`` not at all, and
  energies stay C2 (forces C1) in the positions;
- the neighbour lists are built with the reduced cutoff ``r_c'`` (pairs beyond it contribute nothing);
- the ZBL repulsion (it acts far inside any cutoff), the readouts, the feature standardisation and
  the per-element reference energies are the trained ones.

``delta = 0`` is the trained committee itself, to the last bit. The change of the predictions on the
training set as ``delta`` grows (:mod:`aiida_mlip.properties.cutoff`) measures how much of what the
committee learned comes from its outermost neighbours: a committee whose energies and forces barely
move when ``delta = 1`` Angstrom describes physics that a shorter (cheaper) cutoff would also hold.

MACE committees are refused (:data:`MACE_REFUSAL`): their radial embedding and message passing live
inside mace-torch, whose layers take ``r_max`` at construction; a shortened MACE would need its
modules rebuilt, not a cheap re-evaluation.
"""

from __future__ import annotations

import copy

from aiida_mlip.potentials.committee import CommitteePotential

__all__ = ("MACE_REFUSAL", "shortened_committee")

#: Why a MACE committee has no cutoff check.
MACE_REFUSAL = (
    "the cutoff check needs the built-in committee: a MACE committee's radial embedding and "
    "interaction layers are built by mace-torch for its r_max, and shortening it would mean rebuilding "
    "them, not a cheap re-evaluation of the trained model"
)


def shortened_committee(model: CommitteePotential, shortening: float) -> CommitteePotential:
    """A copy of ``model`` evaluated with its cutoff shortened by ``shortening`` (Angstrom), as this module describes.

    Raises
    ------
    TypeError
        For a model other than the built-in committee (MACE: :data:`MACE_REFUSAL`).
    ValueError
        A negative shortening, or one that leaves no cutoff (``shortening >= model.cutoff``).
    """
    if not isinstance(model, CommitteePotential):
        raise TypeError(f"{MACE_REFUSAL} (got a {type(model).__name__})")
    shortening = float(shortening)
    if not 0 <= shortening < model.cutoff:
        raise ValueError(
            f"a cutoff shortening must be between 0 and the cutoff of {model.cutoff:g} Angstrom "
            f"(excluded), got {shortening:g}"
        )
    short = copy.deepcopy(model)
    short.descriptor.shortening = shortening
    return short
