"""Every strategy: same signature, budget respected, no repeats, no near-duplicates."""

import warnings

import numpy as np
import pytest

from aiida_mlip.selection import STRATEGIES, ActiveSet, SelectionPool
from aiida_mlip.selection.farthest_point import farthest_point_sampling
from aiida_mlip.selection.leverage import LeverageModel
from aiida_mlip.selection.maxvol import RankDeficientWarning
from aiida_mlip.selection.settings import SelectionSettings, SelectParameters
from aiida_mlip.selection.strategies import STRATEGY_OPTIONS
from aiida_mlip.selection.trust import TrustWindow
from aiida_mlip.settings import SettingsError


def make_pool(n_frames=40, m=8, seed=0, duplicate_of=None):
    """Frames of 4 Al + 2 Ni atoms, frames 0..4 also hold one O atom; optional exact copies."""
    rng = np.random.default_rng(seed)
    features, numbers, frames = [], [], []
    for frame in range(n_frames):
        block = [(13, 4), (28, 2)] + ([(8, 1)] if frame < 5 else [])
        for number, count in block:
            features.append(rng.normal(size=(count, m)) * (1 + frame / n_frames))
            numbers += [number] * count
            frames += [frame] * count
    features, numbers, frames = np.vstack(features), np.array(numbers), np.array(frames)
    if duplicate_of is not None:
        for copy_index, original in enumerate(duplicate_of):
            rows = frames == original
            features = np.vstack([features, features[rows][::-1]])  # same atoms, another order
            numbers = np.concatenate([numbers, numbers[rows][::-1]])
            frames = np.concatenate([frames, np.full(rows.sum(), n_frames + copy_index)])
    n_total = frames.max() + 1
    deviation = np.linspace(0.0, 0.6, n_total)
    if duplicate_of is not None:
        deviation[n_frames:] = deviation[list(duplicate_of)]
    return SelectionPool(
        n_frames=n_total,
        scores={"max_force_deviation": deviation},
        features=features,
        numbers=numbers,
        row_frame=frames,
    )


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("budget", [0, 3, 12])
def test_every_strategy_respects_budget_and_never_repeats(name, budget):
    pool = make_pool(duplicate_of=[30, 31, 32, 33, 34, 35, 36, 37, 38, 39])
    result = STRATEGIES[name](pool, budget, rng=1)
    indices = result.indices.tolist()
    # 50 frames, 40 distinct: every strategy fills a budget this small (an empty selection fails)
    assert len(indices) == budget
    assert result.info["stop_reason"] == "budget"
    assert len(set(indices)) == len(indices)
    assert len(result.scores) == len(indices)
    assert result.info["strategy"] == name
    # never both a frame and its copy (40 + i is a copy of 30 + i)
    for i in range(10):
        assert not (30 + i in indices and 40 + i in indices), (name, indices)


def test_hybrid_picks_only_candidates_and_fills_by_deviation():
    pool = make_pool()
    result = STRATEGIES["hybrid"](pool, 10, window=TrustWindow(lo=0.1, hi=0.4))
    deviation = pool.scores["max_force_deviation"]
    assert np.all((deviation[result.indices] >= 0.1) & (deviation[result.indices] < 0.4))
    assert result.info["counts"]["candidate"] == int(((deviation >= 0.1) & (deviation < 0.4)).sum())
    assert len(result.indices) == 10
    assert result.info["origin"] == {"in_window": 10, "top_up_above_hi": 0}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_pool_mostly_above_hi_still_fills_the_budget(name):
    """4 frames in the window, 30 above hi, 6 below lo: the window first, then the lowest above hi."""
    pool = make_pool()
    deviation = np.concatenate([np.full(6, 0.01), np.linspace(0.1, 0.3, 4), np.linspace(0.6, 2.0, 30)])
    pool.scores["max_force_deviation"] = deviation
    window = TrustWindow(lo=0.05, hi=0.5)
    result = STRATEGIES[name](pool, 10, rng=0, window=window)
    indices = result.indices.tolist()
    assert len(indices) == 10 and len(set(indices)) == 10
    assert result.info["origin"] == {"in_window": 4, "top_up_above_hi": 6}, result.info
    assert result.info["stop_reason"] == "budget"
    assert set(indices[:4]) == {6, 7, 8, 9}  # the window first
    assert indices[4:] == list(range(10, 16))  # then the lowest deviations above hi, in order
    assert not set(indices) & set(range(6))  # accurate frames are never labelled


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_fewer_eligible_frames_than_the_budget_gives_all_of_them(name):
    pool = make_pool()
    deviation = np.full(pool.n_frames, 0.01)
    deviation[[3, 11, 20]] = [0.2, 0.3, 0.9]  # two in the window, one above hi, the rest accurate
    deviation[25] = np.nan  # no score: never picked
    pool.scores["max_force_deviation"] = deviation
    result = STRATEGIES[name](pool, 8, rng=0, window=TrustWindow(lo=0.05, hi=0.5))
    assert sorted(result.indices.tolist()) == [3, 11, 20]
    assert result.info["stop_reason"] == "pool exhausted"
    assert result.info["origin"] == {"in_window": 2, "top_up_above_hi": 1}
    no_top_up = STRATEGIES[name](pool, 8, rng=0, window=TrustWindow(lo=0.05, hi=0.5), top_up=False)
    assert sorted(no_top_up.indices.tolist()) == [3, 11]
    assert no_top_up.info["origin"] == {"in_window": 2}


def test_unknown_or_ignored_options_are_errors_not_type_errors():
    pool = make_pool()
    with pytest.raises(ValueError, match=r"strategy 'random' takes no option 'tol'"):
        STRATEGIES["random"](pool, 2, tol=0.1)
    with pytest.raises(ValueError, match=r"takes no option 'duplicate_tl'; did you mean `duplicate_tol`\?"):
        STRATEGIES["max_deviation"](pool, 2, duplicate_tl=0.1)
    with pytest.raises(SettingsError, match=r"strategy 'random' ignores option\(s\) kind, tol"):
        SelectionSettings.from_mapping({"strategy": "random", "tol": 0.01, "kind": "leverage"})
    with pytest.raises(
        SettingsError, match=r"`selection.budget`: Input should be greater than or equal to 1"
    ):
        SelectionSettings.from_mapping({"budget": 0})
    with pytest.raises(SettingsError, match=r"unknown strategy 'hybird'; did you mean `hybrid`\?"):
        SelectionSettings.from_mapping({"strategy": "hybird"})
    with pytest.raises(SettingsError, match=r"strategy 'hybrid' selects inside the trust window"):
        SelectionSettings.from_mapping({"strategy": "hybrid", "windowed": False})
    with pytest.raises(SettingsError, match=r"option top_up applies only with windowed: true"):
        SelectionSettings.from_mapping({"top_up": False})
    assert SelectionSettings.from_mapping({"strategy": "hybrid"}).windowed
    assert not SelectionSettings.from_mapping({}).windowed
    with pytest.raises(SettingsError, match=r"`selection.trust`: the trust window needs lo < hi"):
        SelectParameters.from_mapping({"trust": {"lo": 0.5, "hi": 0.1}})
    # every strategy function takes exactly the options the settings give it
    for name, function in STRATEGIES.items():
        settings = SelectionSettings(strategy=name)
        assert set(settings.strategy_options()) == set(STRATEGY_OPTIONS[name])
        assert set(STRATEGY_OPTIONS[name]) <= set(function.accepted_options), name


def test_d_optimal_with_a_training_active_set_and_a_rare_element():
    pool = make_pool(seed=3)
    training = make_pool(seed=4)
    only_two_oxygen = ~((training.numbers == 8) & (training.row_frame >= 2))
    with pytest.warns(RankDeficientWarning, match="O: 2 environments"):
        active = ActiveSet.build(training.features[only_two_oxygen], training.numbers[only_two_oxygen])
    result = STRATEGIES["d_optimal"](pool, 6, active_set=active)
    assert 0 < len(result.indices) <= 6
    assert np.all(result.scores > 1.0)
    assert any("O: 2 environments" in note for note in result.info["notes"])
    # the frames with a (barely known) oxygen atom extrapolate most and come first
    assert set(result.indices[:3].tolist()) <= {0, 1, 2, 3, 4}


def test_exclusion_and_reference_fingerprints():
    pool = make_pool()
    pool.exclude[:20] = True
    result = STRATEGIES["max_deviation"](pool, 40)
    assert result.indices.min() >= 20
    reference = pool.frame_fingerprints()[[39, 38]]
    result = STRATEGIES["max_deviation"](pool, 5, reference_fingerprints=reference)
    assert 39 not in result.indices and 38 not in result.indices
    assert sorted(result.info["skipped_duplicates"]) == [38, 39]


def test_strategies_need_what_they_use():
    pool = SelectionPool(n_frames=3, scores={"max_force_deviation": [0.1, 0.2, 0.3]})
    assert STRATEGIES["max_deviation"](pool, 2).indices.tolist() == [2, 1]
    assert len(STRATEGIES["random"](pool, 2, rng=0).indices) == 2
    for name in ("d_optimal", "hybrid", "leverage", "farthest_point"):
        with pytest.raises(ValueError, match="features"):
            STRATEGIES[name](pool, 2)
    with pytest.raises(ValueError, match="budget"):
        STRATEGIES["random"](pool, -1)


def test_leverage_and_mahalanobis_grow_away_from_training():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 4))
    model = LeverageModel.fit(train, np.ones(500, dtype=int))
    near, far = np.zeros((1, 4)), np.full((1, 4), 5.0)
    assert model.mahalanobis(far, [1])[0] > 5 * model.mahalanobis(near + 0.1, [1])[0]
    assert model.leverage(far, [1])[0] > model.leverage(near + 0.1, [1])[0]
    assert model.mahalanobis(near, [2])[0] == np.inf
    # a rank-deficient element is regularised, not singular
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rare = LeverageModel.fit(train[:2], [8, 8])
    assert np.isfinite(rare.mahalanobis(train[:1], [8])).all()


def test_farthest_point_sampling_spreads():
    points = np.array([[0.0], [0.1], [5.0], [10.0], [9.9]])
    indices, distances = farthest_point_sampling(points, 3, start=0)
    assert indices.tolist() == [0, 3, 2]
    assert distances[1] == pytest.approx(10.0) and distances[2] == pytest.approx(5.0)
