"""The committee's errors on labelled frames: the validation split's calibration pairs."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_mlip.learning.calibration import calibration_pairs
from aiida_mlip.potentials.calculator import CommitteeCalculator
from aiida_mlip.potentials.evaluation import error_pairs, predict
from aiida_mlip.potentials.training_data import FrameSet


def test_error_pairs_are_the_calibration_pairs_of_the_committee(trained, al_test):
    """From the training's batched predictions, the same numbers as from the ASE calculator."""
    frames = al_test.subset(range(6))
    model = trained.model
    pairs = error_pairs(predict(model, FrameSet(frames, model)), frames)
    reference = calibration_pairs(CommitteeCalculator(model, device="cpu", dtype="float64"), frames)
    assert pairs["predicted"] == pytest.approx(
        reference.predicted.tolist(), rel=1e-4
    )  # float32 weights: batched vs one frame
    assert pairs["observed"] == pytest.approx(
        reference.observed.tolist(), rel=1e-4
    )  # float32 weights: batched vs one frame
    assert pairs["symbols"] == list(reference.symbols) == ["Al"] * 6


def test_training_records_one_pair_per_validation_frame(trained):
    pairs = trained.metrics["valid_pairs"]
    assert len(pairs["predicted"]) == len(pairs["observed"]) == trained.metrics["n_valid"] > 0
    assert np.all(np.asarray(pairs["predicted"]) > 0) and np.all(np.asarray(pairs["observed"]) > 0)
    # the largest per-frame error is at least the force RMSE of the committee mean on that split
    assert max(pairs["observed"]) >= trained.metrics["valid"]["mean"]["forces"]
