"""The iteration history of an active-learning run: a table for terminals and a plot for people.

A history is a list of per-iteration records (plain dicts, as stored in the ``history`` output of
``ActiveLearningWorkChain``) with the keys::

    iteration, n_explored, n_accurate, n_candidate, n_failed, accurate_fraction, n_selected,
    n_labelled, n_label_failures, n_train_frames, rmse_energy (eV/atom), rmse_forces (eV/A),
    times: {explore, select, label, train} (s, the children's own run time), wall_time (s),
    overhead (s: wall time minus the children's run time)

No AiiDA import here: the functions also serve the exported history of a finished run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

__all__ = ("format_history", "plot_history")

COLUMNS = (
    ("iter", "iteration", "{:d}"),
    ("explored", "n_explored", "{:d}"),
    ("accurate", "n_accurate", "{:d}"),
    ("candidate", "n_candidate", "{:d}"),
    ("failed", "n_failed", "{:d}"),
    ("acc.frac", "accurate_fraction", "{:.3f}"),
    ("selected", "n_selected", "{:d}"),
    ("labelled", "n_labelled", "{:d}"),
    ("train set", "n_train_frames", "{:d}"),
    ("E rmse meV/at", "rmse_energy", "{:.2f}"),
    ("F rmse meV/A", "rmse_forces", "{:.1f}"),
    ("wall s", "wall_time", "{:.0f}"),
    ("overhead s", "overhead", "{:.1f}"),
)
_MILLI = {"rmse_energy", "rmse_forces"}


def _cell(record: dict, key: str, fmt: str) -> str:
    value = record.get(key)
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
