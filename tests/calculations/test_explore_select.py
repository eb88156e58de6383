"""``ExploreCalculation`` and ``SelectCalculation`` run their executables for real on localhost."""

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlip.calculations.explore import ExploreCalculation
from aiida_mlip.calculations.select import SelectCalculation
from aiida_mlip.data.structures import StructureSetData

MD = {
    "ensemble": "nvt",
    "temperature": [300, 1500],
    "steps": 60,
    "timestep": 2.0,
    "check_interval": 5,
    "trust": {"lo": 0.0, "hi": 50.0},
    "walkers": 2,
}


@pytest.fixture
def start():
    return StructureSetData.from_atoms([bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))]).store()


def explore(engine_code, potential, structures, parameters, **extra):
    builder = ExploreCalculation.get_builder()
    builder.code = engine_code("mlip.explore")
    builder.potential = potential
    builder.structures = structures
    builder.parameters = orm.Dict(parameters)
    for key, value in extra.items():
        setattr(builder, key, value)
    return run_get_node(builder)


def test_explore_then_select(engine_code, tiny_potential, start, aluminium_dataset):
    results, node = explore(engine_code, tiny_potential, start, MD, training_set=aluminium_dataset)
    assert node.is_finished_ok, node.exit_message
    summary = results["summary"].get_dict()
    assert sum(summary["counts"].values()) == len(results["frames"].get_array("step"))
    assert summary["counts"]["candidate"] > 0  # trust window [0, 50) eV/A: every checked frame is a candidate
    candidates = results["candidates"]
    assert candidates.n_frames == summary["candidates"]
    scores = candidates.get_scores()
    assert len(scores["max_force_deviation"]) == candidates.n_frames

    builder = SelectCalculation.get_builder()
    builder.code = engine_code("mlip.select")
    builder.pool = candidates
    builder.potential = tiny_potential
    builder.training_set = aluminium_dataset
    builder.parameters = orm.Dict({"strategy": "hybrid", "budget": 3, "trust": {"lo": 0.0, "hi": 50.0}})
    selected, select_node = run_get_node(builder)
    assert select_node.is_finished_ok, select_node.exit_message
    picks = selected["selection"].get_dict()
    assert selected["selected"].n_frames == min(3, picks["info"]["eligible"]) >= 1
    assert len(picks["selected"]) == selected["selected"].n_frames
    assert sum(picks["info"]["origin"].values()) == len(picks["selected"])
    assert picks["trust"]["lo"] == 0.0 and picks["trust"]["hi"] == 50.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": -5}, "temperature must be non-negative"),
        ({"trust": {"lo": 0.3, "hi": 0.1}}, "the trust window needs lo < hi"),
        ({"ensemble": "nvx"}, "unknown ensemble"),
    ],
)
def test_bad_md_parameters_are_refused(engine_code, tiny_potential, start, change, message):
    with pytest.raises(ValueError, match=message):
        explore(engine_code, tiny_potential, start, dict(MD, **change))


def test_unknown_elements_are_refused(engine_code, tiny_potential):
    copper = StructureSetData.from_atoms([bulk("Cu", cubic=True)]).store()
    with pytest.raises(ValueError, match=r"elements \['Cu'\] that the potential"):
        explore(engine_code, tiny_potential, copper, MD)


def test_bad_selection_parameters_are_refused(engine_code, tiny_potential, start):
    builder = SelectCalculation.get_builder()
    with pytest.raises(ValueError, match="`selection.strategy`: unknown strategy 'best'"):
        builder.parameters = orm.Dict({"strategy": "best", "budget": 2})
    with pytest.raises(ValueError, match=r"`selection.trust`: the trust window needs lo < hi"):
        builder.parameters = orm.Dict({"budget": 2, "trust": {"lo": 0.5, "hi": 0.1}})
    with pytest.raises(ValueError, match=r"`selection.budget`: Input should be greater than or equal to 1"):
        builder.parameters = orm.Dict({"budget": 0})
    with pytest.raises(ValueError, match=r"unknown key `selection.lo`"):
        builder.parameters = orm.Dict({"budget": 2, "lo": 0.1})
