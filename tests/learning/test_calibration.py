"""Calibration of the committee deviation: synthetic pairs with a known factor, and a real Al committee."""

import json
import math
import warnings

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_mlip.learning.calibration import (
    Calibration,
    CalibrationPairs,
    CalibrationWarning,
    calibration_pairs,
    fit_calibration,
    plot_reliability,
)
from aiida_mlip.potentials import load_calculator
from tests.exploration.al_committee import aluminium, emt_frames


def synthetic_pairs(factor, n, symbol="Al", noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    predicted = np.exp(rng.uniform(np.log(0.02), np.log(0.5), n))
    observed = factor * predicted * np.exp(rng.normal(0.0, noise, n))
    return CalibrationPairs(predicted, observed, (symbol,) * n)


def test_fit_recovers_the_factor_in_log_space():
    pairs = synthetic_pairs(3.0, 200)
    calibration = fit_calibration(pairs)
    assert not calibration.fallback
    assert calibration.n_pairs == 200
    assert calibration.factor == pytest.approx(3.0, rel=0.08)
    assert calibration.per_element["Al"] == pytest.approx(calibration.factor)
    assert calibration.spearman > 0.95
    # noise 0.2 in log space: |residual| <= log 2 for ~99.9% of frames
    assert calibration.within_factor_2 > 0.97
    assert calibration.log_spread == pytest.approx(0.2, abs=0.04)
    # errors proportional to the deviation: the fitted exponent is 1 within the noise
    assert calibration.exponent == pytest.approx(1.0, abs=0.06)
    assert calibration.predict(0.1) == pytest.approx(0.3, rel=0.1)
    np.testing.assert_allclose(
        calibration.predict(np.array([0.1, 0.2])), [calibration.predict(0.1), calibration.predict(0.2)]
    )


def floor_pairs(n, floor=0.03, scale=1.5, noise=0.15, seed=4):
    """Errors with a floor: ``sqrt(floor^2 + (scale * predicted)^2)``, eV/Angstrom, log-normal noise."""
    rng = np.random.default_rng(seed)
    predicted = np.exp(rng.uniform(np.log(0.005), np.log(0.5), n))
    observed = np.hypot(floor, scale * predicted) * np.exp(rng.normal(0.0, noise, n))
    return CalibrationPairs(predicted, observed, ("Al",) * n)


def test_a_power_law_follows_errors_that_level_off_at_small_deviations():
    """A single factor fitted over decades of deviation misses both ends; the exponent does not."""
    pairs = floor_pairs(300)
    calibration = fit_calibration(pairs)
    assert 0.3 < calibration.exponent < 0.9
    assert calibration.within_factor_2 > 0.9
    # pivot: geometric mean of the deviations; factor: calibrated over raw deviation there
    assert calibration.pivot == pytest.approx(math.exp(np.mean(np.log(pairs.predicted))))
    assert calibration.predict(calibration.pivot) == pytest.approx(calibration.factor * calibration.pivot)
    # a pure factor (the median log ratio) under-predicts the small deviations' errors
    factor = math.exp(np.median(np.log(pairs.observed / pairs.predicted)))
    small = pairs.predicted < 0.02
    assert np.median(pairs.observed[small] / (factor * pairs.predicted[small])) > 1.6
    assert np.median(pairs.observed[small] / calibration.predict(pairs.predicted[small])) < 1.3
    # the window inverts the power law
    lo, hi = calibration.window_for(0.1)
    assert calibration.predict(lo) == pytest.approx(0.1) and hi == pytest.approx(5 * lo)


def test_the_exponent_is_bounded_and_needs_pairs_that_span_a_range():
    rng = np.random.default_rng(5)
    predicted = np.exp(rng.uniform(np.log(0.01), np.log(0.5), 40))
    flat = CalibrationPairs(predicted, 0.1 * np.exp(rng.normal(0.0, 0.05, 40)), ("Al",) * 40)
    assert fit_calibration(flat).exponent == pytest.approx(0.3)  # errors independent of deviation
    steep = CalibrationPairs(predicted, 20 * predicted**3, ("Al",) * 40)
    assert fit_calibration(steep).exponent == pytest.approx(1.0)  # no faster than the deviation
    # fewer than 2 * min_pairs pairs, or deviations within a factor 2: a pure factor
    assert fit_calibration(CalibrationPairs(predicted[:19], 0.1 * predicted[:19] ** 0.5)).exponent == 1.0
    narrow = np.linspace(0.1, 0.18, 40)
    assert fit_calibration(CalibrationPairs(narrow, narrow**0.5)).exponent == 1.0


def test_per_element_factors_where_the_data_allow():
    pairs = CalibrationPairs.concatenate(
        [
            synthetic_pairs(2.0, 40, "Cu", seed=1),
            synthetic_pairs(6.0, 40, "Au", seed=2),
            synthetic_pairs(4.0, 5, "Ni"),
        ]
    )
    calibration = fit_calibration(pairs, min_pairs=10)
    assert set(calibration.per_element) == {"Au", "Cu"}  # 5 Ni pairs are too few for their own factor
    assert calibration.per_element["Cu"] == pytest.approx(2.0, rel=0.1)
    assert calibration.per_element["Au"] == pytest.approx(6.0, rel=0.1)
    assert calibration.factor_for("Ni") == calibration.factor
    assert calibration.predict(0.1, "Au") / calibration.predict(0.1, "Cu") == pytest.approx(
        calibration.per_element["Au"] / calibration.per_element["Cu"]
    )
    # the worst-calibrated element decides lo
    lo, hi = calibration.window_for(0.1)
    assert calibration.predict(lo, "Au") == pytest.approx(0.1)
    assert calibration.predict(lo, "Cu") < 0.1
    assert hi == pytest.approx(5 * lo)


def test_too_few_pairs_fall_back_to_factor_one_with_a_warning():
    pairs = synthetic_pairs(3.0, 9)
    with pytest.warns(CalibrationWarning, match="only 9 usable calibration pairs"):
        calibration = fit_calibration(pairs)
    assert calibration.fallback
    assert calibration.factor == 1.0 and calibration.exponent == 1.0
    assert calibration.n_pairs == 9
    assert calibration.spearman > 0.9  # still reported
    assert calibration.window_for(0.1) == pytest.approx((0.1, 0.5))


def test_unusable_pairs_are_not_counted():
    pairs = CalibrationPairs([0.1, 0.0, np.nan, 0.2], [0.2, 0.1, 0.3, 0.0], ("Al",) * 4)
    with pytest.warns(CalibrationWarning, match="only 1 usable"):
        calibration = fit_calibration(pairs)
    assert calibration.n_pairs == 1
    assert calibration.spearman is None


@pytest.mark.parametrize("target", [0.0, -0.1, float("nan")])
def test_a_target_error_that_is_not_positive_is_refused(target):
    calibration = fit_calibration(synthetic_pairs(2.0, 20))
    with pytest.raises(ValueError, match="target_force_error must be a positive force error in eV/Angstrom"):
        calibration.window_for(target)


def test_window_ratio_must_exceed_one():
    with pytest.raises(ValueError, match="hi_ratio must be greater than 1"):
        Calibration(factor=2.0, fallback=False).window_for(0.1, hi_ratio=1.0)


def test_round_trip_through_json():
    pairs = CalibrationPairs.concatenate(
        [synthetic_pairs(2.0, 30, "Cu"), synthetic_pairs(3.0, 4, "Au", seed=3)]
    )
    calibration = fit_calibration(pairs)
    restored = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert restored == calibration
    again = CalibrationPairs.from_dict(json.loads(json.dumps(pairs.to_dict())))
    np.testing.assert_array_equal(again.predicted, pairs.predicted)
    assert again.symbols == pairs.symbols
    with pytest.raises(ValueError, match="unknown calibration keys"):
        Calibration.from_dict({**calibration.to_dict(), "factr": 2.0})
    # a fit stored before the exponent existed reads as a pure factor
    older = {key: value for key, value in calibration.to_dict().items() if key not in ("exponent", "pivot")}
    assert Calibration.from_dict(older).exponent == 1.0


def test_pairs_need_reference_forces():
    class Committee:
        results = {}

        def calculate(self, atoms, properties):
            self.results = {"forces": np.zeros((len(atoms), 3))}

    with pytest.raises(ValueError, match="frame 0 has no reference forces"):
        calibration_pairs(Committee(), [aluminium()])
    labelled = aluminium()
    labelled.calc = SinglePointCalculator(labelled, forces=np.zeros((len(labelled), 3)))
    with pytest.raises(ValueError, match="no committee forces"):
        calibration_pairs(Committee(), [labelled])


def hot_frames():
    """EMT frames the 300 K committee never saw: hotter MD, rattled and strained cells, all labelled."""
    images = emt_frames(temperature=900.0, walkers=2, per_walker=6).to_atoms()
    rng = np.random.default_rng(11)
    for amplitude in (0.02, 0.05, 0.1, 0.15):
        for strain in (0.97, 1.0, 1.03):
            atoms = aluminium()
            atoms.set_cell(atoms.cell * strain, scale_atoms=True)
            atoms.positions += rng.normal(0.0, amplitude, atoms.positions.shape)
            atoms.calc = EMT()
            forces = atoms.get_forces()
            atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=forces)
            images.append(atoms)
    return images


def test_real_committee_deviation_ranks_and_calibrates_its_errors(al_committee, tmp_path):
    calculator = load_calculator(al_committee["model"], device="cpu", spread_every=1)
    images = hot_frames()
    reference = [image.get_forces().copy() for image in images]
    pairs = calibration_pairs(calculator, images)

    assert len(pairs) == 24
    assert set(pairs.symbols) == {"Al"}
    assert np.all(pairs.predicted > 0) and np.all(pairs.observed > 0)
    for image, forces in zip(images, reference, strict=True):  # frames untouched
        np.testing.assert_array_equal(image.get_forces(), forces)
    # observed is the max per-atom error of the committee mean force, recomputed independently
    atoms = images[-1].copy()
    atoms.calc = calculator
    error = np.linalg.norm(atoms.get_forces() - reference[-1], axis=1).max()
    assert pairs.observed[-1] == pytest.approx(error, rel=1e-6)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibration = fit_calibration(pairs)
    print(
        f"factor {calibration.factor:.2f}, exponent {calibration.exponent:.2f}, Spearman {calibration.spearman:.2f}, "
        f"within x2 {calibration.within_factor_2:.2f}, log spread {calibration.log_spread:.2f}"
    )
    assert not calibration.fallback
    assert calibration.spearman > 0.5  # the deviation ranks the errors
    assert 0.2 < calibration.factor < 5.0  # the same order as the raw deviation, but not equal to it
    assert calibration.factor != pytest.approx(1.0, abs=0.05)
    median_ratio = np.median(pairs.observed / calibration.predict(pairs.predicted))
    assert median_ratio == pytest.approx(1.0, rel=0.01)  # half above, half below (even count: mid-pair)
    assert calibration.within_factor_2 >= 0.6

    lo, hi = calibration.window_for(0.1)
    assert hi == pytest.approx(5 * lo)
    assert math.isclose(calibration.predict(lo), 0.1)

    path = plot_reliability(pairs, calibration, tmp_path / "reliability.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
