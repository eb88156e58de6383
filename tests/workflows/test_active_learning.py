"""``ActiveLearningWorkChain`` end to end with the EMT labeller, on localhost."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlip.queries import potential_lineage
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from tests.calculations.conftest import TINY_TRAINING

OVERRIDES = {
    "initial": {"copies_per_structure": 6, "rattle": 0.06, "strain": 0.02},
    "exploration": {
        "md": {"steps": 60, "check_interval": 5, "timestep": 2.0},
        "schedule": [{"temperatures": [300]}, {"temperatures": [[300, 900]]}],
    },
    "trust": {"lo": 0.02, "hi": 5.0},
    "selection": {"budget": 3},
    "convergence": {"max_iterations": 2, "accurate_fraction": 0.01, "patience": 1},
    "training": dict(TINY_TRAINING, max_epochs=6),
}


def al_builder(engine_code, structures=None, **overrides):
    codes = {
        plugin: engine_code(plugin) for plugin in ("mlip.train", "mlip.explore", "mlip.select", "mlip.label")
    }
    structures = structures or [bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))]
    return ActiveLearningWorkChain.get_builder_from_protocol(
        structures,
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        codes=codes,
        protocol="fast",
        overrides={**OVERRIDES, **overrides},
    )


def test_loop_runs_and_lineage_matches_the_dataset(engine_code):
    results, node = run_get_node(al_builder(engine_code))
    history = results["history"]["iterations"]
    ended = results["history"]["ended"]
    # exit 0 only with the accurate fraction (failed frames included) reached; else a named code
    assert (node.exit_status == 0) == ended["converged"], node.exit_message
    if ended["converged"]:
        assert history[-1]["accurate_fraction"] >= 0.01
    else:
        assert ended["reason"] in node.exit_message
    assert 1 <= len(history) <= 2
    pooled, previous = 0, None
    for record in history:
        assert record["n_explored"] > 0
        assert record["n_accurate"] + record["n_candidate"] + record["n_failed"] == record["n_explored"]
        assert record["accurate_fraction"] == pytest.approx(record["n_accurate"] / record["n_explored"])
        assert record["overhead"] >= 0
        assert record["convergence"]["criterion"] in ("continue", "converged", "max_iterations")
        # every iteration that labelled frames calibrated the committee on them first, with provenance;
        # the fit pools the pairs of the previous calibration, which is an input of this one
        if record["n_labelled"]:
            key = f"iteration_{record['iteration']}"
            calibration = results["calibration"][key]
            assert calibration.creator.caller.pk == node.pk
            pooled += record["n_labelled"]
            # with the validation pairs of every committee so far (their trainings held them out)
            n_valid = record["calibration"]["n_validation_pairs"]
            assert n_valid == len(calibration["validation_pairs"]["predicted"]) >= 1
            assert calibration["fit"]["n_pairs"] == record["calibration"]["n_pairs"] == pooled + n_valid
            assert record["calibration"]["n_new_pairs"] == len(calibration["pairs"]["predicted"])
            assert record["calibration"]["n_new_pairs"] == record["n_labelled"]
            inputs = {
                link.link_label: link.node.pk for link in calibration.creator.base.links.get_incoming().all()
            }
            assert inputs.get("previous") == previous
            # the metrics of the training that made the committee: its validation pairs
            assert "valid_pairs" in orm.load_node(inputs["validation"]).get_dict()
            previous = calibration.pk
            assert results["reliability_diagram"][key].creator.pk == calibration.creator.pk
    dataset = results["dataset"]
    assert dataset.n_frames == 7 + sum(record["n_labelled"] for record in history)
    # the lineage of the final potential names exactly the labelling jobs whose frames are in the dataset
    lineage = potential_lineage(results["potential"])
    sources = set(dataset.get_frames().source_uuid)
    assert {calculation.uuid for calculation in lineage.labelling_calculations} == sources
    assert dataset.uuid in {d.uuid for d in lineage.datasets}
    assert len(lineage.training_runs) == 1 + sum(1 for record in history if record["n_labelled"])
    assert "history_plot" in results


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trust": {"lo": 0.5, "hi": 0.1}}, "lo < hi"),
        ({"selection": {"strategy": "nope", "budget": 2}}, "`selection.strategy`: unknown strategy 'nope'"),
        ({"selection": {"budget": 0}}, "`selection.budget`: Input should be greater than or equal to 1"),
        (
            {"exploration": {"md": {}, "schedule": [{"temperatures": [-10]}]}},
            "temperature must be non-negative",
        ),
        ({"convergence": {"max_iterations": 0, "accurate_fraction": 0.9}}, "max_iterations"),
        ({"convergence": {"max_iterations": 2, "patiense": 2}}, "did you mean `patience`"),
        ({"selection": {"budget": 0}}, r"selection.budget`: .*greater than or equal to 1"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(engine_code, overrides, message):
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(al_builder(engine_code, **overrides))
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_walkers_that_explode_at_their_first_check_end_with_406(engine_code):
    """A break threshold below any deviation: every walker fails at its first check (accurate 0.000).

    The start is rattled: on the perfect lattice every force vanishes by symmetry, so its first
    frame would be trivially accurate.
    """
    start = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))
    start.rattle(0.05, seed=1)
    overrides = {
        "exploration": {
            "md": {"steps": 40, "check_interval": 5, "timestep": 2.0, "break_threshold": 2e-6},
            "schedule": [{"temperatures": [300]}],
        },
        "trust": {"lo": 1e-6, "hi": 2e-6},
        "convergence": {"max_iterations": 3, "accurate_fraction": 0.5, "patience": 1},
    }
    results, node = run_get_node(al_builder(engine_code, structures=[start], **overrides))
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_EXPLORATION_ALL_FAILED.status
    assert "every walker failed" in node.exit_message
    (record,) = results["history"]["iterations"]
    assert record["accurate_fraction"] == 0.0 and record["n_failed"] == record["n_explored"] >= 1
    assert results["history"]["ended"]["criterion"] == "all_failed"
    assert "potential" in results and "dataset" in results  # nothing computed is lost


def test_protocols_are_listed_and_merged():
    protocols = ActiveLearningWorkChain.get_available_protocols()
    assert set(protocols) == {"fast", "balanced", "precise"}
    inputs = ActiveLearningWorkChain.get_protocol_inputs("precise", {"trust": {"hi": 0.6}})
    assert inputs["trust"] == {"hi": 0.6}  # every protocol keeps TrustWindow's defaults, the one owner
    for name in protocols:
        assert ActiveLearningWorkChain.get_protocol_inputs(name)["trust"] == {}
        assert ActiveLearningWorkChain.get_protocol_inputs(name)["selection"]["strategy"] == "random"
    assert np.isclose(inputs["convergence"]["accurate_fraction"], 0.99)
    with pytest.raises(ValueError, match="unknown protocol"):
        ActiveLearningWorkChain.get_protocol_inputs("sloppy")


def test_launch_refuses_bad_input(tmp_path):
    from click.testing import CliRunner

    from aiida_mlip.cmdline import cmd_root

    runner = CliRunner()
    missing = runner.invoke(cmd_root, ["launch", str(tmp_path / "nope.cif")])
    assert missing.exit_code != 0 and "neither a StructureData pk nor a file" in missing.output
    (tmp_path / "al.xyz").write_text("1\n\nAl 0 0 0\n")
    labeller = runner.invoke(cmd_root, ["launch", str(tmp_path / "al.xyz"), "--labeller", "vasp"])
    assert labeller.exit_code != 0 and "unknown labeller" in labeller.output


#: each test here (or its fixtures) takes over ~30 s: `make test` starts this file early (tests/conftest.py)
pytestmark = pytest.mark.slow
