"""Greedy D-optimal batch selection: the frames that add the most volume to per-element active sets.

Podryabinkin & Shapeev, Comput. Mater. Sci. 140, 171 (2017), section 3, with one active set per
element as Lysogorskiy et al., Phys. Rev. Mater. 7, 043801 (2023). The active sets, the grade and
MaxVol are in :mod:`.maxvol`.

Steps of :func:`greedy_batch`: :func:`_pool_blocks` (per element, the pool's ``B = X A^-1`` in
frame segments), :func:`_frame_grades` (each frame's largest ``|B|``), and per picked frame
:func:`_exchange_frame_rows` (swap its rows in, low-rank update of ``B``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg.blas

from .maxvol import ActiveSet, ElementActiveSet

__all__ = ("BatchSelection", "greedy_batch")


@dataclass
class BatchSelection:
    """What :func:`greedy_batch` picked.

    Attributes
    ----------
    frames : (k,) int
        Picked frames, in the order they were picked.
    grades : (k,) float
        Each picked frame's grade when it was picked: the factor its best row multiplies the volume by.
    log_volume_gain : (k,) float
        ``log`` of the factor all of the frame's exchanged rows multiplied the volume by.
    skipped : list[int]
        Frames passed over because ``accept`` refused them (near-duplicates).
    active_set : ActiveSet
        The active set with the picked frames' rows exchanged in.
    stop_reason : str
        ``"budget"`` or ``"no frame extrapolates"`` (every remaining grade ``<= 1 + tol``).
    """

    frames: np.ndarray
    grades: np.ndarray
    log_volume_gain: np.ndarray
    skipped: list[int]
    active_set: ActiveSet
    stop_reason: str


def _add_low_rank(matrix: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """``matrix += left @ right`` in place with one BLAS gemm (C-ordered arrays, through their transposes)."""
    gemm = scipy.linalg.blas.get_blas_funcs("gemm", (matrix,))
    updated = gemm(1.0, right.T, left.T, beta=1.0, c=matrix.T, overwrite_c=True)
    if not np.shares_memory(updated, matrix):
        matrix[...] = updated.T


def _pool_blocks(features, numbers, row_frame, sets, notes, regularisation, dtype) -> dict[int, dict]:
    """Per element: the pool's rows sorted by frame, their ``B = X A^-1`` and each frame's segment.

    An element the active set lacks starts from virtual rows (``regularisation`` times its rms row
    norm), with a note.
    """
    blocks = {}
    for number in np.unique(numbers):
        rows = np.flatnonzero(numbers == number)
        rows = rows[np.argsort(row_frame[rows], kind="stable")]
        x = features[rows]
        if int(number) not in sets:
            rms = float(np.sqrt((x**2).sum(axis=1).mean())) or 1.0
            sets[int(number)] = ActiveSet.empty(
                [int(number)], features.shape[1], regularisation * rms
            ).elements[int(number)]
            notes.append(f"Z={int(number)}: not in the starting active set, started from virtual rows")
        seg_frames, seg_starts = np.unique(row_frame[rows], return_index=True)
        blocks[int(number)] = {
            "rows": rows,
            "B": x.astype(dtype) @ sets[int(number)].inverse.astype(dtype),
            "seg_frames": seg_frames,
            "seg_starts": seg_starts,
            "seg_stops": np.append(seg_starts[1:], len(rows)),
            "segment_of_frame": dict(zip(seg_frames.tolist(), range(len(seg_frames)), strict=True)),
        }
    return blocks


def _frame_grades(blocks: dict[int, dict], n_frames: int) -> np.ndarray:
    """(n_frames,) the largest ``|B|`` entry over each frame's rows (its grade), 0 for a frame without rows."""
    out = np.zeros(n_frames)
    for block in blocks.values():
        row_max = np.maximum(block["B"].max(axis=1), -block["B"].min(axis=1)).astype(np.float64)
        seg_max = np.maximum.reduceat(row_max, block["seg_starts"]) if len(row_max) else row_max
        out[block["seg_frames"]] = np.maximum(out[block["seg_frames"]], seg_max)
    return out


def _exchange_frame_rows(block, segment, element_set, frame, features, tol, dtype) -> float | None:
    """Swap the frame's rows of one element into its active set while one has ``|pivot| > 1 + tol``.

    Updates ``element_set`` rows and sources and the pool's ``B`` by the low-rank change of
    ``A^-1``; returns ``log`` of the volume factor, or ``None`` when no row was exchanged.
    """
    start, stop = block["seg_starts"][segment], block["seg_stops"][segment]
    local = block["B"][start:stop].astype(np.float64)
    m = local.shape[1]
    transform = np.eye(m)
    position_of = np.full(m, -1)
    gain = 0.0
    while True:
        flat = int(np.argmax(np.abs(local)))
        i, j = divmod(flat, m)
        pivot = local[i, j]
        if abs(pivot) <= 1.0 + tol:
            break
        gain += float(np.log(abs(pivot)))
        w = -local[i].copy()
        w[j] += 1.0
        w /= pivot
        transform += np.outer(transform[:, j], w)
        local += np.outer(local[:, j], w)
        position_of[j] = i
    exchanged = np.flatnonzero(position_of >= 0)
    if len(exchanged) == 0:
        return None
    pool_rows = block["rows"][start + position_of[exchanged]]
    element_set.rows[exchanged] = features[pool_rows]
    element_set.source[exchanged, 0] = frame
    element_set.source[exchanged, 1] = pool_rows
    delta = (transform[exchanged] - np.eye(m)[exchanged]).astype(dtype)
    _add_low_rank(block["B"], np.ascontiguousarray(block["B"][:, exchanged]), delta)
    return gain


def greedy_batch(
    active_set: ActiveSet,
    features: np.ndarray,
    numbers: np.ndarray,
    row_frame: np.ndarray,
    budget: int,
    tol: float = 1e-3,
    candidates: np.ndarray | None = None,
    accept: Callable[[int], bool] | None = None,
    regularisation: float = 0.1,
) -> BatchSelection:
    """Pick up to ``budget`` frames that add the most volume to the active set, one at a time.

    Podryabinkin & Shapeev (2017), section 3, with per-element sets (Lysogorskiy et al. 2023): the
    next frame is the one whose best row multiplies the volume the most, i.e. the largest grade
    ``gamma`` over its atoms. All its rows are then exchanged into the active sets while one still
    has ``gamma > 1 + tol``, and the grades of the rest of the pool are updated by the low-rank
    change of ``A^-1`` (``B <- B T`` with ``T - I`` non-zero only in the exchanged columns), so
    a batch costs a few passes over the pool's ``B`` per frame. A frame is never picked twice.

    Parameters
    ----------
    active_set : ActiveSet
        Start (built from the training set, or :meth:`ActiveSet.empty`); not modified.
    features : (n, m) array
        Feature rows of the pool's atoms.
    numbers : (n,) int
        Atomic number of each row.
    row_frame : (n,) int
        Frame of each row, ``0 <= row_frame < n_frames``.
    budget : int
        Most frames to pick.
    tol : float
        A frame whose grade is ``<= 1 + tol`` adds nothing and is not picked.
    candidates : array of int, optional
        Frames that may be picked (default all).
    accept : callable, optional
        ``accept(frame) -> bool`` asked before a frame is taken; a refused frame is skipped for good.
    regularisation : float
        For an element of the pool the active set lacks: it starts from virtual rows of this length
        times the element's rms row norm.
    """
    features = np.asarray(features, dtype=np.float64)
    numbers = np.asarray(numbers, dtype=np.int64)
    row_frame = np.asarray(row_frame, dtype=np.int64)
    if budget < 0:
        raise ValueError(f"budget must be non-negative, got {budget}")
    n_frames = int(row_frame.max()) + 1 if len(row_frame) else 0
    available = np.zeros(n_frames, dtype=bool)
    if candidates is None:
        available[:] = True
    else:
        available[np.asarray(candidates, dtype=np.int64)] = True
    sets = {
        number: ElementActiveSet(s.rows.copy(), s.source.copy(), s.inverse.copy())
        for number, s in active_set.elements.items()
    }
    notes = list(active_set.notes)
    # a large pool keeps B in single precision (grades are compared with 1 + tol, tol >> 1e-7)
    dtype = np.float32 if features.size >= 1 << 20 else np.float64
    blocks = _pool_blocks(features, numbers, row_frame, sets, notes, regularisation, dtype)

    picked, picked_grades, gains, skipped = [], [], [], []
    changed: set[int] = set()  # elements whose active rows changed; inverted once at the end
    stop_reason = "budget"
    grades = _frame_grades(blocks, n_frames)
    while len(picked) < budget:
        masked = np.where(available, grades, -np.inf)
        frame = int(np.argmax(masked)) if n_frames else -1
        if frame < 0 or masked[frame] <= 1.0 + tol:
            stop_reason = "no frame extrapolates"
            break
        available[frame] = False
        if accept is not None and not accept(frame):
            skipped.append(frame)
            continue
        picked.append(frame)
        picked_grades.append(float(grades[frame]))
        gain = 0.0
        for number, block in blocks.items():
            segment = block["segment_of_frame"].get(frame)
            if segment is not None:
                element_gain = _exchange_frame_rows(block, segment, sets[number], frame, features, tol, dtype)
                if element_gain is not None:
                    gain += element_gain
                    changed.add(number)
        gains.append(gain)
        grades = _frame_grades(blocks, n_frames)
    for number in changed:
        sets[number].inverse = np.linalg.inv(sets[number].rows)
    return BatchSelection(
        frames=np.asarray(picked, dtype=np.int64),
        grades=np.asarray(picked_grades),
        log_volume_gain=np.asarray(gains),
        skipped=skipped,
        active_set=ActiveSet(elements=sets, n_features=features.shape[1], notes=notes),
        stop_reason=stop_reason,
    )
