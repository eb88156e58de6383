"""The trust window: accurate, candidate or failed, from an uncertainty score.

Frames whose committee force deviation is below ``lo`` are trusted (the committee agrees, nothing
to learn), those at or above ``hi`` are far outside what the committee knows, and those between are
the candidates for labelling. This is the three-way split of DP-GEN (Zhang et al., Comput. Phys.
Commun. 253, 107206 (2020)); the accurate fraction over an exploration round is its convergence test.
Frames above ``hi`` are not discarded by the selection: it takes the window first and tops up from
above ``hi`` (see :mod:`aiida_mlip.selection.strategies`).

The same window can be applied to the extrapolation grade ``gamma`` of the D-optimality criterion
(Podryabinkin & Shapeev, Comput. Mater. Sci. 140, 171 (2017); Lysogorskiy et al., npj Comput.
Mater. 9, 225 (2023)), with thresholds around 1; a frame then takes the worse of its two classes.

:class:`TrustWindow` is the one owner of the window and its defaults: the protocol's ``trust``
block, the exploration's classification, the selection and the demo all read it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pydantic

from aiida_mlip.settings import Settings

__all__ = (
    "ACCURATE",
    "CANDIDATE",
    "CLASS_NAMES",
    "DEFAULT_HI",
    "DEFAULT_LO",
    "FAILED",
    "TrustWindow",
    "accurate_fraction",
    "classify",
    "count_classes",
)

ACCURATE, CANDIDATE, FAILED = 0, 1, 2
CLASS_NAMES = ("accurate", "candidate", "failed")

#: Default window on the committee's max force deviation, eV/Angstrom (see :class:`TrustWindow`).
DEFAULT_LO = 0.15
DEFAULT_HI = 1.0


class TrustWindow(Settings):
    """Thresholds ``0 <= lo < hi`` on one score (the ``trust`` settings block).

    Attributes
    ----------
    lo : float
        Below it a frame is accurate (eV/Angstrom for a force deviation, dimensionless for gamma).
        Default 0.15 eV/Angstrom.
    hi : float
        At or above it a frame has failed (is outside the window). Default 1.0 eV/Angstrom; walkers
        break at twice it.
    target_force_error : float, optional
        eV/Angstrom, > 0: the force error a user wants the labelled frames to have. The rule that
        turns it into ``lo``/``hi`` from a calibration of the committee's deviation belongs to
        :mod:`aiida_mlip.learning.calibration`; this block only holds and checks it.

    The defaults come from the data-efficiency benchmark (README, "Performance"; EMT aluminium, the
    default strategy ``random`` without the window, 3 seeds): the windows 0.05-0.35, 0.05-0.5,
    0.1-0.5 and 0.15-1.0 eV/Angstrom ended level within the seed spread (61-67 meV/Angstrom test
    force RMSE after 44 labels), but only with ``lo`` 0.15 did the accurate fraction follow the
    learning (0.08 -> 0.30 while the error halved); with ``lo`` 0.05 it stayed at 0.03-0.09 at every
    error reached, so convergence could never be claimed. ``lo`` sets which frames count accurate
    and which are eligible, ``hi`` where walkers break (twice it).
    """

    block = "trust"

    lo: float = pydantic.Field(DEFAULT_LO, ge=0, allow_inf_nan=False)
    hi: float = pydantic.Field(DEFAULT_HI, allow_inf_nan=False)
    target_force_error: float | None = pydantic.Field(None, gt=0, allow_inf_nan=False)

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> TrustWindow:
        if not self.lo < self.hi:
            raise ValueError(f"the trust window needs lo < hi, got lo={self.lo}, hi={self.hi}")
        return self

    def classify(self, scores: np.ndarray) -> np.ndarray:
        """Return the class code (``ACCURATE``, ``CANDIDATE`` or ``FAILED``) of each score.

        A NaN score (the model produced no number) is ``FAILED``.
        """
        scores = np.asarray(scores, dtype=np.float64)
        classes = np.full(scores.shape, CANDIDATE, dtype=np.int8)
        classes[scores < self.lo] = ACCURATE
        classes[(scores >= self.hi) | np.isnan(scores)] = FAILED
        return classes

    def bounds(self) -> tuple[float, float]:
        """``(lo, hi)``."""
        return (self.lo, self.hi)


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
