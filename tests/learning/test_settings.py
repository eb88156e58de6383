"""One model of the whole run's settings: typos refused with the nearest key, before anything runs."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlip.learning.settings import ActiveLearningSettings
from aiida_mlip.settings import SettingsError
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

TYPOS = [
    ({"trsut": {"lo": 0.1}}, "unknown key `trsut`; did you mean `trust`?"),
    ({"trust": {"low": 0.1}}, "unknown key `trust.low`; did you mean `lo`?"),
    (
        {"convergence": {"max_iteration": 3}},
        "unknown key `convergence.max_iteration`; did you mean `max_iterations`?",
    ),
    ({"selection": {"budgt": 3}}, "unknown key `selection.budgt`; did you mean `budget`?"),
    (
        {"initial": {"copies_per_structur": 2}},
        "unknown key `initial.copies_per_structur`; did you mean `copies_per_structure`?",
    ),
    ({"training": {"hiden": 8}}, "unknown key `training.hiden`; did you mean `hidden`?"),
    ({"exploration": {"md": {"stpes": 10}}}, "unknown key `exploration.md.stpes`; did you mean `steps`?"),
    (
        {"exploration": {"schedule": [{"temperatures": [300], "tmestep": 1.0}]}},
        "unknown key `exploration.schedule.0.tmestep`; did you mean `timestep`?",
    ),
    ({"exploration": {"shedule": []}}, "unknown key `exploration.shedule`; did you mean `schedule`?"),
    ({"warm_start_parameters": {"lrr": 1e-3}}, "unknown key `warm_start_parameters.lrr`; did you mean `lr`?"),
    ({"warm_start": "yes"}, "`warm_start`: Input should be a valid boolean"),
    ({"exploration": {"schedule": []}}, "the exploration schedule is empty"),
    (
        {"exploration": {"schedule": [{"pressures": [1.0]}]}},
        "exploration schedule entry 0 has no temperatures",
    ),
    (
        {"exploration": {"schedule": [{"temperatures": [300]}, {"temperatures": [-10]}]}},
        "exploration schedule entry 1: .*temperature must be non-negative",
    ),
    (
        {"exploration": {"schedule": [{"temperatures": [300], "pressures": [1.0]}]}},
        "exploration schedule entry 0: .*pressure is only used by ensemble npt",
    ),
]


@pytest.mark.parametrize("protocol", ["fast", "balanced", "precise"])
def test_every_protocol_is_valid_settings(protocol):
    """The shipped protocols pass the schema."""
    inputs = ActiveLearningWorkChain.get_protocol_inputs(protocol)
    settings = ActiveLearningSettings.from_mapping(inputs)
    assert settings.trust.lo < settings.trust.hi and settings.selection.budget >= 1
    assert settings.exploration.schedule[0].temperatures


@pytest.mark.parametrize(("overrides", "message"), TYPOS)
def test_typos_and_bad_values_are_refused_when_the_overrides_are_merged(overrides, message):
    with pytest.raises(SettingsError, match=message.replace("?", r"\?")):
        ActiveLearningWorkChain.get_protocol_inputs("fast", overrides)


@pytest.mark.parametrize("overrides", [[1, 2], 3, "trust"])
def test_overrides_that_are_not_a_mapping_are_refused(overrides):
    with pytest.raises(
        SettingsError, match=f"the overrides must be a mapping .*got a {type(overrides).__name__}"
    ):
        ActiveLearningWorkChain.get_protocol_inputs("fast", overrides)
    with pytest.raises(SettingsError, match="the settings must be a mapping of blocks"):
        ActiveLearningSettings.from_mapping(overrides)


@pytest.mark.parametrize(
    ("block", "values", "message"),
    [
        ("trust", {"lo": 0.1, "hi": 1.0, "low": 0.2}, "unknown key `trust.low`; did you mean `lo`?"),
        (
            "selection",
            {"strategy": "hybrid", "budgt": 3},
            "unknown key `selection.budgt`; did you mean `budget`?",
        ),
        ("convergence", {"max_iteration": 2}, "unknown key `convergence.max_iteration`"),
    ],
)
def test_the_work_chain_validator_uses_the_same_model(engine_code, block, values, message):
    """Inputs set on the builder directly (no protocol) meet the same checks at submission."""
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True)],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        codes={key: engine_code(key) for key in ("mlip.train", "mlip.explore", "mlip.select", "mlip.label")},
        protocol="fast",
    )
    setattr(builder, block, orm.Dict(values))
    before = orm.QueryBuilder().append(orm.Node).count()
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.Node).count() == before


def test_npt_schedule_with_pressures_is_accepted():
    overrides = {
        "exploration": {
            "md": {"ensemble": "npt"},
            "schedule": [{"temperatures": [300], "pressures": [0.0, 2.0]}],
        }
    }
    inputs = ActiveLearningWorkChain.get_protocol_inputs("fast", overrides)
    assert ActiveLearningSettings.from_mapping(inputs).exploration.schedule[0].pressures == [0.0, 2.0]


@pytest.mark.parametrize(
    ("exploration", "message"),
    [
        ({"generate": {"surfaces": {"thickness": 3.0}}}, "thickness`: 3.0 A is under the committee's cutoff"),
        ({"generate": {"surfaces": {"vacuum": 4.0}}}, "vacuum`: 4.0 A is under the committee's cutoff"),
        ({"generate": {"vacancy": {}}}, "did you mean `vacancies`"),
        ({"md": {"bias": {"strength": -0.5}}}, "bias strength must be zero or positive"),
        ({"md": {"ensemble": "nve", "path_integral": {"beads": 8}}}, "path_integral walkers run nvt"),
    ],
)
def test_generation_and_bias_are_checked_in_both_loops(exploration, message):
    """The work chain's settings and the AiiDA-free loop's refuse the same bad blocks (cutoff 5 A)."""
    from aiida_mlip.learning.loop import LoopSettings

    values = {
        "exploration": {"schedule": [{"temperatures": [300]}], **exploration},
        "training": {"cutoff": 5.0},
    }
    for model in (ActiveLearningSettings, LoopSettings):
        with pytest.raises(SettingsError, match=message):
            model.from_mapping(values)
