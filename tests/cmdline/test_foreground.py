"""A foreground ``aiida-mlip launch`` on PostgreSQL + RabbitMQ is as quick as a daemon run.

The session's test profile polls children every 0 s (aiida-core does so for test profiles), which
would hide the problem; this test makes an ordinary profile with ``runner.poll.interval`` at its
default (60 s) and runs the command there, in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest
import yaml
from ase.build import bulk
from ase.io import write

from aiida_mlip.profiles import ProfileSettings, create_production_profile, drop_profile_database
from tests.conftest import POSTGRES, RABBITMQ, _reachable, require_component

#: A one-iteration run of the fast protocol, small enough for a test (Angstrom, K, fs).
OVERRIDES = {
    "initial": {"copies_per_structure": 4},
    "exploration": {"md": {"steps": 60, "check_interval": 5}, "schedule": [{"temperatures": [300]}]},
    "selection": {"budget": 4},
    "convergence": {"max_iterations": 1},
    "training": {"committee_size": 2, "max_epochs": 15, "patience": 10},
}
#: Most seconds of orchestration per iteration (the jobs' own run time excluded); 60 s polling gave 237 s.
MAX_OVERHEAD = 10.0


@pytest.fixture
def ordinary_profile(aiida_profile, aiida_config):
    """A PostgreSQL + RabbitMQ profile with aiida-core's default options (not a test profile)."""
    require_component(_reachable(POSTGRES) and _reachable(RABBITMQ), "PostgreSQL and RabbitMQ on 127.0.0.1")
    settings = ProfileSettings(name=f"mlip-foreground-{secrets.token_hex(4)}")
    create_production_profile(settings, config=aiida_config)
    environment = dict(os.environ, AIIDA_PATH=str(aiida_config.dirpath), OMP_NUM_THREADS="1")
    yield settings.name, environment
    subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "verdi"),
            "profile",
            "delete",
            "--force",
            "--keep-data",
            settings.name,
        ],
        env=environment,
        capture_output=True,
    )
    drop_profile_database(settings)


@pytest.mark.slow
@pytest.mark.serial  # the orchestration overhead it bounds is wall time: measured on an otherwise quiet machine
def test_foreground_launch_overhead_is_seconds_not_minutes(ordinary_profile, tmp_path):
    name, environment = ordinary_profile
    bin_dir = os.path.dirname(sys.executable)
    poll = subprocess.run(
        [os.path.join(bin_dir, "verdi"), "-p", name, "config", "get", "runner.poll.interval"],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert poll.stdout.strip() == "60", poll.stdout + poll.stderr  # the default the fix must not depend on
    structure = tmp_path / "CuAu.extxyz"
    cuau = bulk("Cu", "fcc", a=3.75, cubic=True)
    cuau.symbols[[1, 2]] = "Au"
    write(structure, cuau)
    overrides = tmp_path / "small.yaml"
    overrides.write_text(yaml.safe_dump(OVERRIDES))
    launch = subprocess.run(
        [
            os.path.join(bin_dir, "aiida-mlip"),
            "-p",
            name,
            "launch",
            str(structure),
            "--protocol",
            "fast",
            "--labeller",
            "emt",
            "--overrides",
            str(overrides),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    pk = int(re.search(r"ActiveLearningWorkChain<(\d+)>", launch.stdout).group(1))
    read = (
        "import json, sys; from aiida import load_profile, orm; load_profile(sys.argv[1]); "
        "node = orm.load_node(int(sys.argv[2])); "
        "history = node.outputs.history['iterations'] if 'history' in node.outputs else node.base.extras.get('history', []); "
        "print(json.dumps([node.exit_status, history]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", read, name, str(pk)], env=environment, capture_output=True, text=True
    )
    exit_status, history = json.loads(result.stdout.strip().splitlines()[-1])
    assert exit_status in (0, 410), launch.stdout + launch.stderr
    assert history, launch.stdout
    overheads = [record["overhead"] for record in history]
    print(f"foreground iteration overhead (s): {overheads}")
    assert max(overheads) < MAX_OVERHEAD, launch.stdout
