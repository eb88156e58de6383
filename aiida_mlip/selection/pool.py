"""The pool a selection strategy picks from, and what it returns.

A pool holds ``n_frames`` configurations through what the strategies need to know of them:
per-frame scores (committee force deviation, extrapolation grade, ...) and, for the strategies that
look at atomic environments, one descriptor row per atom with the frame and element it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse

__all__ = ("SelectionPool", "SelectionResult")


@dataclass
class SelectionResult:
    """The frames a strategy picked.

    Attributes
    ----------
    indices : (k,) int
        Picked frames of the pool, in the order they were picked; never repeated, ``k <= budget``.
    scores : (k,) float
        The score each was picked for (its meaning is in ``info["score"]``).
    info : dict
        Strategy, reason for stopping, skipped near-duplicates, notes; JSON-serialisable.
    """

    indices: np.ndarray
    scores: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SelectionPool:
    """Configurations to select from.

    Attributes
    ----------
    n_frames : int
    scores : dict[str, (n_frames,) array]
        Per-frame scores, e.g. ``"max_force_deviation"`` (eV/Angstrom) and ``"gamma"``.
    features : (n_rows, m) array, optional
        Per-atom descriptor rows (the committee's ``get_features``).
    numbers : (n_rows,) int, optional
        Atomic number of each row.
    row_frame : (n_rows,) int, optional
        Frame of each row.
    fingerprints : (n_frames, d) array, optional
        One vector per frame for distances (near-duplicates, farthest-point sampling); by default
        the per-element mean of the feature rows, see :meth:`frame_fingerprints`.
    exclude : (n_frames,) bool, optional
        Frames that must not be picked (already labelled, or failed).
    """

    n_frames: int
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    features: np.ndarray | None = None
    numbers: np.ndarray | None = None
    row_frame: np.ndarray | None = None
    fingerprints: np.ndarray | None = None
    exclude: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.n_frames = int(self.n_frames)
        self.scores = {name: np.asarray(value, dtype=np.float64) for name, value in self.scores.items()}
        for name, value in self.scores.items():
            if value.shape != (self.n_frames,):
                raise ValueError(f"score {name!r} has shape {value.shape}, expected ({self.n_frames},)")
        given = [self.features is not None, self.numbers is not None, self.row_frame is not None]
        if any(given) and not all(given):
            raise ValueError("features, numbers and row_frame go together")
        if self.features is not None:
            self.features = np.asarray(self.features, dtype=np.float64)
            self.numbers = np.asarray(self.numbers, dtype=np.int64)
            self.row_frame = np.asarray(self.row_frame, dtype=np.int64)
            n_rows = len(self.features)
            if (
                self.features.ndim != 2
                or self.numbers.shape != (n_rows,)
                or self.row_frame.shape != (n_rows,)
            ):
                raise ValueError(
                    f"features {self.features.shape}, numbers {self.numbers.shape} and row_frame "
                    f"{self.row_frame.shape} do not describe the same rows"
                )
            if n_rows and (self.row_frame.min() < 0 or self.row_frame.max() >= self.n_frames):
                raise ValueError(f"row_frame must lie in [0, {self.n_frames})")
            if not np.isfinite(self.features).all():
                raise ValueError("the pool's features hold NaN or infinite values")
        if self.fingerprints is not None:
            self.fingerprints = np.asarray(self.fingerprints, dtype=np.float64)
            if len(self.fingerprints) != self.n_frames:
                raise ValueError(f"{len(self.fingerprints)} fingerprints for {self.n_frames} frames")
        self.exclude = (
            np.zeros(self.n_frames, dtype=bool)
            if self.exclude is None
            else np.asarray(self.exclude, dtype=bool)
        )
        if self.exclude.shape != (self.n_frames,):
            raise ValueError(f"exclude has shape {self.exclude.shape}, expected ({self.n_frames},)")

    @property
    def has_features(self) -> bool:
        return self.features is not None

    def require_features(self, strategy: str) -> None:
        if not self.has_features:
            raise ValueError(f"the {strategy!r} strategy needs per-atom features in the pool")

    def require_score(self, name: str, strategy: str) -> np.ndarray:
        if name not in self.scores:
            raise ValueError(
                f"the {strategy!r} strategy needs the per-frame score {name!r}; the pool has {sorted(self.scores)}"
            )
        return self.scores[name]

    def frame_fingerprints(self) -> np.ndarray | None:
        """(n_frames, n_elements * m) per-element mean feature row of each frame, or the given fingerprints.

        Elements are in increasing atomic number; a frame without atoms of an element has zeros there.
        Invariant to the order of atoms, so two copies of one configuration coincide.
        """
        if self.fingerprints is not None:
            return self.fingerprints
        if not self.has_features:
            return None
        parts = []
        for number in np.unique(self.numbers):
            rows = np.flatnonzero(self.numbers == number)
            indicator = scipy.sparse.csr_matrix(
                (np.ones(len(rows)), (self.row_frame[rows], np.arange(len(rows)))),
                shape=(self.n_frames, len(rows)),
            )
            counts = np.asarray(indicator.sum(axis=1)).ravel()
            sums = indicator @ self.features[rows]
            parts.append(sums / np.maximum(counts, 1)[:, None])
        self.fingerprints = np.hstack(parts)
        return self.fingerprints
