"""Farthest-point sampling: a greedy spread of picks over a set of points.

Each pick is the point farthest (Euclidean) from everything picked so far (and from reference
points, e.g. the training set). This is the 2-approximation of the k-centre problem of Gonzalez,
"Clustering to minimize the maximum intercluster distance", Theor. Comput. Sci. 38, 293 (1985); its
use for training sets of interatomic potentials is discussed by Imbalzano et al., J. Chem. Phys.
148, 241730 (2018).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ("farthest_point_sampling",)


def farthest_point_sampling(
    points: np.ndarray,
    budget: int,
    reference: np.ndarray | None = None,
    start: int | None = None,
    allowed: np.ndarray | None = None,
    accept: Callable[[int], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to ``budget`` points, each the farthest from all earlier picks and the reference.

    Parameters
    ----------
    points : (n, d) array
    budget : int
    reference : (n_ref, d) array, optional
        Points already covered; the first pick is then the point farthest from them.
    start : int, optional
        First pick when there is no reference (default: the point farthest from the mean).
    allowed : (n,) bool, optional
        Points that may be picked.
    accept : callable, optional
        ``accept(index) -> bool``; a refused point is never picked.

    Returns
    -------
    indices : (k,) int
    distances : (k,) float
        Each pick's distance to the nearest earlier pick or reference point when it was picked
        (``inf`` for a first pick without reference), in the units of ``points``.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    allowed = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()
    nearest = np.full(n, np.inf)
    if reference is not None and len(reference):
        reference = np.asarray(reference, dtype=np.float64)
        for chunk in range(0, len(reference), 1024):
            block = reference[chunk : chunk + 1024]
            gaps = np.sqrt(((points[:, None, :] - block[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
            nearest = np.minimum(nearest, gaps)
    picks, distances = [], []
    first = True
    while len(picks) < budget and allowed.any():
        if first and not np.isfinite(nearest).any():
            if start is not None and allowed[start]:
                index = int(start)
            else:
                spread = np.linalg.norm(points - points.mean(axis=0), axis=1)
                index = int(np.argmax(np.where(allowed, spread, -np.inf)))
        else:
            index = int(np.argmax(np.where(allowed, nearest, -np.inf)))
        allowed[index] = False
        if accept is not None and not accept(index):
            continue
        first = False
        picks.append(index)
        distances.append(float(nearest[index]))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[index], axis=1))
    return np.asarray(picks, dtype=np.int64), np.asarray(distances)
