"""``aiida-mlip launch``, ``watch``, ``status`` and ``lineage`` on the session's shared run.

The run itself is made by ``aiida-mlip launch`` (``finished_run`` in tests/conftest.py): a
StructureData pk as the structure, the ``ase:module.Class:{json kwargs}`` labeller and an
``--overrides`` file, submitted to the daemon and followed by ``aiida-mlip watch``.
"""

import json

import pytest
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from tests.conftest import require_component, shared_run_overrides


def invoke(*args):
    result = CliRunner().invoke(cmd_root, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_launch_converges(finished_run):
    node = finished_run.node
    assert finished_run.launch.exit_code == 0, finished_run.launch.output
    assert node.exit_status == 0, node.exit_message
    assert [record["iteration"] for record in node.outputs.history["iterations"]] == [1, 2]


def test_launch_takes_a_structure_pk(finished_run):
    (structure,) = finished_run.node.inputs.structures.get_atoms()
    assert structure.get_chemical_formula() == finished_run.structure.get_ase().get_chemical_formula()
    assert structure.positions == pytest.approx(finished_run.structure.get_ase().positions, abs=1e-12)
    assert structure.cell.array == pytest.approx(finished_run.structure.get_ase().cell.array, abs=1e-12)
    # the set was made from the user's node by a calcfunction: the provenance starts at that node
    creator = finished_run.node.inputs.structures.creator
    assert creator is not None and creator.process_label == "join_structures"
    assert [n.uuid for n in creator.base.links.get_incoming().all_nodes()] == [finished_run.structure.uuid]


def test_launch_merges_the_overrides_file_over_the_protocol(finished_run):
    inputs = finished_run.node.inputs
    overrides = shared_run_overrides()
    assert inputs.selection["budget"] == overrides["selection"]["budget"]  # fast: 8
    assert (
        inputs.selection["strategy"] == "random"
    )  # from the protocol: the merge keeps what is not overridden
    assert inputs.trust.get_dict() == overrides["trust"]
    assert inputs.train.parameters["max_epochs"] == overrides["training"]["max_epochs"]
    # ... and the jobs ran with them
    selection = finished_run.called("select_1")
    assert selection.inputs.parameters["budget"] == 3
    assert 1 <= selection.outputs.selected.n_frames <= 3


def test_launch_passes_the_labeller_kwargs(finished_run):
    labeller = finished_run.node.inputs.label.ase.labeller.get_dict()
    assert labeller["calculator"] == "ase.calculators.emt.EMT"
    assert labeller["kwargs"] == {"asap_cutoff": False}
    jobs = [n for n in finished_run.node.called_descendants if n.process_label == "LabelCalculation"]
    assert jobs and all(job.inputs.labeller["kwargs"] == {"asap_cutoff": False} for job in jobs)


def test_watch_follows_live_events_over_rabbitmq(finished_run):
    require_component(finished_run.broker == "core.rabbitmq", "a RabbitMQ profile")
    assert finished_run.watch.exit_code == 0, finished_run.watch.output
    events = finished_run.watched()
    steps = [step for step, _ in events]
    # live events name the steps of each iteration; polling the database only knows whole iterations
    assert {"explore", "select", "label", "train"} <= set(steps)
    assert steps.count("iteration") == 2 and steps[-1] == "finished"
    (label,) = [fields for step, fields in events if step == "label"]
    assert label["n_labelled"] == finished_run.called("label_1").outputs.dataset.n_frames


def test_watch_of_a_finished_run_reads_the_database(finished_run):
    watched = invoke("watch", finished_run.node.pk, "--interval", "0.1")
    lines = [line for line in watched.splitlines() if line.startswith("[")]
    assert len(lines) == 3  # two iterations and the end
    assert json.loads(lines[-1].split(":", 1)[1])["exit_status"] == 0


def test_status_names_the_outputs(finished_run):
    outputs = finished_run.node.outputs
    status = invoke("status", finished_run.node.pk)
    assert str(outputs.potential.pk) in status and str(outputs.dataset.pk) in status
    # the iteration table with the calibration columns, and the criterion that ended the run
    assert "acc.frac" in status and "rank corr" in status and "cal.factor" in status
    ended = outputs.history["ended"]
    assert f"ended by `{ended['criterion']}`: {ended['reason']}" in status


def test_lineage_names_every_labelling_job(finished_run):
    lineage = invoke("lineage", finished_run.node.outputs.potential.pk)
    labelling = [n for n in finished_run.node.called_descendants if n.process_label == "LabelCalculation"]
    for calculation in labelling:
        assert str(calculation.pk) in lineage
