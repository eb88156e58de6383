"""``decide``: convergence only when the accurate fraction (failed frames included) and the RMSE say so."""

import pytest

from aiida_mlip.learning.convergence import (
    ALL_FAILED,
    CONTINUE,
    CONVERGED,
    MAX_ITERATIONS,
    NO_NEW_LABELS,
    ConvergenceSettings,
    accurate_fraction,
    decide,
)
from aiida_mlip.settings import SettingsError


def record(iteration=1, accurate=0, candidate=0, failed=0, labelled=0, rmse=None, **extra):
    return {
        "iteration": iteration,
        "n_accurate": accurate,
        "n_candidate": candidate,
        "n_failed": failed,
        "n_labelled": labelled,
        "rmse_forces": rmse,
        **extra,
    }


FAST = ConvergenceSettings(accurate_fraction=0.95, patience=1, max_iterations=6)


def test_failed_frames_count_against_the_accurate_fraction():
    assert accurate_fraction(record(accurate=1, candidate=0, failed=2)) == pytest.approx(1 / 3)
    assert accurate_fraction(record()) == 0.0
    # 19 accurate, 1 failed: 0.95 exactly reaches the threshold
    decision = decide(record(accurate=19, failed=1), [], FAST)
    assert decision.converged and decision.criterion == CONVERGED
    assert "0.950" in decision.reason and "1 failed" in decision.reason


def test_walker_exploding_at_its_first_check_is_not_converged():
    """Planted case (a): accurate 0.000, every frame failed, nothing to label."""
    decision = decide(record(accurate=0, candidate=0, failed=1, n_candidates=0), [], FAST)
    assert not decision.converged and decision.stop
    assert decision.criterion == ALL_FAILED
    assert decision.accurate_fraction == 0.0
    assert "every walker failed" in decision.reason
    # no frame checked at all (every walker broke before its first check) is the same
    assert decide(record(), [], FAST).criterion == ALL_FAILED


def test_readme_case_is_not_converged():
    """Planted case (c): 3 frames explored, 2 failed, accurate 0.333, 0 labelled."""
    decision = decide(record(accurate=1, failed=2, n_candidates=0, n_selected=0), [], FAST)
    assert not decision.converged and decision.stop
    assert decision.criterion == NO_NEW_LABELS
    assert "0.333" in decision.reason and "< 0.95" in decision.reason


def test_an_iteration_that_labelled_goes_on_until_max_iterations():
    decision = decide(record(accurate=5, candidate=5, labelled=5), [], FAST)
    assert (decision.converged, decision.stop, decision.criterion) == (False, False, CONTINUE)
    last = decide(record(iteration=6, accurate=5, candidate=5, labelled=5), [{}] * 5, FAST)
    assert (last.converged, last.stop, last.criterion) == (False, True, MAX_ITERATIONS)
    assert "max_iterations" in last.reason


def test_patience_counts_iterations_in_a_row_that_reach_the_fraction():
    settings = ConvergenceSettings(accurate_fraction=0.9, patience=2, max_iterations=10)
    good, poor = record(accurate=95, candidate=5), record(accurate=50, candidate=50, labelled=3)
    first = decide(dict(good, iteration=2), [poor], settings)
    # reached once: not converged yet, but not a stall either (nothing labelled, confirming)
    assert (first.converged, first.stop, first.streak) == (False, False, 1)
    assert "1 of 2" in first.reason
    second = decide(dict(good, iteration=3), [poor, good], settings)
    assert second.converged and second.streak == 2
    # a poor iteration in between breaks the streak
    assert decide(dict(good, iteration=4), [good, poor], settings).streak == 1


def test_force_rmse_criterion():
    settings = ConvergenceSettings(accurate_fraction=0.9, max_force_rmse=0.05, max_iterations=5)
    accurate = record(accurate=100, labelled=2)
    missed = decide(dict(accurate, rmse_forces=0.08), [], settings)
    assert not missed.converged and not missed.rmse_met and "80.0 meV/A > 50.0 meV/A" in missed.reason
    # nothing labelled and the RMSE unmet: a stall, not a success
    stalled = decide(dict(accurate, n_labelled=0), [{"rmse_forces": 0.08}], settings)
    assert stalled.criterion == NO_NEW_LABELS and not stalled.converged
    met = decide(dict(accurate, rmse_forces=0.04), [], settings)
    assert met.converged and "40.0 meV/A <= 50.0 meV/A" in met.reason


def test_settings_keep_todays_names_and_refuse_nonsense():
    assert ConvergenceSettings.from_mapping({}).to_dict() == {
        "accurate_fraction": 0.97,
        "patience": 1,
        "max_iterations": 8,
        "max_force_rmse": None,
    }
    with pytest.raises(SettingsError, match="max_iterations"):
        ConvergenceSettings.from_mapping({"max_iterations": 0})
    with pytest.raises(SettingsError, match="accurate_fraction"):
        ConvergenceSettings.from_mapping({"accurate_fraction": 1.5})
    with pytest.raises(SettingsError, match="did you mean `patience`"):
        ConvergenceSettings.from_mapping({"patiense": 2})
    # a mapping is read through the settings model
    assert decide(record(accurate=1), [], {"accurate_fraction": 0.5}).converged


def test_convergence_before_the_last_schedule_entry_says_so():
    early = decide(record(iteration=1, accurate=20), [], FAST, stages=3)
    assert early.converged and not early.schedule_completed
    assert "at schedule entry 1 of 3" in early.reason and "entries 2-3" in early.reason
    assert early.to_dict()["schedule_completed"] is False
    history = [record(iteration=1, accurate=1, candidate=19, labelled=8)] * 2
    last = decide(record(iteration=3, accurate=20), history, FAST, stages=3)
    assert last.converged and last.schedule_completed and "schedule entry" not in last.reason
    # past the end of the schedule (its last entry repeats) and with no schedule given
    assert decide(record(iteration=5, accurate=20), history * 2, FAST, stages=3).schedule_completed
    assert decide(record(iteration=1, accurate=20), [], FAST).schedule_completed
