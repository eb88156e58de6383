"""``aiida-mlip setup computer`` and ``launch --cluster``: a cluster described once in YAML."""

import pathlib
import re

import pytest
import yaml
from aiida import orm
from ase.build import bulk
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.codes import ENGINE_EXECUTABLES
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

EXAMPLES = pathlib.Path(__file__).parents[2] / "examples" / "clusters"


def _codes_of(label):
    return (
        orm.QueryBuilder()
        .append(orm.Computer, filters={"label": label}, tag="c")
        .append(orm.InstalledCode, with_computer="c")
        .all(flat=True)
    )


def _write(tmp_path, values, name="cluster.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_real_cluster_example_creates_an_ssh_slurm_computer_and_its_codes(aiida_profile, tmp_path):
    values = yaml.safe_load((EXAMPLES / "hpc-cpu-gpu.yaml").read_text())
    values["computer"]["label"] = "example-cluster"
    path = _write(tmp_path, values)
    runner = CliRunner()
    result = runner.invoke(cmd_root, ["setup", "computer", path], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    computer = orm.load_computer("example-cluster")
    assert (computer.transport_type, computer.scheduler_type) == ("core.ssh_async", "core.slurm")
    assert computer.get_mpirun_command() == ["srun"]
    assert computer.get_default_mpiprocs_per_machine() == 64
    assert computer.get_authinfo(orm.User.collection.get_default()).get_auth_params()["host"] == "my-cluster"
    codes = {code.default_calc_job_plugin: code for code in _codes_of("example-cluster")}
    assert set(codes) == {*ENGINE_EXECUTABLES.values(), "quantumespresso.pw"}
    assert str(codes["mlip.train"].filepath_executable) == "/home/me/mlip-engine/bin/aiida-mlip-train"
    assert "module load cuda" in codes["mlip.train"].prepend_text
    again = runner.invoke(cmd_root, ["setup", "computer", path], catch_exceptions=False)
    assert again.exit_code == 0 and again.output.count("exists") == len(ENGINE_EXECUTABLES) + 2


def test_per_step_options_reach_the_builder(aiida_profile):
    from aiida_mlip.clusters import load_cluster_config, setup_cluster, step_options

    config = load_cluster_config(EXAMPLES / "slurm-local.yaml")
    codes = setup_cluster(config, log=lambda *_: None)
    assert orm.load_computer("slurm-local").scheduler_type == "core.slurm"
    options = step_options(config)
    options["train"].update(device="cpu", custom_scheduler_commands="#SBATCH --gres=gpu:1")
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", cubic=True)],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        codes=codes,
        protocol="fast",
        options=options,
    )
    assert builder.train.code.computer.label == "slurm-local"
    assert builder.train.device.value == "cpu"
    assert builder.train.metadata.options.custom_scheduler_commands == "#SBATCH --gres=gpu:1"
    assert builder.train.metadata.options.max_wallclock_seconds == 3600
    assert builder.label.ase.metadata.options.queue_name == "debug"
    assert builder.label.ase.code.computer.label == "slurm-local"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: v["computer"].update(scheduler="core.nope"), "unknown scheduler 'core.nope'"),
        (lambda v: v["computer"].pop("workdir"), "missing \\['workdir'\\]"),
        (lambda v: v["computer"].update(colour="red"), "unknown key\\(s\\) \\['colour'\\]"),
        (lambda v: v["steps"]["train"].update(wall_time=10), "steps.train: unknown metadata.options"),
        (lambda v: v["steps"]["label"].update(device="cuda"), "only the train step has a device"),
        (lambda v: v["steps"]["train"].update(device="gpu"), "device must be one of"),
        (lambda v: v["codes"]["engine"].update(bin="/nonexistent/bin"), "does not exist on this machine"),
        (lambda v: v.update(configure=["safe_interval"]), "configure must be a mapping"),
        (lambda v: v["steps"].update(train="gpu"), "steps.train must be a mapping"),
    ],
)
def test_bad_cluster_files_are_refused_with_the_key_that_is_wrong(aiida_profile, tmp_path, edit, message):
    values = yaml.safe_load((EXAMPLES / "slurm-local.yaml").read_text())
    values["computer"]["label"] = "bad-cluster"
    edit(values)
    result = CliRunner().invoke(cmd_root, ["setup", "computer", _write(tmp_path, values)])
    assert result.exit_code != 0
    assert re.search(message, result.output), result.output


def test_an_existing_computer_is_not_repointed(aiida_profile, tmp_path):
    values = yaml.safe_load((EXAMPLES / "slurm-local.yaml").read_text())
    values["computer"]["label"] = "repoint-cluster"
    runner = CliRunner()
    assert runner.invoke(cmd_root, ["setup", "computer", _write(tmp_path, values)]).exit_code == 0
    values["computer"]["hostname"] = "elsewhere.example.org"
    result = runner.invoke(cmd_root, ["setup", "computer", _write(tmp_path, values, "other.yaml")])
    assert result.exit_code != 0 and "exists with hostname 'localhost'" in result.output
    assert orm.load_computer("repoint-cluster").hostname == "localhost"


def test_launch_with_a_cluster_file_sends_each_step_there(aiida_profile, tmp_path, monkeypatch):
    from ase.io import write

    write(tmp_path / "al.xyz", bulk("Al", cubic=True))
    submitted = []

    class Node:
        pk = 0

    monkeypatch.setattr("aiida.engine.submit", lambda builder: submitted.append(builder) or Node())
    cluster = str(EXAMPLES / "slurm-local.yaml")
    result = CliRunner().invoke(
        cmd_root, ["launch", str(tmp_path / "al.xyz"), "--protocol", "fast", "--cluster", cluster, "--daemon"]
    )
    assert result.exit_code == 0, result.output
    (builder,) = submitted
    assert builder.train.code.computer.label == "slurm-local"
    assert builder.label.ase.code.computer.label == "slurm-local"
    assert builder.train.device.value == "auto"
    assert builder.train.metadata.options.queue_name == "debug"

    values = yaml.safe_load((EXAMPLES / "slurm-local.yaml").read_text())
    values["steps"]["train"]["device"] = "tpu"
    bad = CliRunner().invoke(
        cmd_root, ["launch", str(tmp_path / "al.xyz"), "--cluster", _write(tmp_path, values), "--daemon"]
    )
    assert bad.exit_code != 0 and "device must be one of" in bad.output
    assert len(submitted) == 1
