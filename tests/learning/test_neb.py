"""The NEB refinement's settings and judgement, without AiiDA."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_mlip.learning.neb import NebLearningSettings, judge_path
from aiida_mlip.properties.neb import NEBResult
from aiida_mlip.selection.trust import TrustWindow
from aiida_mlip.settings import SettingsError


def test_defaults_follow_the_trust_window():
    settings = NebLearningSettings.from_mapping({})
    assert settings.threshold == TrustWindow().lo == 0.15
    assert settings.max_rounds == 3 and settings.neb.images == 5 and settings.neb.climb


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"neb": {"images": 2}}, r"`neb.images`: a nudged elastic band needs at least 3 images .* got 2"),
        ({"treshold": 0.1}, "unknown key `treshold`; did you mean `threshold`?"),
        ({"neb": {"fmx": 0.1}}, "unknown key `neb.fmx`; did you mean `fmax`?"),
        ({"threshold": 0}, "`threshold`: Input should be greater than 0"),
        ({"max_rounds": -1}, "`max_rounds`: Input should be greater than or equal to 0"),
    ],
)
def test_bad_settings_are_refused_with_their_reason(values, message):
    with pytest.raises(SettingsError, match=message):
        NebLearningSettings.from_mapping(values)


def _path(deviation, member_energies):
    member_energies = np.asarray(member_energies, dtype=float)
    energies = member_energies.mean(axis=0)
    top = int(np.argmax(energies))
    return NEBResult(
        images=[],
        energies=energies,
        barrier=float(energies.max()),
        reverse_barrier=float(energies.max() - energies[-1]),
        converged=True,
        member_energies=member_energies,
        spread=member_energies.std(axis=0),
        barrier_spread=float(member_energies[:, top].std()),
        reverse_barrier_spread=float((member_energies[:, top] - member_energies[:, -1]).std()),
        force_deviation=np.asarray(deviation, dtype=float),
    )


def test_images_at_or_above_the_threshold_are_untrusted():
    path = _path([0.05, 0.15, 0.4, 0.1, 0.02], [[0, 0.2, 0.5, 0.2, 0.0], [0, 0.2, 0.3, 0.2, 0.1]])
    record = judge_path(path, 0.15)
    assert record["untrusted"] == [1, 2] and not record["trusted"]
    assert record["barrier"] == pytest.approx(0.4)  # eV, the committee mean's highest image
    assert record["barrier_spread"] == pytest.approx(0.1)  # members' barriers 0.5 and 0.3
    assert record["reverse_barrier"] == pytest.approx(0.35)
    assert record["reverse_barrier_spread"] == pytest.approx(0.15)  # members 0.5 and 0.2
    assert record["max_force_deviation"] == [0.05, 0.15, 0.4, 0.1, 0.02]
    assert judge_path(path, 0.5)["trusted"]


def test_a_path_without_a_committee_cannot_be_judged():
    path = _path([0.1, 0.1, 0.1], [[0, 1, 0], [0, 1, 0]])
    path.force_deviation = None
    with pytest.raises(ValueError, match="committee of at least two members"):
        judge_path(path, 0.15)


def test_a_path_that_blew_up_is_an_error():
    path = _path([0.1, np.nan, 0.1], [[0, 1, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="non-finite energies .* or force deviations"):
        judge_path(path, 0.15)
