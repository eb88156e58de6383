"""The iteration history of an active-learning run: a table for terminals and a plot for people.

A history is a list of per-iteration records (plain dicts, as stored in the ``history`` output of
``ActiveLearningWorkChain``) with the keys::

    iteration, n_explored, n_accurate, n_candidate, n_failed, accurate_fraction, n_selected,
    n_labelled, n_label_failures, n_train_frames, rmse_energy (eV/atom), rmse_forces (eV/A),
    times: {explore, select, label, train, properties} (s, the children's own run time), wall_time (s),
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
    accurate_fraction, streak, rmse_met, properties_met} (aiida_mlip.learning.convergence.decide),
    and with ``convergence.properties``: properties: {"eos.B0": {mean, std, unit, previous, spread,
    change, tolerance: {change, spread}, within_change, within_spread, within_tolerance, error?},
    ...} (the committee's mean and std over its members in the quantity's unit, the relative spread
    and the relative change from the last different committee; see ``property_fields``),
    probes_due: {property: structures} (the probes made after this iteration's properties, labelled
    in the next) and n_probes (the probe structures this iteration labelled beside its selection)

The accurate fraction is over every checked frame, failed ones included. ``new_record``,
``exploration_fields`` and ``close_record`` build a record step by step (the work chain and the
AiiDA-free loop use them). No AiiDA import here: the functions also serve the exported history of a
finished run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from aiida_mlip.plotting import in_default_style

__all__ = (
    "close_record",
    "exploration_fields",
    "format_history",
    "new_record",
    "plot_history",
    "property_fields",
)

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


def property_fields(
    rows: Sequence[dict],
    failures: dict[str, str],
    previous: dict | None,
    quantities: dict,
) -> dict:
    """The ``properties`` entry of an iteration's record: each quantity of the committee, judged.

    Parameters
    ----------
    rows
        The validation rows of the properties computed with this iteration's committee (``property``,
        ``quantity``, ``unit``, ``mean``, ``std``; see :mod:`aiida_mlip.properties.validation`).
    failures
        ``{property: message}`` of the properties whose calculation failed.
    previous
        The ``properties`` entry of the last record whose committee was a different one, or None.
    quantities
        ``{"eos.B0": QuantityTolerance or {change, spread}}``, the ``convergence.properties`` quantities.

    Returns
    -------
    dict
        ``{name: {mean, std, unit, previous, spread, change, tolerance, within_change, within_spread,
        within_tolerance}}`` (:func:`~aiida_mlip.learning.property_convergence.judge_quantity`); a
        quantity without a value has ``mean`` None and an ``error`` saying why.
    """
    from aiida_mlip.learning.property_convergence import judge_quantity

    found = {f"{row['property']}.{row['quantity']}": row for row in rows}
    fields = {}
    for name, tolerance in quantities.items():
        prop = name.split(".", 1)[0]
        row = None if prop in failures else found.get(name)
        entry = {
            "mean": None if row is None else row["mean"],
            "std": None if row is None else row["std"],
            "unit": "" if row is None else row["unit"],
            "previous": ((previous or {}).get(name) or {}).get("mean"),
        }
        if prop in failures:
            entry["error"] = f"{prop} failed: {failures[prop]}"
        elif row is None:
            entry["error"] = (
                f"{prop} has no row {name.split('.', 1)[1]} (a value near zero is left out of the table)"
            )
        elif row["mean"] is None or not math.isfinite(row["mean"]):
            entry["error"] = "a member gave no value"
        fields[name] = judge_quantity(entry, tolerance)
    return fields


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


@in_default_style
def plot_history(history: Sequence[dict], path: str | os.PathLike, title: str = "Active learning") -> None:
    """Save a four-panel PNG: accurate fraction, training-set size, validation RMSEs, time per step.

    With property convergence (records with ``properties``) a third row shows each quantity per
    iteration: its committee mean +- std relative to the last mean, and its relative change and
    spread against the tolerances.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = [record["iteration"] for record in history]
    names = list(dict.fromkeys(name for record in history for name in record.get("properties") or {}))
    rows = 3 if names else 2
    figure, axes = plt.subplots(rows, 2, figsize=(10, 3.5 * rows), constrained_layout=True)
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
    steps = [("explore", "tab:blue"), ("select", "tab:purple"), ("label", "tab:orange"), ("train", "tab:red")]
    if names:
        steps.append(("properties", "tab:olive"))
    for step, colour in steps:
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

    if names:
        _plot_properties(axes[2], iterations, history, names)

    for axis in axes.flat:
        axis.set_xlabel("iteration")
        axis.set_xticks(iterations)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_properties(axes, iterations: list[int], history: Sequence[dict], names: list[str]) -> None:
    """Left: each quantity's mean +- std over the committee, over its last mean; right: relative change
    (solid) and spread (dashed) on a log scale, the tolerances as dotted lines of the same colour."""

    def value(record, name, key):
        found = ((record.get("properties") or {}).get(name) or {}).get(key)
        return math.nan if found is None else found

    values, changes = axes
    for number, name in enumerate(names):
        colour = f"C{number % 10}"
        means = [value(record, name, "mean") for record in history]
        last = next((mean for mean in reversed(means) if math.isfinite(mean) and mean != 0), 1.0)
        values.errorbar(
            iterations,
            [mean / last for mean in means],
            yerr=[value(record, name, "std") / abs(last) for record in history],
            fmt="o-",
            capsize=3,
            color=colour,
            label=f"{name} (last {last:.4g})",
        )
        changes.plot(iterations, [value(record, name, "change") for record in history], "o-", color=colour)
        changes.plot(iterations, [value(record, name, "spread") for record in history], "s--", color=colour)
        tolerance = next(
            (
                record["properties"][name]["tolerance"]
                for record in history
                if name in (record.get("properties") or {})
            ),
            None,
        )
        if tolerance:
            for key in ("change", "spread"):
                changes.axhline(tolerance[key], color=colour, linestyle=":", linewidth=0.8)
    values.set_ylabel("committee mean +- std / last mean")
    values.legend(fontsize="small")
    changes.set_yscale("log")
    changes.set_ylabel("relative change (-o-), spread (--s--)")
