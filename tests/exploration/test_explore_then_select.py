"""One active-learning step without AiiDA: explore with the real committee, then select among the candidates."""

import numpy as np

from aiida_mlip.exploration import ExploreParameters, explore
from aiida_mlip.exploration.records import frames_of
from aiida_mlip.potentials import load_calculator
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.selection import STRATEGIES, ActiveSet, SelectionPool, pool_from_frames

from .al_committee import aluminium


def test_candidates_of_a_ramp_feed_the_hybrid_selection(al_committee):
    calculator = load_calculator(al_committee["model"], device="cpu", spread_every=1)
    parameters = ExploreParameters(
        temperature=[300, 1500],
        steps=200,
        timestep=2.0,
        check_interval=5,
        trust_lo=0.05,
        trust_hi=0.5,
        walkers=2,
        seed=7,
    )
    result = explore([aluminium()], calculator, parameters)
    candidates = frames_of([atoms for walker in result.walkers for atoms, _ in walker.candidates])
    assert len(candidates) >= 3

    pool = pool_from_frames(candidates, calculator)
    recorded = [check.max_force_deviation for walker in result.walkers for _, check in walker.candidates]
    np.testing.assert_allclose(pool.scores["max_force_deviation"], recorded, rtol=1e-4, atol=1e-5)

    training = Frames.read_hdf5(al_committee["training"]).to_atoms()
    features = np.concatenate([calculator.get_features(atoms) for atoms in training])
    numbers = np.concatenate([atoms.numbers for atoms in training])
    frame_of_row = np.concatenate([np.full(len(atoms), i) for i, atoms in enumerate(training)])
    active = ActiveSet.build(features, numbers, frame_index=frame_of_row)
    reference = SelectionPool(len(training), features=features, numbers=numbers, row_frame=frame_of_row)

    budget = 2
    selection = STRATEGIES["hybrid"](
        pool,
        budget,
        lo=0.05,
        hi=0.5,
        active_set=active,
        reference_fingerprints=reference.frame_fingerprints(),
    )
    assert 0 < len(selection.indices) <= budget
    assert len(set(selection.indices.tolist())) == len(selection.indices)
    print(
        f"{len(candidates)} candidates, picked {selection.indices.tolist()}: {selection.info['stop_reason']}, "
        f"D-optimal {selection.info['d_optimal_selected']}, by deviation {selection.info['filled_by_deviation']}"
    )
