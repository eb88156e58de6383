"""The demo's claims on one finished demo run with a target force error (it runs once per module).

* With ``trust: {target_force_error: ...}`` the demo converges and the report names the window each
  calibration chose.
* Every iteration that labelled frames recorded a calibration of the committee on them.
* Each calibration pools the pairs of every iteration so far (the previous calibration is an input).
* On a held-out EMT set (near-equilibrium MD, deviations below the trust windows the run labelled
  in), the run's own latest calibration predicts the final committee's per-frame max force error
  within a factor of 2 for at least 80% of the frames (issue 11); the
  rank correlation is reported, and so is a calibration fitted on half of the held-out set
  predicting the other half.
"""

import copy
import math

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlip.demo import DEMO_OVERRIDES, calibration_check, held_out_set, latest_calibration
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

#: A demo-sized run (5-6 minutes on 2 quiet cores): `make science`, not `make test`.
pytestmark = pytest.mark.science

#: eV/Angstrom: the acceptable per-frame max force error of the demo run.
TARGET_FORCE_ERROR = 0.1


@pytest.fixture(scope="module")
def demo_run(aiida_profile):
    """The demo's settings with a target force error, run to the end: (results, node)."""
    from aiida_mlip.codes import get_or_create_localhost, register_engine_codes

    codes = register_engine_codes(get_or_create_localhost("aiida-mlip-localhost"), log=lambda *_: None)
    overrides = copy.deepcopy(DEMO_OVERRIDES)
    overrides.setdefault("trust", {})["target_force_error"] = TARGET_FORCE_ERROR
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        codes=codes,
        protocol="fast",
        overrides=overrides,
    )
    return run_get_node(builder)


def test_target_force_error_run_converges_and_the_report_names_the_window(demo_run):
    results, node = demo_run
    assert node.exit_status == 0, node.exit_message
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    chosen = [message for message in reports if "trust window lo=" in message]
    assert chosen, reports
    assert all(f"for target force error {TARGET_FORCE_ERROR:g} eV/A" in message for message in chosen)
    history = results["history"]["iterations"]
    derived = [record for record in history if record["trust"]["source"] != "fixed"]
    assert derived, "no iteration explored with a window derived from a calibration"
    for record in derived:
        assert record["trust"]["source"].endswith(f"for target {TARGET_FORCE_ERROR:g} eV/A")
        assert record["trust"]["hi"] == pytest.approx(5 * record["trust"]["lo"])
        # the window the report named is the one the iteration explored with
        assert any(f"lo={record['trust']['lo']:.3f}, hi={record['trust']['hi']:.3f}" in m for m in chosen)


def test_calibration_is_recorded_every_iteration_that_labelled(demo_run):
    results, _ = demo_run
    history = results["history"]["iterations"]
    assert sum(record["n_labelled"] > 0 for record in history) >= 2
    pooled = 0
    for record in history:
        key = f"iteration_{record['iteration']}"
        if not record["n_labelled"]:
            # nothing new: no frame the committee never saw, so nothing to calibrate on
            assert "calibration" not in record and key not in results.get("calibration", {})
            continue
        fit = results["calibration"][key]["fit"]
        assert record["calibration"]["factor"] == pytest.approx(fit["factor"])
        pooled += record["n_labelled"]
        calibration = results["calibration"][key].get_dict()
        n_valid = len(calibration["validation_pairs"]["predicted"])
        assert len(calibration["pooled_pairs"]["predicted"]) == pooled
        assert record["calibration"]["n_new_pairs"] == record["n_labelled"]
        # the calibrated committee's own validation frames join the fit (the training that made it
        # held them out); earlier committees' do not
        assert n_valid >= 1 and record["calibration"]["n_validation_pairs"] == n_valid
        assert fit["n_pairs"] == pooled + n_valid
        assert 0.3 <= fit["exponent"] <= 1.0
        assert fit["spearman"] is not None and math.isfinite(fit["spearman"])
        assert key in results["reliability_diagram"]


def test_calibrated_errors_hold_on_held_out_frames(demo_run):
    """The run's own calibration predicts the errors of frames the committee never saw."""
    results, _ = demo_run
    latest = latest_calibration(results)
    assert latest is not None, "every calibration fell back (fewer than 10 pairs)"
    check = calibration_check(results["potential"], held_out_set(), latest[1])
    assert check["n_frames"] == 30
    # The new labels all lie above the held-out frames' deviations (0.007-0.08 eV/A); the calibrated
    # committee's own validation frames, which join each fit, reach down there. Labels only: 50 and
    # 53 % of the held-out frames within a factor of 2 (median observed/predicted 1.99, 1.88); with
    # the validation pairs of every committee pooled, 73-100 %; with the calibrated committee's own
    # (shipped), 93-100 % over the AiiDA-free loop's seeds 0-6 (README, "Calibrated uncertainty").
    print(f"held-out calibration check: {check}")
    assert check["spearman"] > 0.5, check
    assert check["recorded"]["within_factor_2"] >= 0.8, check
    assert 1 / 3 < check["recorded"]["median_ratio"] < 3.0, check
    assert check["two_fold"]["within_factor_2"] >= 0.8, check
