"""Near-duplicate removal: no configuration is labelled twice.

Two frames are near-duplicates when their fingerprints (by default the per-element mean descriptor
row, which does not depend on the order of atoms, see
:meth:`~aiida_mlip.selection.pool.SelectionPool.frame_fingerprints`) are closer than ``tol`` times
the rms fingerprint norm of the pool. Frames already labelled (the training set) can be given as a
reference, so that a frame equal to one of them is not picked either.
"""

from __future__ import annotations

import numpy as np

__all__ = ("DuplicateFilter",)


class DuplicateFilter:
    """Accepts a frame unless it lies within ``tol`` (relative) of an accepted or reference frame.

    Parameters
    ----------
    fingerprints : (n_frames, d) array
        Of the pool.
    tol : float
        Relative distance: frames closer than ``tol * rms(|fingerprint|)`` are near-duplicates.
    reference : (n_ref, d) array, optional
        Fingerprints of frames that are already labelled.
    """

    def __init__(
        self, fingerprints: np.ndarray, tol: float = 1e-3, reference: np.ndarray | None = None
    ) -> None:
        if tol < 0:
            raise ValueError(f"duplicate tolerance must be non-negative, got {tol}")
        self.fingerprints = np.asarray(fingerprints, dtype=np.float64)
        scale = float(np.sqrt((self.fingerprints**2).sum(axis=1).mean())) if len(self.fingerprints) else 1.0
        self.distance = tol * (scale if scale > 0 else 1.0)
        d = self.fingerprints.shape[1]
        self._kept = (
            np.zeros((0, d)) if reference is None else np.asarray(reference, dtype=np.float64).reshape(-1, d)
        )
        self.rejected: list[int] = []

    def is_duplicate(self, frame: int) -> bool:
        """Whether ``frame`` is within the distance of an accepted or reference frame."""
        if len(self._kept) == 0:
            return False
        gaps = np.linalg.norm(self._kept - self.fingerprints[frame], axis=1)
        return bool(gaps.min() <= self.distance)

    def accept(self, frame: int) -> bool:
        """Accept ``frame`` (and remember it) unless it is a near-duplicate; refusals are recorded."""
        if self.is_duplicate(frame):
            self.rejected.append(int(frame))
            return False
        self._kept = np.vstack([self._kept, self.fingerprints[frame]])
        return True
