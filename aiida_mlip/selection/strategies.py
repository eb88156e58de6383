"""Selection strategies: one function each, all with the signature

    select_<name>(pool: SelectionPool, budget: int, rng=None, *, window=None, top_up=True,
                  score="max_force_deviation", duplicate_tol=1e-3, reference_fingerprints=None,
                  **strategy options) -> SelectionResult

so that a benchmark or a work chain can swap them by name through :data:`STRATEGIES`. Every
strategy honours ``pool.exclude``, never returns a frame twice, returns at most ``budget`` frames,
and drops near-duplicates (``duplicate_tol``, relative, see :mod:`~aiida_mlip.selection.duplicates`;
``reference_fingerprints`` of labelled frames; ``duplicate_tol=None`` turns it off). The options a
strategy uses are in :data:`STRATEGY_OPTIONS`; any other keyword is a ``ValueError`` that names them.

**Window first, then top-up.** With a trust window (``window``, eV/Angstrom on ``score``), each
strategy applies its own rule to the frames inside the window (``lo <= score < hi``) first. When
those are used up and budget is left, it tops up from the frames above ``hi`` with a finite score,
lowest score first (the frames nearest to what the committee knows, the least likely to be
unphysical), after the pool's own exclusions (``aiida-mlip-select`` excludes frames that fail the
physical checks: non-finite positions, atoms closer than ``min_distance``). Frames below ``lo`` are
never picked: the committee already agrees on them. ``info["origin"]`` counts the picks from each
source, ``{"in_window": n, "top_up_above_hi": m}``; ``top_up=False`` turns the top-up off. Without
a window every frame not excluded is eligible (``{"all": n}``). ``info["stop_reason"]`` is
``"budget"``, ``"pool exhausted"`` (every eligible frame was picked or was a near-duplicate) or the
strategy's own reason (``"no frame extrapolates"`` of the D-optimal batch).

- ``random`` (the default of the active-learning loop, without the window): uniform without
  replacement; the baseline, which no other strategy beat beyond the seed spread on the
  data-efficiency benchmark (README, "Performance").
- ``max_deviation``: largest committee force deviation first (DP-GEN's ordering; with the window,
  the trust-window top-k).
- ``farthest_point``: farthest-point sampling on frame fingerprints (Gonzalez 1985).
- ``leverage``: largest Mahalanobis distance or leverage of any atom against the training rows.
- ``d_optimal``: greedy MaxVol batch (Podryabinkin & Shapeev 2017, per element as Lysogorskiy
  et al. 2023).
- ``hybrid``: the D-optimal batch among the frames in
  the committee trust window (Zhang et al. 2020; the default :class:`TrustWindow` when none is
  given); when no frame of the window extrapolates any more but budget is left, the rest of the
  window is taken by largest deviation, then the top-up.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np

from aiida_mlip.settings import suggest

from .duplicates import DuplicateFilter
from .farthest_point import farthest_point_sampling
from .greedy_batch import greedy_batch
from .leverage import LeverageModel
from .maxvol import ActiveSet
from .pool import SelectionPool, SelectionResult
from .trust import CANDIDATE, TrustWindow

__all__ = (
    "STRATEGIES",
    "STRATEGY_OPTIONS",
    "select_d_optimal",
    "select_farthest_point",
    "select_hybrid",
    "select_leverage",
    "select_max_deviation",
    "select_random",
)

_COMMON = ("score", "top_up", "duplicate_tol")

#: The settings options each strategy uses (``"*"``: the options only some strategies use).
STRATEGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "*": ("tol", "regularisation", "kind"),
    "random": _COMMON,
    "max_deviation": _COMMON,
    "farthest_point": _COMMON,
    "leverage": (*_COMMON, "kind"),
    "d_optimal": (*_COMMON, "tol", "regularisation"),
    "hybrid": (*_COMMON, "tol", "regularisation"),
}


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise ValueError(f"budget must be a non-negative integer, got {budget}")
    return int(budget)


def _strategy(function: Callable[..., SelectionResult]) -> Callable[..., SelectionResult]:
    """Refuse unknown keyword options with a ``ValueError`` naming the accepted ones (not a TypeError)."""
    accepted = [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    name = function.__name__.removeprefix("select_")

    @functools.wraps(function)
    def wrapper(pool, budget, rng=None, **options):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(
                f"strategy {name!r} takes no option {unknown[0]!r}{suggest(unknown[0], accepted)}; "
                f"it takes {', '.join(accepted)}"
            )
        return function(pool, _check_budget(budget), rng, **options)

    wrapper.accepted_options = tuple(accepted)
    return wrapper


class _Picker:
    """The picks of one strategy run: the window tier first, then the top-up; duplicates refused."""

    def __init__(self, pool, budget, window, score, top_up, duplicate_tol, reference_fingerprints):
        self.pool, self.budget = pool, budget
        self.window = window
        self.values = pool.require_score(score, "the trust window") if window is not None else None
        allowed = ~pool.exclude
        if window is None:
            self.first = np.flatnonzero(allowed)
            self.rest = np.zeros(0, dtype=np.int64)
        else:
            finite = np.isfinite(self.values)
            self.first = np.flatnonzero(allowed & (window.classify(self.values) == CANDIDATE))
            above = np.flatnonzero(allowed & finite & (self.values >= window.hi)) if top_up else []
            above = np.asarray(above, dtype=np.int64)
            self.rest = above[np.argsort(self.values[above], kind="stable")]
        self.duplicates = None
        if duplicate_tol is not None:
            fingerprints = pool.frame_fingerprints()
            if fingerprints is not None:
                self.duplicates = DuplicateFilter(
                    fingerprints, tol=duplicate_tol, reference=reference_fingerprints
                )
        self.indices: list[int] = []
        self.scores: list[float] = []
        self.origin = {"all" if window is None else "in_window": 0}
        if window is not None and top_up:
            self.origin["top_up_above_hi"] = 0

    @property
    def full(self) -> bool:
        return len(self.indices) >= self.budget

    def accept(self, frame: int) -> bool:
        return self.duplicates is None or self.duplicates.accept(int(frame))

    def take(self, frames, scores=None, origin: str | None = None, check: bool = True) -> None:
        """Append ``frames`` in order until the budget, skipping near-duplicates (when ``check``)."""
        origin = origin or next(iter(self.origin))
        taken = set(self.indices)
        for position, frame in enumerate(frames):
            if self.full:
                break
            frame = int(frame)
            if frame in taken or (check and not self.accept(frame)):
                continue
            self.indices.append(frame)
            taken.add(frame)
            self.scores.append(float(scores[position]) if scores is not None else np.nan)
            self.origin[origin] += 1

    def top_up(self) -> None:
        if len(self.rest):
            self.take(self.rest, self.values[self.rest], origin="top_up_above_hi")

    def result(self, strategy: str, score: str, reason: str | None = None, **info) -> SelectionResult:
        skipped = [] if self.duplicates is None else sorted({int(i) for i in self.duplicates.rejected})
        eligible = set(self.first.tolist()) | set(self.rest.tolist())
        left = eligible - set(self.indices) - set(skipped)
        if self.full:
            stop = "budget"
        elif not left:
            stop = "pool exhausted"
        else:
            stop = reason or "pool exhausted"
        if self.window is not None:
            classes = self.window.classify(self.values)
            info["counts"] = {
                "accurate": int((classes == 0).sum()),
                "candidate": int((classes == 1).sum()),
                "failed": int((classes == 2).sum()),
            }
            info["trust_window"] = [float(self.window.lo), float(self.window.hi)]
        return SelectionResult(
            indices=np.asarray(self.indices, dtype=np.int64),
            scores=np.asarray(self.scores, dtype=np.float64),
            info={
                "strategy": strategy,
                "score": score,
                "budget": int(self.budget),
                "selected": len(self.indices),
                "stop_reason": stop,
                "origin": dict(self.origin),
                "eligible": len(eligible),
                "skipped_duplicates": skipped,
                **info,
            },
        )


@_strategy
def select_random(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    window: TrustWindow | None = None,
    top_up: bool = True,
    score: str = "max_force_deviation",
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """Uniformly random frames without replacement (the baseline). Scores are the draw order."""
    picker = _Picker(pool, budget, window, score, top_up, duplicate_tol, reference_fingerprints)
    order = np.random.default_rng(rng).permutation(picker.first)
    picker.take(order, np.arange(len(order), dtype=float))
    picker.top_up()
    return picker.result("random", "draw")


@_strategy
def select_max_deviation(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    window: TrustWindow | None = None,
    top_up: bool = True,
    score: str = "max_force_deviation",
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """Frames of the largest per-frame ``score`` (committee force deviation, eV/Angstrom) first.

    NaN scores are never picked. ``rng`` is unused (the order is deterministic).
    """
    values = pool.require_score(score, "max_deviation")
    picker = _Picker(pool, budget, window, score, top_up, duplicate_tol, reference_fingerprints)
    usable = picker.first[np.isfinite(values[picker.first])]
    order = usable[np.argsort(-values[usable], kind="stable")]
    picker.take(order, values[order])
    picker.top_up()
    return picker.result("max_deviation", score)


@_strategy
def select_farthest_point(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    window: TrustWindow | None = None,
    top_up: bool = True,
    score: str = "max_force_deviation",
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """Farthest-point sampling on the frame fingerprints, away from ``reference_fingerprints``.

    Without a reference the first pick is random (``rng``). Scores are the distances of each pick
    to the nearest earlier pick or reference frame, in fingerprint units.
    """
    fingerprints = pool.frame_fingerprints()
    if fingerprints is None:
        raise ValueError("the 'farthest_point' strategy needs per-atom features or fingerprints in the pool")
    picker = _Picker(pool, budget, window, score, top_up, duplicate_tol, reference_fingerprints)
    allowed = np.zeros(pool.n_frames, dtype=bool)
    allowed[picker.first] = True
    rng = np.random.default_rng(rng)
    start = int(rng.choice(picker.first)) if len(picker.first) else None
    indices, distances = farthest_point_sampling(
        fingerprints,
        budget,
        reference=reference_fingerprints,
        start=start,
        allowed=allowed,
        accept=picker.accept,
    )
    picker.take(indices, distances, check=False)
    picker.top_up()
    return picker.result("farthest_point", "distance")


@_strategy
def select_leverage(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    window: TrustWindow | None = None,
    top_up: bool = True,
    score: str = "max_force_deviation",
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
    picker = _Picker(pool, budget, window, score, top_up, duplicate_tol, reference_fingerprints)
    usable = picker.first[values[picker.first] > -np.inf]
    order = usable[np.argsort(-values[usable], kind="stable")]
    picker.take(order, values[order])
    picker.top_up()
    return picker.result("leverage", kind)


def _start_active_set(pool: SelectionPool, regularisation: float) -> ActiveSet:
    """Virtual rows of length ``regularisation`` times each element's rms row norm."""
    scales = {}
    for number in np.unique(pool.numbers):
        rows = pool.features[pool.numbers == number]
        scales[int(number)] = regularisation * (float(np.sqrt((rows**2).sum(axis=1).mean())) or 1.0)
    return ActiveSet.empty(sorted(scales), pool.features.shape[1], scales)


def _greedy(picker: _Picker, active_set, tol: float, regularisation: float):
    pool = picker.pool
    batch = greedy_batch(
        active_set if active_set is not None else _start_active_set(pool, regularisation),
        pool.features,
        pool.numbers,
        pool.row_frame,
        picker.budget,
        tol=tol,
        candidates=picker.first,
        accept=picker.accept,
        regularisation=regularisation,
    )
    picker.take(batch.frames, batch.grades, check=False)
    return batch


@_strategy
def select_d_optimal(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    window: TrustWindow | None = None,
    top_up: bool = True,
    score: str = "max_force_deviation",
    active_set: ActiveSet | None = None,
    tol: float = 1e-3,
    regularisation: float = 0.1,
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
        A frame of grade ``<= 1 + tol`` is not picked (then the top-up, if any, fills the budget).

    The result's ``info["active_set"]`` holds the updated :class:`ActiveSet` (not JSON; pop it
    before serialising); scores are each frame's grade when it was picked (the top-up's: their
    deviation).
    """
    pool.require_features("d_optimal")
    picker = _Picker(pool, budget, window, score, top_up, duplicate_tol, reference_fingerprints)
    batch = _greedy(picker, active_set, tol, regularisation)
    picker.top_up()
    return picker.result(
        "d_optimal",
        "gamma",
        reason=batch.stop_reason,
        d_optimal_stop_reason=batch.stop_reason,
        log_volume_gain=[float(g) for g in batch.log_volume_gain],
        notes=list(batch.active_set.notes),
        active_set=batch.active_set,
    )


@_strategy
def select_hybrid(
    pool: SelectionPool,
    budget: int,
    rng: np.random.Generator | int | None = None,
    *,
    window: TrustWindow | None = None,
    top_up: bool = True,
    score: str = "max_force_deviation",
    active_set: ActiveSet | None = None,
    tol: float = 1e-3,
    regularisation: float = 0.1,
    duplicate_tol: float | None = 1e-3,
    reference_fingerprints: np.ndarray | None = None,
) -> SelectionResult:
    """The committee trust window as a filter, the D-optimal batch in it, then by deviation, then the top-up.

    Parameters
    ----------
    window : TrustWindow, optional
        Trust window on ``score`` in eV/Angstrom (default: :class:`TrustWindow`'s defaults).
    active_set : ActiveSet, optional
        Of the training set (see :func:`select_d_optimal`).

    When the D-optimal batch stops because no frame of the window extrapolates, the rest of the
    window goes by largest deviation (``info["filled_by_deviation"]``), since a committee that
    disagrees is worth a label even inside the linear span; then the top-up above ``hi``.
    """
    values = pool.require_score(score, "hybrid")
    pool.require_features("hybrid")
    picker = _Picker(
        pool, budget, window or TrustWindow(), score, top_up, duplicate_tol, reference_fingerprints
    )
    batch = _greedy(picker, active_set, tol, regularisation)
    before = len(picker.indices)
    rest = np.setdiff1d(picker.first, picker.indices)
    rest = rest[np.argsort(-values[rest], kind="stable")]
    picker.take(rest, values[rest])
    filled = len(picker.indices) - before
    picker.top_up()
    return picker.result(
        "hybrid",
        score,
        d_optimal_selected=len(batch.frames),
        d_optimal_stop_reason=batch.stop_reason,
        filled_by_deviation=filled,
        gamma=[float(g) for g in batch.grades],
        notes=list(batch.active_set.notes),
        active_set=batch.active_set,
    )


STRATEGIES: dict[str, Callable[..., SelectionResult]] = {
    "random": select_random,
    "max_deviation": select_max_deviation,
    "farthest_point": select_farthest_point,
    "leverage": select_leverage,
    "d_optimal": select_d_optimal,
    "hybrid": select_hybrid,
}
