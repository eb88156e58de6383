"""MaxVol active sets, the extrapolation grade and greedy D-optimal batches."""

import numpy as np
import pytest

from aiida_mlip.selection.greedy_batch import greedy_batch
from aiida_mlip.selection.maxvol import (
    ActiveSet,
    RankDeficientWarning,
    extrapolation_grade,
    maxvol,
)


def planted_matrix(n=600, m=16, seed=0):
    """Rows ``c P`` with ``|c| <= 0.95`` around a planted well-conditioned ``P``, shuffled.

    By Hadamard's inequality ``|det C_S| <= prod |c_i| < 1`` for every other choice of rows, so
    ``P`` has the largest volume of all ``m``-row subsets.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(m, m)))
    planted = q * rng.uniform(1.0, 3.0, size=m)[:, None] @ np.linalg.qr(rng.normal(size=(m, m)))[0]
    directions = rng.normal(size=(n - m, m))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    coefficients = directions * rng.uniform(0.5, 0.95, size=(n - m, 1))
    matrix = np.vstack([coefficients @ planted, planted])
    order = rng.permutation(n)
    planted_rows = np.argsort(order)[n - m :]
    return matrix[order], planted, planted_rows


@pytest.mark.parametrize(("n", "m", "seed"), [(600, 16, 0), (600, 16, 1), (600, 16, 2), (20_000, 64, 4)])
def test_maxvol_finds_planted_volume(n, m, seed):
    """(20000, 64, 4) is a case where the LU start of Goreinov et al. stops at 1e-9 of the volume."""
    matrix, planted, _ = planted_matrix(n=n, m=m, seed=seed)
    result = maxvol(matrix, tol=1e-3)
    found = abs(np.linalg.det(matrix[result.indices]))
    best = abs(np.linalg.det(planted))
    ratio = found / best
    print(f"seed {seed}: |det found| / |det planted| = {ratio:.6f} after {result.n_swaps} swaps")
    assert ratio == pytest.approx(1.0, rel=1e-2)
    assert len(set(result.indices.tolist())) == m
    assert result.grades.max() <= 1 + 1e-3


def test_block_exchanges_from_a_poor_start_end_dominant():
    """From the first rows as start, exchanging a few rows between full products still converges."""
    from aiida_mlip.selection.maxvol import _exchange

    matrix, planted, _ = planted_matrix(n=400, m=12, seed=5)
    start = np.arange(12)
    active, grades, coefficients, swaps = _exchange(matrix, start, 1e-3, block=4, max_swaps=10_000)
    assert swaps > 0
    assert grades.max() <= 1 + 1e-3
    np.testing.assert_allclose(coefficients[active], np.eye(12), atol=1e-10)
    assert abs(np.linalg.det(matrix[active])) > abs(np.linalg.det(matrix[start]))


def test_copies_of_one_environment_do_not_hide_the_others():
    """500 near-copies of the largest row (a perfect lattice's atoms) fill the greedy start's pool:
    the copies' zero residuals used to end the search as "rank-deficient" (ValueError)."""
    rng = np.random.default_rng(0)
    m = 20
    copies = np.repeat(10 * rng.normal(size=(1, m)), 500, axis=0) + 1e-12 * rng.normal(size=(500, m))
    matrix = np.vstack([copies, rng.normal(size=(m, m))])
    chosen = maxvol(matrix, tol=0.01).indices
    assert len(chosen) == m and (chosen < 500).sum() == 1  # one copy, every other environment
    assert np.abs(np.linalg.solve(matrix[chosen].T, matrix.T)).max() <= 1.01 + 1e-9


def test_grade_of_training_rows_and_new_rows():
    tol = 1e-3
    matrix, planted, _ = planted_matrix(seed=3)
    result = maxvol(matrix, tol=tol)
    inverse = np.linalg.inv(matrix[result.indices])
    grades = extrapolation_grade(matrix, inverse)
    assert grades.max() <= 1 + tol
    np.testing.assert_allclose(grades, result.grades, rtol=1e-9, atol=1e-12)
    outside = 1.5 * planted[0] + 0.5 * planted[1]
    gamma_out = extrapolation_grade(outside, inverse)[0]
    print(f"max gamma of training rows {grades.max():.6f}; gamma of a new row outside {gamma_out:.3f}")
    assert gamma_out > 1.0


def test_maxvol_refuses_bad_input():
    with pytest.raises(ValueError, match="at least as many rows"):
        maxvol(np.ones((3, 5)))
    with pytest.raises(ValueError, match="rank-deficient"):
        maxvol(np.outer(np.arange(1, 21), np.ones(4)))
    with pytest.raises(ValueError, match="NaN"):
        maxvol(np.full((6, 2), np.nan))


def three_element_rows(m=10, seed=0):
    """Rows of Al (many), Cu (many) and O (2 atoms only) over 30 frames."""
    rng = np.random.default_rng(seed)
    numbers, frames, rows = [], [], []
    for frame in range(30):
        for number, count in ((13, 6), (29, 4)):
            numbers += [number] * count
            frames += [frame] * count
            rows.append(rng.normal(size=(count, m)) + (number == 29))
    numbers += [8, 8]
    frames += [0, 1]
    rows.append(rng.normal(size=(2, m)))
    return np.vstack(rows), np.array(numbers), np.array(frames)


def test_per_element_active_set_with_a_rare_element(tmp_path):
    features, numbers, frames = three_element_rows()
    with pytest.warns(RankDeficientWarning, match="O: 2 environments of rank 2 < 10"):
        active = ActiveSet.build(features, numbers, frame_index=frames)
    assert sorted(active.elements) == [8, 13, 29]
    assert active.elements[8].n_virtual == 8 and active.elements[13].n_virtual == 0
    grades = active.grade(features, numbers)
    assert grades.max() <= 1 + 1e-3
    oxygen = features[numbers == 8]
    inside = active.grade(0.5 * oxygen[:1] + 0.25 * oxygen[1:], [8])[0]
    outside = active.grade(oxygen[:1] + np.random.default_rng(1).normal(size=(1, 10)), [8])[0]
    assert inside <= 1.0 and outside > 1.0
    assert active.grade(features[:1], [26])[0] == np.inf  # an element never seen
    path = tmp_path / "active_set.npz"
    active.save(path)
    loaded = ActiveSet.load(path)
    np.testing.assert_allclose(loaded.grade(features, numbers), grades)
    assert loaded.notes == active.notes


def test_active_set_from_no_rows_of_full_rank_is_all_virtual():
    with pytest.warns(RankDeficientWarning):
        active = ActiveSet.build(np.zeros((3, 4)), [1, 1, 1])
    assert active.elements[1].n_virtual == 4


def test_greedy_batch_budget_no_repeats_and_volume_grows():
    features, numbers, frames = three_element_rows(seed=4)
    train = frames < 10
    with pytest.warns(RankDeficientWarning):
        active = ActiveSet.build(features[train], numbers[train], frame_index=frames[train])
    pool = ~train
    before = active.log_volume()
    batch = greedy_batch(active, features[pool], numbers[pool], frames[pool] - 10, budget=5)
    assert len(batch.frames) == 5 and len(set(batch.frames.tolist())) == 5
    assert np.all(batch.grades > 1.0)
    after = batch.active_set.log_volume()
    assert all(after[z] >= before[z] - 1e-9 for z in before)
    assert sum(after.values()) - sum(before.values()) == pytest.approx(batch.log_volume_gain.sum(), rel=1e-6)
    # the updated grades agree with a fresh computation against the new active set
    picked = np.isin(frames[pool] - 10, batch.frames)
    fresh = batch.active_set.grade(features[pool][picked], numbers[pool][picked])
    assert fresh.max() <= 1 + 1e-3


def test_greedy_batch_stops_when_nothing_extrapolates():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5))
    numbers = np.full(200, 14)
    frames = np.repeat(np.arange(40), 5)
    active = ActiveSet.build(features, numbers)
    batch = greedy_batch(active, features, numbers, frames, budget=10)
    assert len(batch.frames) == 0 and batch.stop_reason == "no frame extrapolates"
