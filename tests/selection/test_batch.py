"""One selection step from configurations: scores, physical checks, the window and the top-up."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from aiida_mlip.selection.batch import pool_scores, select_batch, unphysical_frames
from aiida_mlip.selection.features import stack_features
from aiida_mlip.selection.settings import SelectionSettings
from aiida_mlip.selection.trust import TrustWindow


class PlantedCommittee(Calculator):
    """Zero forces; the committee deviation (eV/Angstrom) is planted in ``atoms.info["deviation"]``."""

    implemented_properties = ("energy", "forces")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {
            "energy": 0.0,
            "forces": np.zeros((len(self.atoms), 3)),
            "max_force_deviation": float(self.atoms.info["deviation"]),
        }

    def get_features(self, atoms, kind="hidden"):
        """Four features per atom from its position: distinct frames have distinct fingerprints."""
        x = atoms.positions
        return np.column_stack([np.sin(x), np.cos(x[:, :1] * 1.7)])


def frames(deviations, seed=0):
    rng = np.random.default_rng(seed)
    images = []
    for deviation in deviations:
        atoms = Atoms("Al4", positions=rng.uniform(0, 6, (4, 3)), cell=[6.0] * 3, pbc=True)
        atoms.positions[1] = atoms.positions[0] + [2.5, 0, 0]
        atoms.info["deviation"] = deviation
        images.append(atoms)
    return images


def test_stack_features_shapes():
    images = frames([0.1, 0.2, 0.3])
    features, numbers, row_frame = stack_features(PlantedCommittee(), images)
    assert features.shape == (12, 4) and numbers.tolist() == [13] * 12
    assert row_frame.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(ValueError, match="no configurations"):
        stack_features(PlantedCommittee(), [])


@pytest.mark.parametrize("strategy", ["hybrid", "d_optimal", "max_deviation", "random"])
def test_mostly_above_hi_fills_the_budget_and_skips_unphysical_frames(strategy):
    deviations = [0.01, 0.2, 0.3, 0.7, 0.8, 0.9, 1.5, 0.6, 0.65, 2.0]
    images = frames(deviations)
    images[7].positions[2] = images[7].positions[0] + [0.3, 0, 0]  # two atoms 0.3 A apart
    images[8].positions[3] = np.nan
    settings = SelectionSettings(strategy=strategy, budget=5, seed=0, windowed=True)
    outcome = select_batch(images, settings, TrustWindow(lo=0.05, hi=0.5), calculator=PlantedCommittee())
    picked = outcome.indices.tolist()
    assert len(picked) == 5 and 7 not in picked and 8 not in picked and 0 not in picked
    assert set(picked[:2]) == {1, 2}  # the window first
    assert picked[2:] == [3, 4, 5]  # then the lowest deviations above hi that pass the checks
    assert outcome.info["origin"] == {"in_window": 2, "top_up_above_hi": 3}
    assert outcome.info["ineligible"] == {"unphysical": 2}
    assert outcome.info["stop_reason"] == "budget"


def test_the_default_is_random_over_every_eligible_frame_alike():
    settings = SelectionSettings(budget=6)
    assert (settings.strategy, settings.windowed) == ("random", False)
    deviations = [0.01, 0.2, 0.3, 0.7, 0.8, 0.9, 1.5, 0.6, 0.65, 2.0]
    images = frames(deviations)
    images[7].positions[2] = images[7].positions[0] + [0.3, 0, 0]
    outcome = select_batch(images, settings, TrustWindow(lo=0.05, hi=0.5), calculator=PlantedCommittee())
    picked = outcome.indices.tolist()
    # frame 0 is accurate (below lo), frame 7 unphysical; the rest, inside or above the window, alike
    assert len(picked) == 6 and set(picked) <= {1, 2, 3, 4, 5, 6, 8, 9}
    assert outcome.info["origin"] == {"all": 6}
    assert outcome.info["ineligible"] == {"unphysical": 1, "accurate": 1}
    assert sorted(picked) != [1, 2, 3, 4, 5, 8]  # not the six lowest deviations: random, not windowed


def test_scores_are_computed_where_missing_and_exhaustion_is_reported():
    images = frames([0.2, 0.9, 0.01])
    given = {"max_force_deviation": np.array([0.2, np.nan, 0.01])}
    scores = pool_scores(images, given, PlantedCommittee())
    np.testing.assert_allclose(scores["max_force_deviation"], [0.2, 0.9, 0.01])
    outcome = select_batch(
        images,
        SelectionSettings(strategy="hybrid", budget=4),
        TrustWindow(),
        calculator=PlantedCommittee(),
        scores=given,
    )
    assert sorted(outcome.indices.tolist()) == [0, 1]
    assert outcome.info["stop_reason"] == "pool exhausted"
    assert unphysical_frames(images, 0.5).tolist() == [False, False, False]
