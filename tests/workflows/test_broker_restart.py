"""RabbitMQ restarted while a run is in progress: the daemon reconnects and the run completes.

The broker application is stopped and started with ``rabbitmqctl stop_app``/``start_app`` (every
AMQP connection is dropped, queued tasks survive), while a training work chain waits on its job.
Needs the PostgreSQL + RabbitMQ profile and permission to run ``rabbitmqctl`` (root in CI).
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from aiida import orm
from aiida.engine import submit

from aiida_mlip.calculations.train import TrainCalculation
from aiida_mlip.workflows.training import TrainingWorkChain
from tests.calculations.conftest import TINY_TRAINING
from tests.conftest import RABBITMQ, _reachable, require_component
from tests.workflows.test_active_learning_daemon import wait_for


def rabbitmqctl(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", *arguments], capture_output=True, text=True, timeout=120)


def can_restart_rabbitmq(profile) -> bool:
    if profile.process_control_backend != "core.rabbitmq" or not shutil.which("rabbitmqctl"):
        return False
    try:
        return rabbitmqctl("status").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.serial  # every worker's daemon and runner talk to this RabbitMQ
def test_run_completes_after_rabbitmq_restarts(
    aiida_profile, aluminium_dataset, engine_code, started_daemon_client
):
    require_component(can_restart_rabbitmq(aiida_profile), "RabbitMQ controllable with rabbitmqctl")
    node = submit(
        TrainingWorkChain,
        train={
            "code": engine_code("mlip.train"),
            "dataset": aluminium_dataset,
            "parameters": orm.Dict(dict(TINY_TRAINING, max_epochs=300, patience=1000, hidden=32)),
        },
    )

    def training_job_running():
        jobs = [c for c in node.called if c.process_class is TrainCalculation]
        return node.is_terminated or bool(jobs and jobs[0].get_job_id())

    wait_for(training_job_running, 300, "the training job to start")
    assert not node.is_terminated, node.exit_message

    stopped = rabbitmqctl("stop_app")
    assert stopped.returncode == 0, stopped.stderr
    try:
        time.sleep(3)
        assert not _reachable(RABBITMQ)
    finally:
        started = rabbitmqctl("start_app")
        assert started.returncode == 0, started.stderr
        wait_for(lambda: _reachable(RABBITMQ), 60, "RabbitMQ to listen again")

    wait_for(lambda: node.is_terminated, 600, "the run to finish after the broker restart", interval=1.0)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert "potential" in node.outputs
    assert len([c for c in node.called if c.process_class is TrainCalculation]) == 1

    # the test process reconnects too: a new submission after the restart also runs to the end
    again = submit(
        TrainingWorkChain,
        train={
            "code": engine_code("mlip.train"),
            "dataset": aluminium_dataset,
            "parameters": orm.Dict(dict(TINY_TRAINING, max_epochs=2)),
        },
    )
    wait_for(lambda: again.is_terminated, 300, "a run submitted after the restart", interval=1.0)
    assert again.is_finished_ok, again.exit_message
