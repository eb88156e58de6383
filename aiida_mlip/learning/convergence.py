"""When an active-learning run has converged, and when it cannot go on: one decision per iteration.

The test is the accurate fraction of DP-GEN (Zhang et al., Comput. Phys. Commun. 253, 107206
(2020)): the share of the frames checked during exploration whose committee force deviation lies
below the trust window's ``lo``. Here the share is taken over **every** checked frame, the failed
(exploded, above ``hi``) ones included, so a walker that breaks cannot make a poor committee look
accurate: 1 accurate frame out of 3 checked is 0.333, whatever happened to the other two.

A run converges at the end of an iteration when

* its accurate fraction has reached ``accurate_fraction`` in ``patience`` iterations in a row
  (this one included), and
* the committee's validation force RMSE is at most ``max_force_rmse`` (eV/Angstrom), when set, and
* with a ``properties`` block, every quantity named there is within its change and spread
  tolerances (:mod:`aiida_mlip.learning.property_convergence`; the first iteration never is).

An iteration that labelled nothing new while the run is not converged is a **stall**, never a
quiet success: the next iteration would explore with the same committee. It ends the run as not
converged, with the criterion ``all_failed`` when every checked frame failed (or none was
checked: every walker exploded before its first check) and ``no_new_labels`` otherwise. The one
exception is an iteration that meets the accuracy criterion but whose ``patience`` streak is not
complete yet: the run goes on to confirm it. Reaching ``max_iterations`` without converging is
the criterion ``max_iterations``.

A run can converge before its exploration schedule's last entry (at 300 K of a 300 -> 1000 K
schedule, say): then the committee was judged accurate only where it has explored. The decision
says so (``schedule_completed`` is False and the reason names the entries never explored), so that
the report, the exit message and ``aiida-mlip status`` do not let it pass for a potential checked
at the last entry's temperatures.

The work chain's ``check_convergence`` and the AiiDA-free loop both call :func:`decide`; no other
code decides convergence. No AiiDA import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import pydantic

from aiida_mlip.learning.property_convergence import (
    PropertyConvergenceSettings,
    judge_quantity,
    quantity_text,
)
from aiida_mlip.settings import Settings

__all__ = (
    "ALL_FAILED",
    "CONTINUE",
    "CONVERGED",
    "MAX_ITERATIONS",
    "NO_NEW_LABELS",
    "ConvergenceDecision",
    "ConvergenceSettings",
    "accurate_fraction",
    "decide",
)

#: The criteria a decision names (``ConvergenceDecision.criterion``).
CONVERGED = "converged"
CONTINUE = "continue"
ALL_FAILED = "all_failed"
NO_NEW_LABELS = "no_new_labels"
MAX_ITERATIONS = "max_iterations"


class ConvergenceSettings(Settings):
    """The ``convergence`` block of the active-learning settings.

    Attributes
    ----------
    accurate_fraction : float
        In (0, 1]: the share of checked frames (failed ones included) that must be accurate.
    patience : int
        Iterations in a row whose accurate fraction must reach ``accurate_fraction``, >= 1.
    max_iterations : int
        Iterations at most, >= 1; the run ends not converged after them.
    max_force_rmse : float or None
        Validation force RMSE of the committee mean the run must also reach, eV/Angstrom (> 0),
        or None for no such criterion.
    properties : PropertyConvergenceSettings or None
        Quantities of the validation table that must also have settled (relative change between
        successive committees and relative committee spread), or None for no such criterion.
    """

    block = "convergence"

    accurate_fraction: float = pydantic.Field(0.97, gt=0.0, le=1.0)
    patience: int = pydantic.Field(1, ge=1)
    max_iterations: int = pydantic.Field(8, ge=1)
    max_force_rmse: float | None = pydantic.Field(None, gt=0.0)
    properties: PropertyConvergenceSettings | None = None

    def to_dict(self) -> dict:
        """The block as plain values; without a ``properties`` block, exactly the keys of the other criteria."""
        values = super().to_dict()
        if values.get("properties") is None:
            values.pop("properties", None)
        return values


@dataclass(frozen=True)
class ConvergenceDecision:
    """What :func:`decide` concluded about one iteration.

    Attributes
    ----------
    converged : bool
        The run has converged; stop with success.
    stop : bool
        The run stops after this iteration (converged or not).
    criterion : str
        ``converged``, ``continue``, ``all_failed``, ``no_new_labels`` or ``max_iterations``.
    reason : str
        One sentence for reports and exit messages, with the numbers behind the decision.
    accurate_fraction : float
        Accurate frames over all checked frames (failed included) of this iteration; 0 when
        nothing was checked.
    streak : int
        Iterations in a row, ending with this one, whose accurate fraction met the threshold.
    rmse_met : bool
        The force RMSE criterion holds (True when it is not set).
    properties_met : bool
        Every quantity of ``convergence.properties`` is within its tolerances (True when it is
        not set); the judgement of each is in the record's ``properties``.
    schedule_completed : bool
        This iteration explored at the exploration schedule's last entry (or past it).
    """

    converged: bool
    stop: bool
    criterion: str
    reason: str
    accurate_fraction: float
    streak: int
    rmse_met: bool
    properties_met: bool = True
    schedule_completed: bool = True

    def to_dict(self) -> dict:
        """The decision as plain values (for the history record)."""
        return asdict(self)


def accurate_fraction(record: Mapping) -> float:
    """Accurate frames over all checked frames of an iteration record, failed frames included.

    Uses the counts ``n_accurate``, ``n_candidate``, ``n_failed``; 0.0 when no frame was checked.
    """
    counts = [int(record.get(key) or 0) for key in ("n_accurate", "n_candidate", "n_failed")]
    total = sum(counts)
    return counts[0] / total if total else 0.0


def decide(
    record: Mapping,
    history: Sequence[Mapping],
    settings: ConvergenceSettings | Mapping | None = None,
    stages: int = 1,
) -> ConvergenceDecision:
    """Decide whether the run converged, goes on, or stops unconverged after this iteration.

    Parameters
    ----------
    record
        This iteration's record (see :mod:`aiida_mlip.history`): ``iteration``, ``n_accurate``,
        ``n_candidate``, ``n_failed``, ``n_labelled``, ``rmse_forces`` (eV/Angstrom, the
        validation RMSE of the committee after this iteration's training, or None) and, with a
        ``properties`` criterion, ``properties``: per quantity ``mean``, ``std`` and ``previous``
        (see :func:`~aiida_mlip.learning.property_convergence.judge_quantity`, which judges them).
    history
        The records of the earlier iterations, oldest first (this one not included).
    settings
        The convergence block (a mapping is read through ``ConvergenceSettings.from_mapping``).
    stages
        Entries of the exploration schedule (iteration ``i`` explores at entry ``min(i, stages) - 1``):
        a decision before the last one says so (``schedule_completed``).

    Returns
    -------
    ConvergenceDecision
    """
    if not isinstance(settings, ConvergenceSettings):
        settings = ConvergenceSettings.from_mapping(settings)
    fraction = accurate_fraction(record)
    threshold = settings.accurate_fraction
    met = fraction >= threshold
    streak = 0
    if met:
        streak = 1
        for earlier in reversed(history):
            if accurate_fraction(earlier) < threshold:
                break
            streak += 1
    rmse = _latest_rmse(record, history)
    rmse_met = settings.max_force_rmse is None or rmse <= settings.max_force_rmse
    n_checked = sum(int(record.get(key) or 0) for key in ("n_accurate", "n_candidate", "n_failed"))
    n_failed = int(record.get("n_failed") or 0)
    accuracy = (
        f"accurate fraction {fraction:.3f} ({int(record.get('n_accurate') or 0)} of {n_checked} "
        f"checked frames, {n_failed} failed) {'>=' if met else '<'} {threshold:g}"
    )
    rmse_text = (
        ""
        if settings.max_force_rmse is None
        else f"; validation force RMSE {1000 * rmse:.1f} meV/A {'<=' if rmse_met else '>'} "
        f"{1000 * settings.max_force_rmse:.1f} meV/A"
    )

    properties_met, properties_text = _properties(record, settings.properties)
    rmse_text += properties_text

    iteration = int(record.get("iteration") or len(history) + 1)
    completed = iteration >= stages

    def decision(converged, stop, criterion, reason):
        return ConvergenceDecision(
            converged, stop, criterion, reason, fraction, streak, rmse_met, properties_met, completed
        )

    if met and streak >= settings.patience and rmse_met and properties_met:
        unexplored = (
            ""
            if completed
            else f"; at schedule entry {iteration} of {stages}: the accuracy was judged where it has "
            f"explored, not at the temperatures of entries {iteration + 1}-{stages}"
        )
        return decision(
            True,
            True,
            CONVERGED,
            f"{accuracy} for {streak} iteration(s) in a row (patience {settings.patience})"
            + rmse_text
            + unexplored,
        )
    waiting = met and streak < settings.patience
    # a property's probes, due for labelling in the next iteration, are something new to learn
    probing = bool(record.get("probes_due"))
    if not int(record.get("n_labelled") or 0) and not waiting and not probing:
        if n_checked == 0 or n_failed == n_checked:
            return decision(
                False,
                True,
                ALL_FAILED,
                f"every walker failed: {n_failed} of {n_checked} checked frames failed and nothing "
                "was labelled; lower the temperatures or the timestep, or raise `break_threshold`",
            )
        return decision(
            False,
            True,
            NO_NEW_LABELS,
            f"not converged and nothing new to learn: {accuracy}{rmse_text}, "
            f"{int(record.get('n_candidates') or 0)} candidate(s), {int(record.get('n_selected') or 0)} "
            "selected, 0 labelled",
        )
    if iteration >= settings.max_iterations:
        return decision(
            False,
            True,
            MAX_ITERATIONS,
            f"not converged after {iteration} iteration(s) (max_iterations): {accuracy}{rmse_text}",
        )
    if waiting and rmse_met and properties_met:
        reason = f"{accuracy}, {streak} of {settings.patience} iteration(s) in a row"
    else:
        reason = f"{accuracy}{rmse_text}"
    return decision(False, False, CONTINUE, reason)


def _latest_rmse(record: Mapping, history: Sequence[Mapping]) -> float:
    """The validation force RMSE of the newest committee, eV/Angstrom; inf when none is known."""
    for entry in [record, *reversed(history)]:
        value = entry.get("rmse_forces")
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return math.inf


def _properties(record: Mapping, settings: PropertyConvergenceSettings | None) -> tuple[bool, str]:
    """Whether every quantity of the ``properties`` criterion is within tolerance, and the reason's words.

    Each quantity is judged from the record's ``mean``, ``std`` and ``previous`` by
    :func:`~aiida_mlip.learning.property_convergence.judge_quantity`; a quantity the record lacks
    is not within tolerance.
    """
    if settings is None:
        return True, ""
    found = record.get("properties") or {}
    judged = {
        name: judge_quantity(found.get(name) or {"error": "not computed"}, tolerance)
        for name, tolerance in settings.quantities.items()
    }
    missed = [name for name, entry in judged.items() if not entry["within_tolerance"]]
    if not missed:
        return True, "; properties within tolerance: " + "; ".join(
            quantity_text(name, entry) for name, entry in judged.items()
        )
    return False, (
        f"; properties not within tolerance (convergence.properties, {len(missed)} of {len(judged)}): "
        + "; ".join(quantity_text(name, judged[name]) for name in missed)
    )
