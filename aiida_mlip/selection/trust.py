"""The trust window: accurate, candidate or failed, from an uncertainty score.

Frames whose committee force deviation is below ``lo`` are trusted (the committee agrees, nothing
to learn), those at or above ``hi`` have left the region where the potential means anything (often
unphysical geometries, not worth a DFT calculation), and those between are the candidates for
labelling. This is the three-way split of DP-GEN (Zhang et al., Comput. Phys. Commun. 253, 107206
(2020)); the accurate fraction over an exploration round is its convergence test.

The same window can be applied to the extrapolation grade ``gamma`` of the D-optimality criterion
(Podryabinkin & Shapeev, Comput. Mater. Sci. 140, 171 (2017); Lysogorskiy et al., npj Comput.
Mater. 9, 225 (2023)), with thresholds around 1; a frame then takes the worse of its two classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = (
    "ACCURATE",
    "CANDIDATE",
    "CLASS_NAMES",
    "FAILED",
    "TrustWindow",
    "accurate_fraction",
    "classify",
    "count_classes",
)

ACCURATE, CANDIDATE, FAILED = 0, 1, 2
CLASS_NAMES = ("accurate", "candidate", "failed")


@dataclass(frozen=True)
class TrustWindow:
    """Thresholds ``lo < hi`` on one score.

    Attributes
    ----------
    lo : float
        Below it a frame is accurate (eV/Angstrom for a force deviation, dimensionless for gamma).
    hi : float
        At or above it a frame has failed.
    """

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            raise ValueError(f"trust window bounds must be finite, got lo={self.lo}, hi={self.hi}")
        if self.lo < 0:
            raise ValueError(f"trust window lo must be non-negative, got {self.lo}")
        if self.lo >= self.hi:
            raise ValueError(f"trust window needs lo < hi, got lo={self.lo}, hi={self.hi}")

    def classify(self, scores: np.ndarray) -> np.ndarray:
        """Return the class code (``ACCURATE``, ``CANDIDATE`` or ``FAILED``) of each score.

        A NaN score (the model produced no number) is ``FAILED``.
        """
        scores = np.asarray(scores, dtype=np.float64)
        classes = np.full(scores.shape, CANDIDATE, dtype=np.int8)
        classes[scores < self.lo] = ACCURATE
        classes[(scores >= self.hi) | np.isnan(scores)] = FAILED
        return classes


def classify(
    deviation: np.ndarray,
    window: TrustWindow,
    gamma: np.ndarray | None = None,
    gamma_window: TrustWindow | None = None,
) -> np.ndarray:
    """Classify frames by force deviation and, when given, extrapolation grade; the worse class wins.

    Parameters
    ----------
    deviation : (n_frames,) array
        Frame score ``max_i eps_i``, eV/Angstrom.
    window : TrustWindow
        Window on the deviation, eV/Angstrom.
    gamma : (n_frames,) array, optional
        Extrapolation grade of each frame (max over its atoms), dimensionless.
    gamma_window : TrustWindow, optional
        Window on ``gamma``; required when ``gamma`` is given.

    Returns
    -------
    (n_frames,) int8 array of class codes.
    """
    classes = window.classify(deviation)
    if gamma is not None:
        if gamma_window is None:
            raise ValueError("gamma given without a gamma trust window")
        classes = np.maximum(classes, gamma_window.classify(gamma))
    return classes


def count_classes(classes: np.ndarray) -> dict[str, int]:
    """Number of frames in each class, keyed by ``CLASS_NAMES``; what the convergence test reads."""
    classes = np.asarray(classes)
    return {name: int((classes == code).sum()) for code, name in enumerate(CLASS_NAMES)}


def accurate_fraction(counts: Mapping[str, int]) -> float:
    """Fraction of frames classified accurate (0 when there are none)."""
    total = sum(counts.values())
    return counts.get("accurate", 0) / total if total else 0.0
