"""The iteration history of an active-learning run: a table for terminals and a plot for people.

A history is a list of per-iteration records (plain dicts, as stored in the ``history`` output of
``ActiveLearningWorkChain``) with the keys::

    iteration, n_explored, n_accurate, n_candidate, n_failed, accurate_fraction, n_selected,
    n_labelled, n_label_failures, n_train_frames, rmse_energy (eV/atom), rmse_forces (eV/A),
    times: {explore, select, label, train} (s, the children's own run time), wall_time (s),
    overhead (s: wall time minus the children's run time),
    trust: {lo, hi, source} (eV/A: the window this iteration explored and selected with, and
    where it came from: ``fixed`` or ``calibration of iteration N for target T eV/A``),
    training_status ("ok", or "no_improvement" when the warm start could not beat its parent),
    training_epochs, new_frames (from the training metrics: the force RMSE on the frames new to
    the parent, before and after a warm start),
    retrained_from_scratch (bool: the no_improvement answer), calibration: {factor, exponent,
    spearman, n_pairs, n_new_pairs, n_validation_pairs, fallback, within_factor_2} (the committees'
    uncertainty against the labels of this and earlier iterations, each frame predicted by the
    committee before it was labelled, and the committee's own validation frames, see
    aiida_mlip.learning.calibration), convergence: {converged, stop, criterion, reason,
    accurate_fraction, streak, rmse_met} (aiida_mlip.learning.convergence.decide)

The accurate fraction is over every checked frame, failed ones included. ``new_record``,
``exploration_fields`` and ``close_record`` build a record step by step (the work chain and the
AiiDA-free loop use them). No AiiDA import here: the functions also serve the exported history of a
finished run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

__all__ = ("close_record", "exploration_fields", "format_history", "new_record", "plot_history")

COLUMNS = (
    ("iter", "iteration", "{:d}"),
    ("explored", "n_explored", "{:d}"),
    ("accurate", "n_accurate", "{:d}"),
    ("candidate", "n_candidate", "{:d}"),
    ("failed", "n_failed", "{:d}"),
    ("acc.frac", "accurate_fraction", "{:.3f}"),
    ("trust lo", "trust.lo", "{:.3f}"),
    ("trust hi", "trust.hi", "{:.3f}"),
    ("selected", "n_selected", "{:d}"),
    ("labelled", "n_labelled", "{:d}"),
    ("train set", "n_train_frames", "{:d}"),
    ("E rmse meV/at", "rmse_energy", "{:.2f}"),
    ("F rmse meV/A", "rmse_forces", "{:.1f}"),
    ("rank corr", "calibration.spearman", "{:.2f}"),
    ("cal.factor", "calibration.factor", "{:.2f}"),
    ("cal.exp", "calibration.exponent", "{:.2f}"),
    ("wall s", "wall_time", "{:.0f}"),
    ("overhead s", "overhead", "{:.1f}"),
)
_MILLI = {"rmse_energy", "rmse_forces"}


def new_record(iteration: int) -> dict:
    """The record of an iteration that is starting: nothing explored, selected or labelled yet."""
    return {"iteration": iteration, "times": {}, "n_selected": 0, "n_labelled": 0, "n_label_failures": 0}


def exploration_fields(summary: dict) -> dict:
    """The record fields of an exploration summary (``counts``, ``n_candidates``).

    ``accurate_fraction`` is accurate over all checked frames, failed ones included.
    """
    counts = summary["counts"]
    total = counts["accurate"] + counts["candidate"] + counts["failed"]
    return {
        "n_explored": total,
        "n_accurate": counts["accurate"],
        "n_candidate": counts["candidate"],
        "n_failed": counts["failed"],
        "accurate_fraction": counts["accurate"] / total if total else 0.0,
        "n_candidates": summary.get("n_candidates", 0),
    }


def close_record(record: dict, history: Sequence[dict], n_train_frames: int, wall_time: float) -> dict:
    """Finish an iteration's record: errors carried over when nothing was trained, times.

    Parameters
    ----------
    record
        The iteration's record so far (changed in place and returned).
    history
        The earlier records, oldest first.
    n_train_frames
        Frames in the dataset the current committee was trained on.
    wall_time
        Seconds since the iteration started; ``overhead`` is what the children's times leave of it.
    """
    if "rmse_forces" not in record and history:
        for key in ("rmse_energy", "rmse_forces", "n_train_frames"):
            record[key] = history[-1].get(key)
    record["wall_time"] = wall_time
    record["overhead"] = max(0.0, wall_time - sum(record.get("times", {}).values()))
    record.setdefault("n_train_frames", n_train_frames)
    return record


def _cell(record: dict, key: str, fmt: str) -> str:
    value = record
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in _MILLI:
        value = 1000.0 * value
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def format_history(history: Sequence[dict]) -> str:
    """Return the history as an aligned text table, one row per iteration."""
    header = [title for title, _, _ in COLUMNS]
    rows = [[_cell(record, key, fmt) for _, key, fmt in COLUMNS] for record in history]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(text.rjust(width) for text, width in zip(row, widths, strict=False))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plot_history(history: Sequence[dict], path: str | os.PathLike, title: str = "Active learning") -> None:
    """Save a four-panel PNG: accurate fraction, training-set size, validation RMSEs, time per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = [record["iteration"] for record in history]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    figure.suptitle(title)

    axis = axes[0, 0]
    axis.plot(iterations, [record.get("accurate_fraction", math.nan) for record in history], "o-")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accurate fraction of explored frames")

    axis = axes[0, 1]
    axis.bar(iterations, [record.get("n_train_frames", 0) for record in history], color="tab:green")
    axis.set_ylabel("training-set size (frames)")

    axis = axes[1, 0]
    axis.plot(
        iterations,
        [1000 * (record.get("rmse_forces") or math.nan) for record in history],
        "o-",
        label="forces (meV/A)",
    )
    axis.plot(
        iterations,
        [1000 * (record.get("rmse_energy") or math.nan) for record in history],
        "s-",
        label="energy (meV/atom)",
    )
    axis.set_ylabel("validation RMSE")
    axis.legend()

    axis = axes[1, 1]
    bottom = [0.0] * len(history)
    for step, colour in (
        ("explore", "tab:blue"),
        ("select", "tab:purple"),
        ("label", "tab:orange"),
        ("train", "tab:red"),
    ):
        heights = [record.get("times", {}).get(step, 0.0) for record in history]
        axis.bar(iterations, heights, bottom=bottom, label=step, color=colour)
        bottom = [b + h for b, h in zip(bottom, heights, strict=False)]
    axis.bar(
        iterations,
        [record.get("overhead", 0.0) for record in history],
        bottom=bottom,
        label="overhead",
        color="tab:gray",
    )
    axis.set_ylabel("time per iteration (s)")
    axis.legend()

    for axis in axes.flat:
        axis.set_xlabel("iteration")
        axis.set_xticks(iterations)
    figure.savefig(path, dpi=110)
    plt.close(figure)
