"""Real SLURM dispatch: an active-learning iteration whose labelling and training are SLURM jobs, and a
training job cancelled with ``scancel`` that the work chain resubmits from its checkpoint.

Needs the one-node cluster of ``scripts/slurm-local.sh`` (``.ci/run`` starts it).
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
from aiida import orm
from aiida.engine import run_get_node, submit

from aiida_mlip.calculations.label import LabelCalculation
from aiida_mlip.calculations.train import TrainCalculation
from aiida_mlip.potentials.model_file import ModelFileError, read_model_metadata
from aiida_mlip.workflows.training import TrainingWorkChain
from tests.calculations.conftest import TINY_TRAINING
from tests.workflows.test_active_learning import al_builder
from tests.workflows.test_active_learning_daemon import SCHEDULE, wait_for


def slurm_job_record(job_id: str) -> dict:
    """``scontrol show job`` as a mapping (the cluster keeps finished jobs for MinJobAge = 600 s)."""
    text = subprocess.run(
        ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def test_iteration_labels_and_trains_as_slurm_jobs(engine_code, slurm_codes):
    # iteration 1 labels its candidates and retrains (on SLURM); iteration 2 finds every frame accurate
    builder = al_builder(engine_code, **SCHEDULE)
    builder.label.ase.code = slurm_codes["mlip.label"]
    builder.label.ase.metadata.options = slurm_codes["steps"]["label"]
    builder.train.code = slurm_codes["mlip.train"]
    train_options = dict(slurm_codes["steps"]["train"])
    builder.train.device = orm.Str(train_options.pop("device"))
    builder.train.metadata.options = train_options

    results, node = run_get_node(builder)

    assert node.exit_status == 0, node.exit_message
    history = results["history"]["iterations"]
    assert len(history) == 2 and history[0]["n_labelled"] > 0, history
    calculations = [
        descendant
        for descendant in node.called_descendants
        if descendant.process_class in (LabelCalculation, TrainCalculation)
    ]
    # initial labels + first committee, then the iteration's labels + retraining
    assert sum(c.process_class is LabelCalculation for c in calculations) >= 2
    assert sum(c.process_class is TrainCalculation for c in calculations) == 2
    for calculation in calculations:
        assert calculation.is_finished_ok, (calculation.pk, calculation.exit_message)
        assert calculation.computer.label == "slurm-local"
        assert calculation.computer.scheduler_type == "core.slurm"
        job_id = calculation.get_job_id()
        assert job_id and job_id.isdigit(), job_id
        record = slurm_job_record(job_id)
        assert record.get("JobState") == "COMPLETED" and record.get("ExitCode") == "0:0", record
        assert record.get("Partition") == "debug"
        script = calculation.base.repository.get_object_content("_aiidasubmit.sh")
        assert "#SBATCH --time=" in script
        assert "_scheduler-stdout.txt" in calculation.outputs.retrieved.base.repository.list_object_names()
    training = [c for c in calculations if c.process_class is TrainCalculation]
    for calculation in training:
        assert "'--device' 'auto'" in calculation.base.repository.get_object_content("_aiidasubmit.sh")
        assert calculation.outputs.metrics["device"] == "cpu"
        assert (
            "no CUDA device is visible"
            in calculation.outputs.retrieved.base.repository.get_object_content("aiida.err")
        )


def test_cancelled_training_job_is_resubmitted_from_its_checkpoint(
    aluminium_dataset, slurm_codes, started_daemon_client
):
    options = {key: value for key, value in slurm_codes["steps"]["train"].items() if key != "device"}
    max_epochs = 120
    parameters = dict(TINY_TRAINING, max_epochs=max_epochs, patience=1000, hidden=32)
    node = submit(
        TrainingWorkChain,
        train={
            "code": slurm_codes["mlip.train"],
            "dataset": aluminium_dataset,
            "parameters": orm.Dict(parameters),
            "metadata": {"options": options},
        },
    )

    def checkpoint_epoch() -> int:
        """The epoch of the first job's checkpoint in its working directory (-1: none yet)."""
        children = [c for c in node.called if c.process_class is TrainCalculation]
        if not children or not children[0].get_job_id() or children[0].get_remote_workdir() is None:
            return -1
        path = pathlib.Path(children[0].get_remote_workdir()) / "checkpoint.safetensors"
        try:
            return int(read_model_metadata(path, verify=False).get("checkpoint_epoch", -1))
        except (OSError, ModelFileError):  # not written yet, or caught while it is being rewritten
            return -1

    # cancel once a few epochs are done, so the resubmission has fewer epochs left than it began with
    wait_for(lambda: node.is_terminated or checkpoint_epoch() >= 3, 300, "the first job's epoch-3 checkpoint")
    assert not node.is_terminated, node.exit_message
    first = next(c for c in node.called if c.process_class is TrainCalculation)
    job_id = first.get_job_id()
    assert slurm_job_record(job_id).get("JobState") == "RUNNING"
    subprocess.run(["scancel", job_id], check=True, timeout=30)

    wait_for(lambda: node.is_terminated, 600, "the training work chain to finish", interval=1.0)
    assert slurm_job_record(job_id).get("JobState") == "CANCELLED"
    assert first.exit_status == TrainCalculation.exit_codes.ERROR_INTERRUPTED.status, first.exit_message
    assert "checkpoint" in first.outputs  # nothing the cancelled job finished is lost
    assert node.is_finished_ok, node.exit_message
    attempts = sorted((c for c in node.called if c.process_class is TrainCalculation), key=lambda c: c.ctime)
    assert len(attempts) == 2
    assert attempts[1].inputs.parent_potential.uuid == first.outputs.checkpoint.uuid
    # the resubmission runs the epochs that are left, not the whole count again
    done = first.outputs.checkpoint.checkpoint_epoch
    assert done >= 3
    assert attempts[1].inputs.parameters["max_epochs"] == max_epochs - done
    assert attempts[1].outputs.metrics["epochs_run"] == max_epochs - done
    assert slurm_job_record(attempts[1].get_job_id()).get("JobState") == "COMPLETED"
    assert "potential" in node.outputs


def test_training_runs_over_ssh_on_slurm(aluminium_dataset, slurm_ssh_codes):
    options = {key: value for key, value in slurm_ssh_codes["steps"]["train"].items() if key != "device"}
    results, node = run_get_node(
        TrainCalculation,
        code=slurm_ssh_codes["mlip.train"],
        dataset=aluminium_dataset,
        parameters=orm.Dict(TINY_TRAINING),
        metadata={"options": options},
    )
    assert node.is_finished_ok, node.exit_message
    assert node.computer.transport_type == "core.ssh_async"
    assert slurm_job_record(node.get_job_id()).get("JobState") == "COMPLETED"
    assert "potential" in results


#: each test here (or its fixtures) takes over ~30 s: `make test` starts this file early (tests/conftest.py)
pytestmark = pytest.mark.slow
