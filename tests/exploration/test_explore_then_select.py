"""One active-learning step without AiiDA: explore with the real committee, then select among the candidates."""

import numpy as np

from aiida_mlip.exploration import ExploreParameters, explore
from aiida_mlip.exploration.records import frames_of
from aiida_mlip.potentials import load_calculator
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.selection.batch import pool_scores, select_batch
from aiida_mlip.selection.settings import SelectionSettings
from aiida_mlip.selection.trust import TrustWindow

from .al_committee import aluminium


def test_candidates_of_a_ramp_feed_the_hybrid_selection(al_committee):
    calculator = load_calculator(al_committee["model"], device="cpu", spread_every=1)
    parameters = ExploreParameters(
        temperature=[300, 1500],
        steps=200,
        timestep=2.0,
        check_interval=5,
        trust=TrustWindow(lo=0.05, hi=0.5),
        walkers=2,
        seed=7,
    )
    result = explore([aluminium()], calculator, parameters)
    candidates = frames_of([atoms for walker in result.walkers for atoms, _ in walker.candidates])
    assert len(candidates) >= 3

    images = candidates.to_atoms()
    scores = pool_scores(images, None, calculator)
    recorded = [check.max_force_deviation for walker in result.walkers for _, check in walker.candidates]
    np.testing.assert_allclose(scores["max_force_deviation"], recorded, rtol=1e-4, atol=1e-5)

    budget = 2
    selection = select_batch(
        images,
        SelectionSettings(strategy="hybrid", budget=budget),
        TrustWindow(lo=0.05, hi=0.5),
        calculator=calculator,
        training=Frames.read_hdf5(al_committee["training"]).to_atoms(),
    )
    assert len(selection.indices) == min(budget, selection.info["eligible"])
    assert len(set(selection.indices.tolist())) == len(selection.indices)
    assert sum(selection.info["origin"].values()) == len(selection.indices)
    assert selection.active_set is not None
    print(
        f"{len(candidates)} candidates, picked {selection.indices.tolist()}: {selection.info['stop_reason']}, "
        f"origin {selection.info['origin']}, D-optimal {selection.info['d_optimal_selected']}"
    )
