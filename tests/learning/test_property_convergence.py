"""Property-level convergence: the settings refuse what cannot work, ``decide`` converges only when every quantity has settled."""

import numpy as np
import pytest
from ase.build import bulk

from aiida_mlip.history import property_fields
from aiida_mlip.learning.convergence import (
    CONTINUE,
    CONVERGED,
    MAX_ITERATIONS,
    NO_NEW_LABELS,
    ConvergenceSettings,
    decide,
)
from aiida_mlip.learning.property_convergence import (
    PropertyConvergenceSettings,
    judge_quantity,
    probes_due,
    property_probes,
)
from aiida_mlip.learning.settings import ActiveLearningSettings
from aiida_mlip.settings import SettingsError

QUANTITIES = {"eos.B0": {"change": 0.05, "spread": 0.10}, "phonons.X_3": {"change": 0.05, "spread": 0.10}}
SETTINGS = ConvergenceSettings.from_mapping(
    {"accurate_fraction": 0.9, "max_iterations": 5, "properties": {"quantities": QUANTITIES}}
)


def record(iteration, properties, accurate=95, candidate=5, labelled=3):
    """An iteration that meets the accurate fraction (0.95 >= 0.9) and labelled frames."""
    return {
        "iteration": iteration,
        "n_accurate": accurate,
        "n_candidate": candidate,
        "n_failed": 0,
        "n_labelled": labelled,
        "rmse_forces": 0.05,
        "properties": properties,
    }


def quantity(mean, std, previous):
    return {"mean": mean, "std": std, "previous": previous, "unit": "GPa"}


def test_first_iteration_never_converges_on_properties():
    """No earlier committee: no change, so not within tolerance however small the spread."""
    first = record(1, {"eos.B0": quantity(40.0, 0.1, None), "phonons.X_3": quantity(8.6, 0.01, None)})
    decision = decide(first, [], SETTINGS)
    assert (decision.converged, decision.stop, decision.criterion) == (False, False, CONTINUE)
    assert not decision.properties_met
    assert "properties not within tolerance" in decision.reason
    assert "eos.B0" in decision.reason and "no change yet" in decision.reason
    # the accurate fraction alone would have converged
    assert decide(first, [], {"accurate_fraction": 0.9}).converged


@pytest.mark.parametrize(
    ("b0", "x3", "missed"),
    [
        (quantity(40.0, 2.0, 41.0), quantity(8.6, 0.1, 8.5), ()),  # change 2.4%, 1.2%; spread 5%, 1.2%
        (quantity(40.0, 2.0, 45.0), quantity(8.6, 0.1, 8.5), ("eos.B0",)),  # change 11% > 5%
        (quantity(40.0, 6.0, 41.0), quantity(8.6, 0.1, 8.5), ("eos.B0",)),  # spread 15% > 10%
        (quantity(40.0, 2.0, 41.0), quantity(8.6, 1.0, 8.5), ("phonons.X_3",)),  # spread 11.6%
        (quantity(40.0, 6.0, 45.0), quantity(9.6, 0.1, 8.5), ("eos.B0", "phonons.X_3")),
    ],
)
def test_converges_only_when_every_quantity_is_within_both_tolerances(b0, x3, missed):
    decision = decide(record(2, {"eos.B0": b0, "phonons.X_3": x3}), [record(1, {})], SETTINGS)
    assert decision.converged == (not missed) == decision.properties_met
    assert decision.criterion == (CONVERGED if not missed else CONTINUE)
    for name in QUANTITIES:  # the reason names the quantities that held the run back (all of them when met)
        assert (name in decision.reason) == (name in missed or not missed)
    if not missed:
        assert "properties within tolerance: eos.B0 40 +- 2 GPa (change 2.44% <= 5%, spread 5% <= 10%)" in (
            decision.reason
        )


def test_a_quantity_the_record_lacks_is_not_within_tolerance():
    found = {"eos.B0": quantity(40.0, 2.0, 41.0)}  # phonons failed, or were not computed
    decision = decide(record(2, found), [record(1, {})], SETTINGS)
    assert not decision.converged and "phonons.X_3: not computed" in decision.reason


def test_properties_name_what_held_the_run_back_at_the_end():
    held = record(5, {"eos.B0": quantity(40.0, 6.0, 41.0), "phonons.X_3": quantity(8.6, 0.1, 8.5)})
    decision = decide(held, [record(i, {}) for i in range(1, 5)], SETTINGS)
    assert (decision.stop, decision.criterion) == (True, MAX_ITERATIONS)
    assert "max_iterations" in decision.reason and "eos.B0" in decision.reason
    assert "spread 15% > 10%" in decision.reason and "phonons.X_3" not in decision.reason
    # accurate and nothing labelled, but the properties unsettled: a stall that says why
    stalled = decide(dict(held, iteration=2, n_labelled=0), [record(1, {})], SETTINGS)
    assert stalled.criterion == NO_NEW_LABELS and "eos.B0" in stalled.reason


def test_due_probes_keep_a_stalled_run_going():
    """Nothing labelled and the spread too large, but the property's probes are due: go on, not 407."""
    held = record(
        2, {"eos.B0": quantity(40.0, 6.0, 41.0), "phonons.X_3": quantity(8.6, 0.1, 8.5)}, labelled=0
    )
    decision = decide(dict(held, probes_due={"eos": 9}), [record(1, {})], SETTINGS)
    assert (decision.stop, decision.criterion) == (False, CONTINUE)


def test_probes_are_the_structures_each_property_evaluates():
    settings = PropertyConvergenceSettings.from_mapping(
        {
            "quantities": QUANTITIES,
            "eos": {"points": 7, "volume_range": 0.06},
            "elastic": {"strains": [0.01]},
            "phonons": {"supercell": [2, 2, 2]},
        }
    )
    al = bulk("Al", "fcc", a=4.05)  # the 1-atom primitive cell
    eos = property_probes("eos", al, settings)
    assert [atoms.get_volume() for atoms in eos] == pytest.approx(
        al.get_volume() * np.linspace(0.94, 1.06, 7)
    )
    elastic = property_probes("elastic", al, settings)
    assert len(elastic) == 12  # +-1% on each of the 6 Voigt components
    assert {round(atoms.get_volume() / al.get_volume() - 1, 6) for atoms in elastic[:2]} == {0.01, -0.01}
    (displaced,) = property_probes("phonons", al, settings)  # fcc: one symmetry-distinct displacement
    assert len(displaced) == 8
    assert (
        np.linalg.norm(displaced.positions - bulk("Al", "fcc", a=4.05).repeat(2).positions, axis=1).max() > 0
    )
    for atoms in eos + elastic + [displaced]:
        assert atoms.calc is None and atoms.info["config_type"] == f"probe_{atoms.info['probe']}"
    with pytest.raises(ValueError, match="no probes for property `neb`"):
        property_probes("neb", al, settings)


def test_probes_are_due_once_per_property_whose_spread_is_too_large():
    settings = PropertyConvergenceSettings.from_mapping({"quantities": QUANTITIES})
    fields = {
        "eos.B0": {"mean": 40.0, "within_spread": False, "within_change": True},
        "phonons.X_3": {"mean": 8.6, "within_spread": True, "within_change": False},  # moved, but agreed
    }
    assert settings.probes and probes_due(fields, settings, set()) == ["eos"]
    assert probes_due(fields, settings, {"eos"}) == []  # once
    assert (
        probes_due(
            fields,
            PropertyConvergenceSettings.from_mapping({"quantities": QUANTITIES, "probes": False}),
            set(),
        )
        == []
    )
    assert probes_due({"eos.B0": {"mean": None, "within_spread": False}}, settings, set()) == []  # failed


def test_without_properties_the_decision_is_todays():
    plain = ConvergenceSettings(accurate_fraction=0.9, max_iterations=5)
    decision = decide(record(1, None), [], plain)
    assert decision.converged and decision.properties_met and "properties" not in decision.reason
    assert "properties" not in plain.to_dict()


def test_record_fields_judge_each_quantity_against_the_last_committee():
    rows = [
        {"property": "eos", "quantity": "B0", "unit": "GPa", "mean": 40.0, "std": 2.0},
        {"property": "eos", "quantity": "V0", "unit": "Angstrom^3/atom", "mean": 16.0, "std": 0.1},
        {"property": "phonons", "quantity": "X_3", "unit": "THz", "mean": 8.6, "std": 0.2},
    ]
    first = property_fields(rows, {}, None, SETTINGS.properties.quantities)
    assert set(first) == set(QUANTITIES)  # only the quantities asked for
    assert first["eos.B0"]["previous"] is None and first["eos.B0"]["change"] is None
    assert first["eos.B0"]["spread"] == pytest.approx(0.05) and first["eos.B0"]["within_spread"]
    assert not first["eos.B0"]["within_tolerance"]
    rows[0] = dict(rows[0], mean=42.0)
    second = property_fields(rows, {"phonons": "ValueError: boom"}, first, SETTINGS.properties.quantities)
    assert second["eos.B0"]["previous"] == 40.0
    assert second["eos.B0"]["change"] == pytest.approx(0.05) and second["eos.B0"]["within_tolerance"]
    assert second["phonons.X_3"]["error"] == "phonons failed: ValueError: boom"
    assert not second["phonons.X_3"]["within_tolerance"]
    # the record's judgement is the decision's
    assert decide(record(2, second), [record(1, first)], SETTINGS).properties_met is False


def test_judge_quantity_is_relative():
    judged = judge_quantity({"mean": -2.0, "std": 0.1, "previous": -2.1}, {"change": 0.05, "spread": 0.05})
    assert judged["change"] == pytest.approx(0.1 / 2.1) and judged["spread"] == pytest.approx(0.05)
    assert judged["within_tolerance"]
    zero = judge_quantity({"mean": 0.0, "std": 0.1, "previous": 0.0}, {"change": 0.05, "spread": 0.05})
    assert zero["spread"] is None and zero["change"] is None and not zero["within_tolerance"]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"quantities": {"eos.B1": {"change": 0.05, "spread": 0.1}}},
            "unknown quantity `eos.B1`; did you mean `eos.B0`",
        ),
        (
            {"quantities": {"eso.B0": {"change": 0.05, "spread": 0.1}}},
            "unknown property `eso`; did you mean `eos`",
        ),
        ({"quantities": {"B0": {"change": 0.05, "spread": 0.1}}}, "`B0` is not `<property>.<quantity>`"),
        ({"quantities": {"neb.barrier": {"change": 0.05, "spread": 0.1}}}, "a NEB needs a final state"),
        ({"quantities": {"phonons.X": {"change": 0.05, "spread": 0.1}}}, "`<point>_<branch>`"),
        ({"quantities": {"phonons.G_2": {"change": 0.05, "spread": 0.1}}}, "acoustic zero at Gamma"),
        (
            {"quantities": {"eos.B0": {"change": -0.05, "spread": 0.1}}},
            r"`convergence.properties.quantities.eos.B0.change`: Input should be greater than 0",
        ),
        (
            {"quantities": {"eos.B0": {"change": 0.05, "spread": 0}}},
            r"eos.B0.spread`: Input should be greater",
        ),
        (
            {"quantities": {"eos.B0": {"change": 0.05}}},
            r"missing key `convergence.properties.quantities.eos.B0",
        ),
        (
            {"quantities": {"eos.B0": {"change": 0.05, "sprad": 0.1}}},
            "unknown key `convergence.properties.quantities.eos.B0.sprad`; did you mean `spread`",
        ),
        ({"quantities": {}}, "give at least one quantity"),
        ({}, "missing key `convergence.properties.quantities`"),
        (
            {"structure": -1, "quantities": QUANTITIES},
            r"structure`: Input should be greater than or equal to 0",
        ),
        (
            {"quantities": QUANTITIES, "phonon": {}},
            "unknown key `convergence.properties.phonon`; did you mean `phonons`",
        ),
        ({"quantities": QUANTITIES, "eos": {"points": 3}}, r"convergence.properties.eos.points"),
    ],
)
def test_bad_blocks_are_refused_with_their_reason(block, message):
    with pytest.raises(SettingsError, match=message):
        ActiveLearningSettings.from_mapping(
            {"exploration": {"schedule": [{"temperatures": [300]}]}, "convergence": {"properties": block}}
        )


def test_the_structure_must_suit_the_quantities():
    al = bulk("Al", "fcc", a=4.05, cubic=True)
    settings = PropertyConvergenceSettings.from_mapping(
        {"quantities": QUANTITIES, "phonons": {"supercell": [2, 2, 2]}}
    )
    assert settings.properties == ["eos", "phonons"]
    assert settings.check_structures([al], cutoff=4.0) is al
    with pytest.raises(SettingsError, match=r"structure`: 1 is out of range: the run has 1 start structure"):
        settings.model_copy(update={"structure": 1}).check_structures([al], cutoff=4.0)
    with pytest.raises(SettingsError, match="under twice the potential's cutoff"):
        settings.check_structures([al], cutoff=5.0)
    with pytest.raises(SettingsError, match="Q is not a high-symmetry point of the primitive cell of Al4.*X"):
        PropertyConvergenceSettings.from_mapping(
            {
                "quantities": {"phonons.Q_3": {"change": 0.1, "spread": 0.1}},
                "phonons": {"supercell": [2, 2, 2]},
            }
        ).check_structures([al], cutoff=4.0)
    # phonopy's primitive cell of fcc Al has one atom: 3 branches
    with pytest.raises(SettingsError, match="has 3 branches"):
        PropertyConvergenceSettings.from_mapping(
            {
                "quantities": {"phonons.X_4": {"change": 0.1, "spread": 0.1}},
                "phonons": {"supercell": [2, 2, 2]},
            }
        ).check_structures([al], cutoff=4.0)
    tetragonal = al.copy()
    tetragonal.set_cell(al.cell.array * [1, 1, 1.1], scale_atoms=True)
    with pytest.raises(SettingsError, match="`eos.a0` is the cubic lattice constant"):
        PropertyConvergenceSettings.from_mapping(
            {"quantities": {"eos.a0": {"change": 0.1, "spread": 0.1}}}
        ).check_structures([tetragonal])
    slab = al.copy()
    slab.pbc = [True, True, False]
    with pytest.raises(SettingsError, match="periodic in all three directions"):
        settings.check_structures([slab], cutoff=4.0)


def test_the_aiida_free_loop_judges_the_same_quantities():
    """Two tiny iterations of ``run_active_learning``: each new committee's properties, the same record fields."""
    from ase.calculators.emt import EMT

    from aiida_mlip.learning.loop import run_active_learning
    from tests.learning.test_loop import TINY, aluminium

    properties = {
        "quantities": {
            "eos.B0": {"change": 0.5, "spread": 1e-9},
            "phonons.X_3": {"change": 0.5, "spread": 1e-9},
        },
        "eos": {"points": 7, "relax": "none"},
        "phonons": {"supercell": [1, 2, 2], "mesh": [6, 6, 6], "band_points": 5, "relax": "none"},
    }
    settings = {
        **TINY,
        "convergence": {"accurate_fraction": 0.01, "max_iterations": 2, "properties": properties},
    }
    with pytest.raises(SettingsError, match="out of range"):
        run_active_learning(
            [aluminium()], EMT, {**settings, "convergence": {"properties": {**properties, "structure": 2}}}
        )
    initial, *iterations = run_active_learning([aluminium()], EMT, settings, seed=1, log=None)
    assert "properties" not in initial
    for record in iterations:
        assert set(record["properties"]) == {"eos.B0", "phonons.X_3"}
        assert record["times"]["properties"] >= 0
        for entry in record["properties"].values():
            assert (
                isinstance(entry["mean"], float) and entry["std"] > 0 and entry["within_tolerance"] is False
            )
        assert record["convergence"]["properties_met"] is False
    assert all(entry["change"] is None for entry in iterations[0]["properties"].values())
    # the spreads are too large: the structures of both properties are labelled in iteration 2, once
    assert iterations[0]["probes_due"] == {"eos": 7, "phonons": iterations[1]["n_probes"] - 7}
    assert iterations[1]["labels_origin"]["probes"] == iterations[1]["n_probes"] > 7
    assert "probes_due" not in iterations[1]
    last = iterations[-1]
    assert last["convergence"]["criterion"] in ("max_iterations", "no_new_labels")
    assert "eos.B0" in last["convergence"]["reason"]
    if last["n_labelled"]:  # a new committee: its change is from the first one
        for name, entry in last["properties"].items():
            assert entry["previous"] == iterations[0]["properties"][name]["mean"]
            assert entry["change"] == pytest.approx(
                abs(entry["mean"] - entry["previous"]) / entry["previous"]
            )
