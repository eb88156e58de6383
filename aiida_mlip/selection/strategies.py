"""Selection strategies: one function each, all with the signature

    select_<name>(pool: SelectionPool, budget: int, rng=None, **options) -> SelectionResult

so that a benchmark or a work chain can swap them by name through :data:`STRATEGIES`. Every
strategy honours ``pool.exclude``, never returns a frame twice, returns at most ``budget`` frames,
and drops near-duplicates (``duplicate_tol``, relative, see :mod:`~aiida_mlip.selection.duplicates`;
``reference_fingerprints`` of labelled frames; ``duplicate_tol=None`` turns it off).

- ``random``: uniform without replacement; the baseline.
- ``max_deviation``: largest committee force deviation first (DP-GEN's ordering).
- ``farthest_point``: farthest-point sampling on frame fingerprints (Gonzalez 1985).
- ``leverage``: largest Mahalanobis distance or leverage of any atom against the training rows.
- ``d_optimal``: greedy MaxVol batch (Podryabinkin & Shapeev 2017, per element as Lysogorskiy
  et al. 2023).
- ``hybrid`` (the default of the active-learning loop): frames inside the committee trust window
  ``lo <= max_force_deviation < hi`` (Zhang et al. 2020), then the D-optimal batch among them; when
  no candidate extrapolates any more but budget is left, the rest is filled by deviation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .duplicates import DuplicateFilter
from .farthest_point import farthest_point_sampling
from .leverage import LeverageModel
from .maxvol import ActiveSet, greedy_batch
from .pool import SelectionPool, SelectionResult
from .trust import TrustWindow

__all__ = (
    "STRATEGIES",
    "select_d_optimal",
    "select_farthest_point",
    "select_hybrid",
    "select_leverage",
    "select_max_deviation",
    "select_random",
)


def _check_budget(budget: int) -> int:
    if int(budget) != budget or budget < 0:
        raise ValueError(f"budget must be a non-negative integer, got {budget}")
    return int(budget)


def _duplicate_filter(
    pool: SelectionPool, duplicate_tol: float | None, reference_fingerprints: np.ndarray | None
) -> DuplicateFilter | None:
    if duplicate_tol is None:
        return None
    fingerprints = pool.frame_fingerprints()
    if fingerprints is None:
        return None
    return DuplicateFilter(fingerprints, tol=duplicate_tol, reference=reference_fingerprints)


def _take_in_order(
    order: np.ndarray, scores: np.ndarray, budget: int, duplicates: DuplicateFilter | None
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    picked: list[int] = []
    for frame in order:
        if len(picked) >= budget:
            break
        if duplicates is not None and not duplicates.accept(int(frame)):
            continue
        picked.append(int(frame))
    skipped = [] if duplicates is None else list(duplicates.rejected)
    picked_array = np.asarray(picked, dtype=np.int64)
    return picked_array, scores[picked_array] if len(picked) else np.zeros(0), skipped


def _result(strategy: str, score: str, indices, scores, budget, skipped, **info) -> SelectionResult:
    stop = info.pop("stop_reason", "budget" if len(indices) == budget else "pool exhausted")
    return SelectionResult(
        indices=np.asarray(indices, dtype=np.int64),
        scores=np.asarray(scores, dtype=np.float64),
        info={
            "strategy": strategy,
            "score": score,
            "budget": int(budget),
            "selected": len(indices),
            "stop_reason": stop,
            "skipped_duplicates": [int(i) for i in skipped],
            **info,
        },
    )


def select_random(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """Uniformly random frames without replacement (the baseline). Scores are the draw order."""
    budget = _check_budget(budget)
    rng = np.random.default_rng(rng)
    order = rng.permutation(np.flatnonzero(~pool.exclude))
    duplicates = _duplicate_filter(pool, duplicate_tol, reference_fingerprints)
    indices, _, skipped = _take_in_order(order, np.arange(pool.n_frames, dtype=float), budget, duplicates)
    return _result("random", "draw", indices, np.arange(len(indices), dtype=float), budget, skipped)


def select_max_deviation(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    score: str = "max_force_deviation",
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """Frames of the largest per-frame ``score`` (committee force deviation, eV/Angstrom) first.

    NaN scores are never picked. ``rng`` is unused (the order is deterministic).
    """
    budget = _check_budget(budget)
    values = pool.require_score(score, "max_deviation")
    usable = np.flatnonzero(~pool.exclude & np.isfinite(values))
    order = usable[np.argsort(-values[usable], kind="stable")]
    duplicates = _duplicate_filter(pool, duplicate_tol, reference_fingerprints)
    indices, picked_scores, skipped = _take_in_order(order, values, budget, duplicates)
    return _result("max_deviation", score, indices, picked_scores, budget, skipped)


def select_farthest_point(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    reference_fingerprints: np.ndarray | None = None,
    duplicate_tol: float | None = 1e-3,
) -> SelectionResult:
    """Farthest-point sampling on the frame fingerprints, away from ``reference_fingerprints``.

    Without a reference the first pick is random (``rng``). Scores are the distances of each pick
    to the nearest earlier pick or reference frame, in fingerprint units.
    """
    budget = _check_budget(budget)
    fingerprints = pool.frame_fingerprints()
    if fingerprints is None:
        raise ValueError("the 'farthest_point' strategy needs per-atom features or fingerprints in the pool")
    rng = np.random.default_rng(rng)
    allowed = ~pool.exclude
    start = int(rng.choice(np.flatnonzero(allowed))) if allowed.any() else None
    duplicates = _duplicate_filter(pool, duplicate_tol, reference_fingerprints)
    indices, distances = farthest_point_sampling(
        fingerprints,
        budget,
        reference=reference_fingerprints,
        start=start,
        allowed=allowed,
        accept=None if duplicates is None else duplicates.accept,
    )
    skipped = [] if duplicates is None else duplicates.rejected
    return _result("farthest_point", "distance", indices, distances, budget, skipped)


def select_leverage(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    model: LeverageModel | None = None,
    kind: str = "mahalanobis",
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """Frames whose most unusual atom has the largest Mahalanobis distance (or leverage) first.

    Parameters
    ----------
    model : LeverageModel, optional
        Fitted on the training set's feature rows; by default fitted on the pool itself, which
        then ranks its outliers.
    kind : {"mahalanobis", "leverage"}
    """
    budget = _check_budget(budget)
    pool.require_features("leverage")
    if kind not in ("mahalanobis", "leverage"):
        raise ValueError(f"kind must be 'mahalanobis' or 'leverage', got {kind!r}")
    model = model or LeverageModel.fit(pool.features, pool.numbers)
    per_atom = (
        model.mahalanobis(pool.features, pool.numbers)
        if kind == "mahalanobis"
        else model.leverage(pool.features, pool.numbers)
    )
    values = np.full(pool.n_frames, -np.inf)
    np.maximum.at(values, pool.row_frame, per_atom)
    usable = np.flatnonzero(~pool.exclude & (values > -np.inf))
    order = usable[np.argsort(-values[usable], kind="stable")]
    duplicates = _duplicate_filter(pool, duplicate_tol, reference_fingerprints)
    indices, picked_scores, skipped = _take_in_order(order, values, budget, duplicates)
    return _result("leverage", kind, indices, picked_scores, budget, skipped)


def select_d_optimal(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    active_set: ActiveSet | None = None,
    tol: float = 1e-3,
    regularisation: float = 0.1,
    candidates: np.ndarray | None = None,
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """Greedy D-optimal batch: frames adding the most volume to the active set, see :func:`greedy_batch`.

    Parameters
    ----------
    active_set : ActiveSet, optional
        Of the training set. Without one, every element starts from virtual rows of length
        ``regularisation`` times its rms row norm, so the batch spreads over the pool itself.
    tol : float
        A frame of grade ``<= 1 + tol`` is not picked.
    candidates : array of int, optional
        Frames that may be picked (default: all not excluded).

    The result's ``info["active_set"]`` holds the updated :class:`ActiveSet` (not JSON; pop it
    before serialising); scores are each frame's grade when it was picked.
    """
    budget = _check_budget(budget)
    pool.require_features("d_optimal")
    allowed = ~pool.exclude
    if candidates is not None:
        mask = np.zeros(pool.n_frames, dtype=bool)
        mask[np.asarray(candidates, dtype=np.int64)] = True
        allowed &= mask
    duplicates = _duplicate_filter(pool, duplicate_tol, reference_fingerprints)
    return _d_optimal(pool, budget, active_set, tol, regularisation, np.flatnonzero(allowed), duplicates)


def _d_optimal(
    pool: SelectionPool,
    budget: int,
    active_set: ActiveSet | None,
    tol: float,
    regularisation: float,
    candidates: np.ndarray,
    duplicates: DuplicateFilter | None,
) -> SelectionResult:
    if active_set is None:
        scales = {}
        for number in np.unique(pool.numbers):
            rows = pool.features[pool.numbers == number]
            scales[int(number)] = regularisation * (float(np.sqrt((rows**2).sum(axis=1).mean())) or 1.0)
        active_set = ActiveSet.empty(sorted(scales), pool.features.shape[1], scales)
    batch = greedy_batch(
        active_set,
        pool.features,
        pool.numbers,
        pool.row_frame,
        budget,
        tol=tol,
        candidates=candidates,
        accept=None if duplicates is None else duplicates.accept,
        regularisation=regularisation,
    )
    return _result(
        "d_optimal",
        "gamma",
        batch.frames,
        batch.grades,
        budget,
        batch.skipped,
        stop_reason=batch.stop_reason,
        log_volume_gain=[float(g) for g in batch.log_volume_gain],
        notes=list(batch.active_set.notes),
        active_set=batch.active_set,
    )


def select_hybrid(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    lo: float = 0.05,
    hi: float = 0.5,
    score: str = "max_force_deviation",
    active_set: ActiveSet | None = None,
    tol: float = 1e-3,
    regularisation: float = 0.1,
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """The committee trust window as a filter, then the D-optimal batch among the candidates.

    Parameters
    ----------
    lo, hi : float
        Trust window on ``score`` in eV/Angstrom: candidates are ``lo <= score < hi``.
    active_set : ActiveSet, optional
        Of the training set (see :func:`select_d_optimal`).

    When the D-optimal batch stops because no candidate extrapolates any more, the remaining
    budget goes to the candidates of largest deviation (``info["filled_by_deviation"]``), since a
    committee that disagrees is worth a label even inside the linear span.
    """
    budget = _check_budget(budget)
    values = pool.require_score(score, "hybrid")
    pool.require_features("hybrid")
    window = TrustWindow(lo, hi)
    classes = window.classify(values)
    in_window = np.flatnonzero((classes == 1) & ~pool.exclude)
    duplicates = _duplicate_filter(pool, duplicate_tol, reference_fingerprints)
    d_opt = _d_optimal(pool, budget, active_set, tol, regularisation, in_window, duplicates)
    indices = list(d_opt.indices)
    filled = 0
    if len(indices) < budget:
        rest = np.setdiff1d(in_window, indices)
        rest = rest[np.argsort(-values[rest], kind="stable")]
        for frame in rest:
            if len(indices) >= budget:
                break
            if duplicates is not None and not duplicates.accept(int(frame)):
                continue
            indices.append(int(frame))
            filled += 1
    skipped = [] if duplicates is None else sorted(set(duplicates.rejected))
    indices_array = np.asarray(indices, dtype=np.int64)
    return _result(
        "hybrid",
        score,
        indices_array,
        values[indices_array] if len(indices) else np.zeros(0),
        budget,
        skipped,
        stop_reason="budget" if len(indices) == budget else "candidates exhausted",
        counts={
            "accurate": int((classes == 0).sum()),
            "candidate": int((classes == 1).sum()),
            "failed": int((classes == 2).sum()),
        },
        trust_window=[float(lo), float(hi)],
        d_optimal_selected=len(d_opt.indices),
        d_optimal_stop_reason=d_opt.info["stop_reason"],
        filled_by_deviation=filled,
        gamma=[float(g) for g in d_opt.scores],
        notes=d_opt.info.get("notes", []),
        active_set=d_opt.info.get("active_set"),
    )


STRATEGIES: dict[str, Callable[..., SelectionResult]] = {
    "random": select_random,
    "max_deviation": select_max_deviation,
    "farthest_point": select_farthest_point,
    "leverage": select_leverage,
    "d_optimal": select_d_optimal,
    "hybrid": select_hybrid,
}
