"""Committee deviations and the trust window."""

import numpy as np
import pytest

from aiida_mlip.selection.deviation import (
    energy_deviation,
    force_deviation,
    frame_force_deviation,
    relative_force_deviation,
    virial_deviation,
)
from aiida_mlip.selection.trust import TrustWindow, accurate_fraction, classify, count_classes
from aiida_mlip.settings import SettingsError


def test_force_deviation_by_hand():
    # two members, one atom: forces (1,0,0) and (-1,0,0); mean 0, each 1 away -> eps = 1
    forces = np.array([[[1.0, 0, 0], [0, 0, 0]], [[-1.0, 0, 0], [0, 0, 0]]])
    np.testing.assert_allclose(force_deviation(forces), [1.0, 0.0])
    assert frame_force_deviation(forces) == pytest.approx(1.0)
    np.testing.assert_allclose(relative_force_deviation(forces, level=0.5), [2.0, 0.0])


def test_force_deviation_matches_definition():
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(5, 7, 3))
    expected = np.sqrt(np.mean([np.sum((forces[k] - forces.mean(0)) ** 2, axis=1) for k in range(5)], axis=0))
    np.testing.assert_allclose(force_deviation(forces), expected)


def test_energy_and_virial_deviation():
    assert energy_deviation([1.0, 3.0]) == pytest.approx(1.0)
    assert energy_deviation([1.0, 3.0], natoms=4) == pytest.approx(0.25)
    virials = np.zeros((2, 3, 3))
    virials[0, 0, 1], virials[1, 0, 1] = 2.0, -2.0
    assert virial_deviation(virials) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least 2 members"):
        force_deviation(np.zeros((1, 3, 3)))


def test_trust_window_classes_and_counts():
    window = TrustWindow(lo=0.1, hi=0.3)
    classes = window.classify([0.05, 0.1, 0.2, 0.3, 0.9, np.nan])
    assert classes.tolist() == [0, 1, 1, 2, 2, 2]
    counts = count_classes(classes)
    assert counts == {"accurate": 1, "candidate": 2, "failed": 3}
    assert accurate_fraction(counts) == pytest.approx(1 / 6)
    # gamma makes a frame worse, never better
    both = classify(
        np.array([0.05, 0.05, 0.2]), window, np.array([0.5, 3.0, 0.5]), TrustWindow(lo=1.0, hi=2.0)
    )
    assert both.tolist() == [0, 2, 1]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lo": 0.3, "hi": 0.1}, r"`trust`: the trust window needs lo < hi, got lo=0.3, hi=0.1"),
        ({"lo": 0.2, "hi": 0.2}, r"`trust`: the trust window needs lo < hi, got lo=0.2, hi=0.2"),
        ({"lo": -0.1, "hi": 0.2}, r"`trust.lo`: Input should be greater than or equal to 0"),
        ({"lo": 0.1, "hi": np.inf}, r"`trust.hi`: Input should be a finite number"),
        ({"target_force_error": 0.0}, r"`trust.target_force_error`: Input should be greater than 0"),
        ({"low": 0.1}, r"unknown key `trust.low`; did you mean `lo`\?"),
    ],
)
def test_trust_window_refuses_bad_bounds(values, message):
    with pytest.raises(SettingsError, match=message):
        TrustWindow.from_mapping(values)
    if "unknown key" not in message:  # direct construction: pydantic's own message, same text
        with pytest.raises(ValueError, match=message.split(": ")[-1]):
            TrustWindow(**values)


def test_trust_window_defaults_and_target_error():
    window = TrustWindow.from_mapping({"target_force_error": 0.1})
    assert (window.lo, window.hi, window.target_force_error) == (0.15, 1.0, 0.1)
