"""Active learning through a real daemon: completion, a daemon restart mid-run, and an archive round trip."""

import json
import os
import subprocess
import sys
import time

import pytest
from aiida.engine import submit

from aiida_mlip.calculations.label import LabelCalculation
from aiida_mlip.queries import potential_lineage
from tests.workflows.test_active_learning import al_builder

#: Iteration 1 explores with the real trust window (candidates are labelled); iteration 2 widens it
#: for its MD so that every frame is accurate, which converges the run after two iterations.
SCHEDULE = {
    "exploration": {
        "md": {"steps": 80, "check_interval": 5, "timestep": 2.0, "break_threshold": 5.0},
        "schedule": [
            {"temperatures": [300, 600]},
            {"temperatures": [300], "trust": {"lo": 50.0, "hi": 100.0}, "break_threshold": 100.0},
        ],
    },
    "trust": {"lo": 0.01, "hi": 5.0},
    "convergence": {"max_iterations": 3, "accurate_fraction": 0.99, "patience": 1},
}


def wait_for(condition, timeout, what, interval=0.5):
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def requeue_lost_processes() -> set[int]:
    """``verdi process repair``'s revival step: re-queue active processes that have no broker task.

    The command itself also terminates the profile's other database connections, this test's own
    included, so the test takes its revival step only. Returns the pks it re-queued. Only on
    RabbitMQ: the ZeroMQ broker runs inside the daemon, so with the daemon stopped there is no
    broker to send to (``verdi process repair`` writes to its task queue on disk instead).
    """
    from aiida.brokers.rabbitmq.broker import RabbitmqBroker
    from aiida.engine.processes.control import get_active_processes, get_process_tasks
    from aiida.manage import get_manager

    manager = get_manager()
    if not isinstance(manager.get_broker(), RabbitmqBroker):
        return set()
    lost = set(get_active_processes(project="id")) - set(get_process_tasks(manager.get_broker()))
    controller = manager.get_process_controller()
    for pk in lost:
        controller.continue_process(pk, nowait=True, no_reply=True)
    return lost


def lineage_uuids(potential):
    lineage = potential_lineage(potential)
    return {
        "labelling": sorted(n.uuid for n in lineage.labelling_calculations),
        "datasets": sorted(n.uuid for n in lineage.datasets),
        "training": sorted(n.uuid for n in lineage.training_runs),
    }


def test_daemon_run_survives_a_restart_and_its_lineage_survives_an_archive(
    engine_code, started_daemon_client, tmp_path
):
    node = submit(al_builder(engine_code, **SCHEDULE))

    # kill the daemon once the first iteration has finished, while the second is under way
    wait_for(lambda: len(node.base.extras.get("history", [])) >= 1 or node.is_terminated, 600, "iteration 1")
    assert not node.is_terminated, node.exit_message
    started_daemon_client.stop_daemon(wait=True)
    wait_for(lambda: not started_daemon_client.is_daemon_running, 60, "the daemon to stop")
    time.sleep(2)
    # what docs/clusters.md tells users to do between the stop and the start: re-queue a process
    # whose broker task went with the stopped worker (seen once: a CalcJob stopped in its upload)
    requeue_lost_processes()
    started_daemon_client.start_daemon()
    wait_for(lambda: node.is_terminated, 900, "the run to finish after the restart", interval=1.0)

    assert node.exit_status == 0, node.exit_message
    history = node.outputs.history["iterations"]
    assert [record["iteration"] for record in history] == [1, 2]  # no iteration repeated
    dataset = node.outputs.dataset
    assert dataset.n_frames == 7 + sum(record["n_labelled"] for record in history)

    # no label lost: every finished labelling job of the run has its frames in the final dataset
    jobs = [child for child in node.called_descendants if child.process_label == "LabelCalculation"]
    labelled = {
        job.uuid
        for job in jobs
        if job.exit_status in (0, LabelCalculation.exit_codes.ERROR_SOME_LABELS_FAILED.status)
    }
    sources = set(dataset.get_frames().source_uuid)
    assert sources == labelled

    # the lineage names exactly the labelling jobs whose frames are in the final dataset
    here = lineage_uuids(node.outputs.potential)
    assert set(here["labelling"]) == sources

    # the same answer from an archive imported into a fresh profile
    archive = tmp_path / "run.aiida"
    subprocess.run(
        ["verdi", "archive", "create", "-N", str(node.pk), "--", str(archive)],
        check=True,
        capture_output=True,
    )
    fresh = dict(os.environ, AIIDA_PATH=str(tmp_path / "fresh"))
    subprocess.run(
        ["verdi", "presto", "--profile-name", "imported", "--use-zeromq"],
        env=fresh,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["verdi", "-p", "imported", "archive", "import", str(archive)],
        env=fresh,
        check=True,
        capture_output=True,
    )
    script = (
        "import json; from aiida import load_profile, orm; load_profile('imported');"
        "from tests.workflows.test_active_learning_daemon import lineage_uuids;"
        f"print(json.dumps(lineage_uuids(orm.load_node('{node.outputs.potential.uuid}'))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        env=fresh,
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert json.loads(output.stdout.strip().splitlines()[-1]) == here


#: each test here (or its fixtures) takes over ~30 s: `make test` starts this file early (tests/conftest.py)
pytestmark = pytest.mark.slow
