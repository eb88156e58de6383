"""One selection step, without files: the pool from configurations, the checks, the strategy.

:func:`select_batch` is what ``aiida-mlip-select`` does between reading and writing files, and what
the AiiDA-free loop calls directly. Its steps:

1. :func:`pool_scores`: the per-frame scores given (e.g. the exploration's ``candidates.csv``),
   with the committee force deviation computed where it is missing.
2. :func:`unphysical_frames`: frames that are never selected: non-finite positions, or two atoms
   closer than ``settings.min_distance`` (Angstrom).
3. :func:`reference_of`: the training set's active set and frame fingerprints (near-duplicates of
   labelled frames are never picked again).
4. the strategy of ``settings``: with ``settings.windowed``, the trust window first, then the
   top-up (see :mod:`aiida_mlip.selection.strategies`); otherwise every eligible frame alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiida_mlip.potentials.neighbours import minimum_distance

from .features import stack_features
from .maxvol import ActiveSet
from .pool import SelectionPool
from .settings import SelectionSettings
from .strategies import STRATEGIES
from .trust import TrustWindow

__all__ = ("SelectionOutcome", "pool_scores", "reference_of", "select_batch", "unphysical_frames")


@dataclass
class SelectionOutcome:
    """What :func:`select_batch` picked.

    Attributes
    ----------
    indices : (k,) int
        Picked frames (indices into the images), in the order picked; ``k <= budget``.
    scores : (k,) float
        The score each was picked for (``info["score"]``; top-up picks: their deviation, eV/Angstrom).
    info : dict
        JSON-able: strategy, ``stop_reason`` (``"budget"``, ``"pool exhausted"``, ...), ``origin``
        counts (``{"in_window": n, "top_up_above_hi": m}``), ``ineligible`` counts, notes.
    active_set : ActiveSet or None
        The D-optimal strategies' active set with the picked frames' rows exchanged in.
    """

    indices: np.ndarray
    scores: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    active_set: ActiveSet | None = None


def pool_scores(
    images: Sequence,
    scores: Mapping[str, np.ndarray] | None,
    calculator=None,
    skip: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame scores; ``max_force_deviation`` (eV/Angstrom) computed with ``calculator`` where missing (NaN).

    Frames in ``skip`` (e.g. unphysical ones) are not evaluated and keep NaN.
    """
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in (scores or {}).items()}
    deviation = arrays.get("max_force_deviation")
    if calculator is not None and (deviation is None or np.isnan(deviation).any()):
        deviation = np.full(len(images), np.nan) if deviation is None else deviation.copy()
        missing = np.isnan(deviation)
        if skip is not None:
            missing &= ~np.asarray(skip, dtype=bool)
        for index in np.flatnonzero(missing):
            atoms = images[index].copy()
            atoms.calc = calculator
            atoms.get_forces()
            deviation[index] = float(calculator.results["max_force_deviation"])
        arrays["max_force_deviation"] = deviation
    return arrays


def unphysical_frames(images: Sequence, min_distance: float) -> np.ndarray:
    """(n,) bool: frames with non-finite positions or two atoms closer than ``min_distance`` (Angstrom)."""
    bad = np.zeros(len(images), dtype=bool)
    for index, atoms in enumerate(images):
        if not np.isfinite(atoms.positions).all():
            bad[index] = True
        elif min_distance > 0 and len(atoms) > 1:
            bad[index] = minimum_distance(atoms, search=max(3.0, 2 * min_distance)) < min_distance
    return bad


def reference_of(calculator, training: Sequence, kind: str) -> tuple[ActiveSet, np.ndarray]:
    """The training set's active set and frame fingerprints, from the same committee's features."""
    features, numbers, row_frame = stack_features(calculator, training, kind)
    active_set = ActiveSet.build(features, numbers, frame_index=row_frame)
    fingerprints = SelectionPool(
        n_frames=len(training), features=features, numbers=numbers, row_frame=row_frame
    ).frame_fingerprints()
    return active_set, fingerprints


def select_batch(
    images: Sequence,
    settings: SelectionSettings,
    window: TrustWindow | None,
    calculator=None,
    scores: Mapping[str, np.ndarray] | None = None,
    training: Sequence | None = None,
    active_set: ActiveSet | None = None,
    log: Callable[[str], Any] | None = None,
) -> SelectionOutcome:
    """Select up to ``settings.budget`` of ``images`` to label.

    Parameters
    ----------
    images : sequence of ASE Atoms
        The pool (e.g. an exploration's candidates).
    settings : SelectionSettings
        Strategy, budget, seed, feature kind and options.
    window : TrustWindow or None
        Trust window on ``settings.score`` (eV/Angstrom). It is used only when ``settings.windowed``
        (the one owner of that choice); otherwise every frame with a score of at least ``lo`` is
        eligible alike (below ``lo`` the committee agrees: accurate), and there is no top-up.
    calculator : committee calculator, optional
        Needed by the feature-based strategies, for ``training`` and for missing deviations.
    scores : mapping, optional
        Per-frame scores already known (``max_force_deviation``, ``gamma``...).
    training : sequence of ASE Atoms, optional
        The labelled frames: their active set starts the D-optimal batch; their near-duplicates
        are not picked.
    active_set : ActiveSet, optional
        Instead of ``training``.
    log : callable, optional
        Receives progress lines.

    Raises
    ------
    ValueError
        When the strategy lacks what it needs (features without a calculator, a score).
    """
    log = log or (lambda line: None)
    if training is not None and calculator is None:
        raise ValueError("a training set needs the committee calculator (features of the same potential)")
    options: dict[str, Any] = settings.strategy_options()
    function = STRATEGIES[settings.strategy]
    unphysical = unphysical_frames(images, settings.min_distance)
    pool_kwargs = {}
    sound = np.flatnonzero(~unphysical)
    if calculator is not None and len(sound):
        # an unphysical frame may break the calculator: it gets no feature rows (it is excluded anyway)
        features, numbers, row_frame = stack_features(
            calculator, [images[i] for i in sound], settings.features
        )
        pool_kwargs = {"features": features, "numbers": numbers, "row_frame": sound[row_frame]}
    pool_values = pool_scores(images, scores, calculator, skip=unphysical)
    accurate = np.zeros(len(images), dtype=bool)
    if window is not None and not settings.windowed and settings.score in pool_values:
        # without the window every frame is eligible alike, except those the committee already agrees on
        accurate = pool_values[settings.score] < window.lo
    pool = SelectionPool(
        n_frames=len(images),
        scores=pool_values,
        exclude=unphysical | accurate,
        **pool_kwargs,
    )
    if training is not None:
        active_set, reference = reference_of(calculator, training, settings.features)
        options["reference_fingerprints"] = reference
    if active_set is not None and "active_set" in function.accepted_options:
        options["active_set"] = active_set
        for note in active_set.notes:
            log(f"active set: {note}")
    window = (window or TrustWindow()) if settings.windowed else None
    result = function(pool, settings.budget, rng=settings.seed, window=window, **options)
    info = dict(result.info)
    updated = info.pop("active_set", None)
    info["ineligible"] = {"unphysical": int(unphysical.sum())}
    if accurate.any():
        info["ineligible"]["accurate"] = int(accurate.sum())
    return SelectionOutcome(indices=result.indices, scores=result.scores, info=info, active_set=updated)
