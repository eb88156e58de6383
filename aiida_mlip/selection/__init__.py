"""Uncertainty and selection of configurations: pure numpy/torch, no AiiDA.

- :mod:`.deviation`: committee force / energy / virial deviation (DP-GEN's model deviation).
- :mod:`.trust`: the trust window, accurate / candidate / failed.
- :mod:`.maxvol`: MaxVol active sets, extrapolation grade.
- :mod:`.greedy_batch`: greedy D-optimal batches.
- :mod:`.leverage`: Mahalanobis distance and leverage against the training set.
- :mod:`.farthest_point`: farthest-point sampling.
- :mod:`.duplicates`: near-duplicate removal.
- :mod:`.pool`: the pool strategies pick from and the result they return.
- :mod:`.strategies`: one function per strategy, same signature, in :data:`STRATEGIES`.
- :mod:`.settings`: the ``selection`` settings block (:class:`SelectionSettings`).
- :mod:`.features`: per-atom features of configurations, stacked (:func:`stack_features`).
- :mod:`.batch`: one selection step from configurations (:func:`select_batch`).
"""

from .deviation import (
    energy_deviation,
    force_deviation,
    frame_force_deviation,
    relative_force_deviation,
    virial_deviation,
)
from .greedy_batch import greedy_batch
from .maxvol import ActiveSet, RankDeficientWarning, extrapolation_grade, maxvol
from .pool import SelectionPool, SelectionResult
from .strategies import STRATEGIES
from .trust import TrustWindow, classify, count_classes

__all__ = (
    "STRATEGIES",
    "ActiveSet",
    "RankDeficientWarning",
    "SelectionPool",
    "SelectionResult",
    "TrustWindow",
    "classify",
    "count_classes",
    "energy_deviation",
    "extrapolation_grade",
    "force_deviation",
    "frame_force_deviation",
    "greedy_batch",
    "maxvol",
    "relative_force_deviation",
    "virial_deviation",
)
