"""``ActiveLearningWorkChain`` with ``convergence.properties``: EMT aluminium, the properties of every committee.

One real run with tiny settings: the equation of state and the phonons of each new committee are
computed (one ``compute_property`` per property, with the potential as input), recorded per iteration,
and an impossible spread tolerance holds the run back until ``max_iterations``, with the exit
message, the history and ``aiida-mlip status`` naming the quantities.
"""

import io

import pytest
from aiida import orm
from ase.build import bulk
from click.testing import CliRunner
from PIL import Image

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.foreground import run_get_node
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from tests.workflows.test_active_learning import OVERRIDES, al_builder

#: The start structure is fcc Al 2x1x1 of the cubic cell (8 atoms, 8.1 x 4.05 x 4.05 Angstrom): its
#: 1x2x2 supercell is 8.1 Angstrom wide, over twice the tiny committee's 4 Angstrom cutoff.
PROPERTIES = {
    "quantities": {
        "eos.B0": {"change": 0.5, "spread": 1e-9},  # no committee of two agrees to 1e-9
        "phonons.X_3": {"change": 0.5, "spread": 1e-9},
    },
    "eos": {"points": 7, "relax": "none"},
    "phonons": {"supercell": [1, 2, 2], "mesh": [6, 6, 6], "band_points": 5, "relax": "none"},
}
CONVERGENCE = {"max_iterations": 2, "accurate_fraction": 0.01, "patience": 1}


@pytest.fixture(scope="module")
def held_back(aiida_profile):
    """The run's pk: two iterations, held back by the properties' spread (the engine codes on localhost)."""
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        protocol="fast",
        overrides={**OVERRIDES, "convergence": dict(CONVERGENCE, properties=PROPERTIES)},
    )
    _, node = run_get_node(builder)
    return node.pk


def test_properties_hold_the_run_back_and_the_stop_names_them(held_back):
    node = orm.load_node(held_back)
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status
    message = node.exit_message
    assert "max_iterations" in message and "properties not within tolerance" in message
    assert "eos.B0" in message and "phonons.X_3" in message and "> 1e-07%" in message
    ended = node.outputs.history["ended"]
    assert ended["criterion"] == "max_iterations" and ended["reason"] in message
    history = node.outputs.history["iterations"]
    assert [record["iteration"] for record in history] == [1, 2]
    for record in history:
        assert set(record["properties"]) == {"eos.B0", "phonons.X_3"}
        assert record["convergence"]["properties_met"] is False
        for name, entry in record["properties"].items():
            assert isinstance(entry["mean"], float) and entry["std"] > 0, (name, entry)
            assert entry["spread"] == pytest.approx(entry["std"] / abs(entry["mean"]))
            assert entry["within_spread"] is False and entry["within_tolerance"] is False
            assert entry["tolerance"] == PROPERTIES["quantities"][name]
        assert record["properties"]["eos.B0"]["unit"] == "GPa"
        assert record["properties"]["phonons.X_3"]["unit"] == "THz"
    first, second = history
    # the first committee has nothing to change from; the second's change is from the first committee
    assert all(
        entry["change"] is None and entry["previous"] is None for entry in first["properties"].values()
    )
    assert second["n_labelled"] > 0  # a new committee was trained in iteration 2
    for name, entry in second["properties"].items():
        previous = first["properties"][name]["mean"]
        assert entry["previous"] == pytest.approx(previous)
        assert entry["change"] == pytest.approx(abs(entry["mean"] - previous) / abs(previous))


def test_each_committee_is_judged_by_a_calcfunction_with_the_potential_as_input(held_back):
    node = orm.load_node(held_back)
    trained = {
        child.outputs.potential.uuid
        for child in node.called
        if child.process_label == "TrainingWorkChain" and "potential" in child.outputs
    }
    judged = {}
    for record in node.outputs.history["iterations"]:
        for name, quantity in (("eos", "eos.B0"), ("phonons", "phonons.X_3")):
            label = f"property_{name}_{record['iteration']}"
            called = node.base.links.get_outgoing(link_label_filter=label).one().node
            assert called.process_label == "compute_property" and called.is_finished_ok
            assert called.inputs.name.value == name
            judged.setdefault(record["iteration"], set()).add(called.inputs.potential.uuid)
            rows = {f"{row['property']}.{row['quantity']}": row for row in called.outputs.result["rows"]}
            assert record["properties"][quantity]["mean"] == pytest.approx(rows[quantity]["mean"])
            assert record["properties"][quantity]["std"] == pytest.approx(rows[quantity]["std"])
            # the structure comes out of the run's start structures, with provenance
            structure = called.inputs.structure
            assert structure.creator.process_label == "select_structure"
            assert structure.creator.inputs.structures.uuid == node.inputs.structures.uuid
    # each iteration judged the committee it trained: the last one is the run's potential
    assert judged[2] == {node.outputs.potential.uuid}
    assert len(judged[1]) == 1 and judged[1] != judged[2] and judged[1] <= trained


def test_probes_of_the_properties_are_labelled_in_the_next_iteration(held_back):
    """The spreads are too large after iteration 1: the EOS volumes and the displaced supercells are
    made from the property structure and labelled beside iteration 2's selection, once."""
    node = orm.load_node(held_back)
    first, second = node.outputs.history["iterations"]
    due = first["probes_due"]
    assert due["eos"] == 7 and due["phonons"] >= 1
    assert second["n_probes"] == sum(due.values()) and "probes_due" not in second
    made = node.base.links.get_outgoing(link_label_filter="property_probes_1").one().node
    assert made.process_label == "property_probe_structures" and made.inputs.names.get_list() == [
        "eos",
        "phonons",
    ]
    assert made.inputs.structure.creator.process_label == "select_structure"
    kinds = list(node.outputs.dataset.get_frames().config_type)
    assert kinds.count("probe_eos") == 7 and kinds.count("probe_phonons") == due["phonons"]
    labelled = node.base.links.get_outgoing(link_label_filter="label_2").one().node
    assert labelled.inputs.structures.n_frames == second["n_selected"] + second["n_probes"]


def test_status_and_plot_show_the_properties(held_back):
    node = orm.load_node(held_back)
    status = CliRunner().invoke(cmd_root, ["status", str(node.pk)], catch_exceptions=False)
    assert "ended by `max_iterations`" in status.output
    assert "properties not within tolerance" in status.output
    for iteration in (1, 2):
        assert f"iteration {iteration}: properties: eos.B0 " in status.output
    assert "probes due for the next iteration: {'eos': 7, 'phonons'" in status.output
    assert "iteration 2: labelled " in status.output and "property probe(s)" in status.output
    image = Image.open(io.BytesIO(node.outputs.history_plot.get_content(mode="rb")))
    assert image.size == (1100, 1155)  # a third row of panels: 10 x 10.5 inches at 110 dpi


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (dict(PROPERTIES, structure=1), r"convergence.properties.structure`: 1 is out of range"),
        (dict(PROPERTIES, phonons={"supercell": [1, 1, 1]}), "under twice the potential's cutoff"),
        (
            dict(PROPERTIES, quantities={"phonons.M_1": {"change": 0.1, "spread": 0.1}}),
            "M is not a high-symmetry point",
        ),
        (dict(PROPERTIES, quantities={"eos.B0": {"change": -0.1, "spread": 0.1}}), "greater than 0"),
    ],
)
def test_bad_property_blocks_are_refused_before_anything_runs(engine_code, properties, message):
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(al_builder(engine_code, convergence=dict(CONVERGENCE, properties=properties)))
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_an_unchanged_committee_carries_over_and_the_next_is_compared_with_it(
    generate_workchain, engine_code, tiny_model_file
):
    """The step on a set-up instance: a committee is judged once; another one gets its change from it."""
    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.history import new_record

    process = generate_workchain(
        ActiveLearningWorkChain, al_builder(engine_code, convergence=dict(CONVERGENCE, properties=PROPERTIES))
    )
    process.setup()
    assert process.converges_on_properties()
    # two nodes of the same committee file: the same weights, so the second one changes nothing
    first, second = (PotentialData(file=tiny_model_file).store() for _ in range(2))

    def judged(iteration, potential):
        process.ctx.iteration, process.ctx.potential = iteration, potential
        process.ctx.record = new_record(iteration)
        process.compute_properties()
        return process.ctx.record["properties"]

    def computed():
        query = orm.QueryBuilder().append(
            orm.CalcFunctionNode, filters={"attributes.process_label": "compute_property"}
        )
        return query.count()

    before = computed()
    one = judged(1, first)
    assert computed() == before + 2  # eos and phonons
    assert all(entry["previous"] is None and entry["change"] is None for entry in one.values())
    assert judged(2, first) == one and computed() == before + 2  # no new committee: nothing computed
    three = judged(3, second)
    assert computed() == before + 4
    for name, entry in three.items():
        assert entry["previous"] == one[name]["mean"]
        assert entry["change"] == pytest.approx(0.0, abs=1e-9) and entry["within_change"]
        assert not entry["within_spread"]  # the impossible spread tolerance


@pytest.mark.science
def test_the_readme_run_converges_on_the_properties(aiida_profile):
    """The README's example (fast protocol, 32-atom Al, B0 and X_3 within 10%): with the probes it
    converges (measured: 6 iterations, 56 labels, B0 42.0 +- 1.4 GPa, X_3 8.64 +- 0.32 THz), and every
    judged quantity is near EMT's own (39.3 GPa, 8.60 THz through the same kernels)."""
    quantities = {"eos.B0": {"change": 0.10, "spread": 0.10}, "phonons.X_3": {"change": 0.10, "spread": 0.10}}
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        protocol="fast",
        overrides={
            "convergence": {
                "max_iterations": 8,
                "properties": {"quantities": quantities, "phonons": {"supercell": [2, 2, 2]}},
            }
        },
    )
    _, node = run_get_node(builder)
    assert node.exit_status == 0, node.exit_message
    history = node.outputs.history["iterations"]
    assert sum(record.get("n_probes", 0) for record in history) >= 8  # the EOS volumes at least
    last = history[-1]["properties"]
    assert all(entry["within_tolerance"] for entry in last.values())
    assert last["eos.B0"]["mean"] == pytest.approx(39.3, rel=0.15)
    assert last["phonons.X_3"]["mean"] == pytest.approx(8.60, rel=0.10)


#: each test here (or its fixtures) takes over ~30 s: `make test` starts this file early (tests/conftest.py)
pytestmark = pytest.mark.slow
