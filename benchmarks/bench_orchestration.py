"""Orchestration cost of one active-learning iteration: wall time, database nodes and time per label.

One iteration of ``ActiveLearningWorkChain`` (explore -> select -> label -> merge -> train ->
convergence check), submitted to a running daemon, at a budget of ``n`` labels. The science is made
cheap so that what is measured is the platform: 8-atom EMT aluminium cells, enough walkers for a
pool of more than ``n`` frames (40 checked frames each; up to 10 walkers per exploration job, one
job per temperature, at 300, 310, 320... K), a trust window that makes every frame a candidate,
``random`` selection, EMT labels in jobs of ``max_structures_per_job`` (20) frames, one
training epoch of a tiny committee. The initial dataset and committee are given as inputs, so no
initial labelling or training runs.

Each profile is temporary (a fresh AiiDA configuration directory and, for PostgreSQL, a fresh
database), like the test suite's (``tests/conftest.py``), and is deleted afterwards:

- ``sqlite+zeromq``: ``core.sqlite_dos`` storage, ZeroMQ broker (the ``verdi presto`` set-up);
- ``psql+rabbitmq``: ``core.psql_dos`` on 127.0.0.1:5432, RabbitMQ on 127.0.0.1:5672.

Per row: wall time from submission to the end of the work chain, nodes the iteration added to the
database, seconds per label, and the work chain's own times per step.

Run::

    .venv/bin/python benchmarks/bench_orchestration.py                    # 10, 100, 1000 labels, both kinds
    .venv/bin/python benchmarks/bench_orchestration.py --labels 10 100 --kinds sqlite+zeromq
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.conftest
from tests.conftest import (  # noqa: E402  (the test suite's service addresses and database helpers)
    POSTGRES,
    RABBITMQ,
    _create_postgres_database,
    _drop_postgres_database,
    _reachable,
    postgres_storage_config,
)

KINDS = ("sqlite+zeromq", "psql+rabbitmq")
CHECKS_PER_WALKER = 40
WALKERS_PER_JOB = 10
TRAINING = {
    "committee_size": 2,
    "cutoff": 4.0,
    "n_radial": 4,
    "l_max": 1,
    "hidden": 8,
    "max_epochs": 1,
    "patience": 1,
    "batch_size": 16,
    "bootstrap": False,
}


@contextlib.contextmanager
def temporary_profile(kind: str):
    """A fresh AiiDA configuration with one loaded profile of ``kind``; everything removed afterwards."""
    from aiida.manage.configuration import create_profile, get_config, load_profile, reset_config
    from aiida.manage.configuration.settings import AiiDAConfigDir

    directory = Path(tempfile.mkdtemp(prefix="aiida-mlip-orchestration-"))
    previous = os.environ.get("AIIDA_PATH")
    os.environ["AIIDA_PATH"] = str(directory)
    AiiDAConfigDir.set(directory / ".aiida")
    database = None
    name = f"bench-{kind.split('+')[0]}-{secrets.token_hex(4)}"
    try:
        reset_config()  # forget the configuration of an earlier profile of this process
        config = get_config(create=True)
        if kind == "psql+rabbitmq":
            database = f"aiida_mlip_bench_{secrets.token_hex(6)}"
            _create_postgres_database(database)
            storage = ("core.psql_dos", postgres_storage_config(database, directory / "repository"))
            broker = (
                "core.rabbitmq",
                {
                    "broker_protocol": "amqp",
                    "broker_username": "guest",
                    "broker_password": "guest",
                    "broker_host": RABBITMQ[0],
                    "broker_port": RABBITMQ[1],
                    "broker_virtual_host": "",
                },
            )
        else:
            storage = ("core.sqlite_dos", {"filepath": str(directory / "storage")})
            broker = ("core.zeromq", None)
        profile = create_profile(
            config,
            storage_backend=storage[0],
            storage_config=storage[1],
            broker_backend=broker[0],
            broker_config=broker[1],
            name=name,
            email="bench@localhost",
        )
        profile.set_option("warnings.development_version", False)
        config.set_option("daemon.timeout", 60, scope=name)
        config.set_default_profile(name)
        config.store()
        load_profile(name, allow_switch=True)
        yield profile
    finally:
        with contextlib.suppress(Exception):
            from aiida.engine.daemon.client import get_daemon_client

            client = get_daemon_client(name)
            if client.is_daemon_running:
                client.stop_daemon(wait=True)
        with contextlib.suppress(Exception):
            from aiida.manage import get_manager

            get_manager().unload_profile()
        if database is not None:
            _drop_postgres_database(database)
        shutil.rmtree(directory, ignore_errors=True)
        reset_config()
        if previous is None:
            os.environ.pop("AIIDA_PATH", None)
        else:
            os.environ["AIIDA_PATH"] = previous


def cell():
    from ase.build import bulk

    return bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))


def starting_point(directory: Path):
    """An EMT-labelled dataset of 16 rattled cells and a tiny committee trained on it (AiiDA-free)."""
    from ase.calculators.emt import EMT

    from aiida_mlip.engine.label import label_frames
    from aiida_mlip.learning.initial import InitialSettings, initial_structures
    from aiida_mlip.potentials.committee import save_committee
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import train_committee

    images = initial_structures([cell()], InitialSettings(copies_per_structure=15, rattle=0.08))
    frames, _, _ = label_frames(
        Frames.from_atoms(images, require_labels=False),
        {"calculator": f"{EMT.__module__}.EMT"},
        log=lambda *a, **k: None,
    )
    result = train_committee(frames, {**TRAINING, "max_epochs": 20}, device="cpu", log=None)
    path = directory / "model.safetensors"
    save_committee(result.model, path)
    return frames, path


def one_iteration(n_labels: int, frames, model_path: Path, timeout: float) -> dict:
    from aiida import orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_mlip.data.dataset import DatasetData
    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    walkers = max(1, int(np.ceil(1.2 * n_labels / CHECKS_PER_WALKER)))
    per_job = min(walkers, WALKERS_PER_JOB)
    jobs = int(np.ceil(walkers / per_job))
    overrides = {
        "exploration": {
            "md": {
                "steps": 5 * CHECKS_PER_WALKER,
                "check_interval": 5,
                "timestep": 1.0,
                "walkers": per_job,
                "break_threshold": 50.0,
            },
            # one exploration job per temperature: distinct temperatures make distinct trajectories
            "schedule": [{"temperatures": [300.0 + 10.0 * job for job in range(jobs)]}],
        },
        "trust": {"lo": 0.0, "hi": 50.0},
        "selection": {"strategy": "random", "budget": n_labels},
        "convergence": {"max_iterations": 1, "accurate_fraction": 1.0},
        "training": TRAINING,
        "warm_start": False,
    }
    dataset = DatasetData(frames).store()
    potential = PotentialData(model_path).store()
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [cell()],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        protocol="fast",
        overrides=overrides,
        dataset=dataset,
        potential=potential,
        options={"train": {"device": "cpu"}},
    )
    client = get_daemon_client()
    if not client.is_daemon_running:
        client.start_daemon(number_workers=1)
    nodes_before = orm.QueryBuilder().append(orm.Node).count()
    start = time.perf_counter()
    node = submit(builder)
    while not node.is_terminated:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"the iteration at {n_labels} labels did not finish in {timeout:.0f} s")
        time.sleep(1.0)
    wall = time.perf_counter() - start
    nodes = orm.QueryBuilder().append(orm.Node).count() - nodes_before
    if not node.is_finished_ok:
        for entry in orm.Log.collection.get_logs_for(node):
            print(f"  report: {entry.message}", flush=True)
    history = node.outputs.history["iterations"] if "history" in node.outputs else []
    record = history[-1] if history else {}
    labelled = int(record.get("n_labelled", 0))
    return {
        "labels_asked": n_labels,
        "labelled": labelled,
        "walkers": per_job * jobs,
        "explore_jobs": jobs,
        "explored": record.get("n_explored"),
        "exit_status": node.exit_status,
        "exit_message": node.exit_message,
        "wall_s": wall,
        "nodes": nodes,
        "s_per_label": wall / labelled if labelled else float("nan"),
        "times": record.get("times", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="+", type=int, default=[10, 100, 1000])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per iteration before giving up")
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        frames, model_path = starting_point(Path(scratch))
        for kind in args.kinds:
            if kind == "psql+rabbitmq" and not (_reachable(POSTGRES) and _reachable(RABBITMQ)):
                print(f"{kind}: PostgreSQL or RabbitMQ not reachable, skipped", flush=True)
                continue
            with temporary_profile(kind):
                for n_labels in args.labels:
                    try:
                        row = one_iteration(n_labels, frames, model_path, args.timeout)
                    except TimeoutError as error:
                        print(f"{kind}: {error}", flush=True)
                        break
                    row["kind"] = kind
                    rows.append(row)
                    print(json.dumps(row), flush=True)

    lines = [
        "# Orchestration cost of one active-learning iteration",
        "",
        "Command: `python benchmarks/bench_orchestration.py --labels "
        + " ".join(map(str, args.labels))
        + "`; one daemon worker; 8-atom EMT Al, random selection, EMT labels in jobs of 20 frames, one training epoch.",
        "",
        "| profile | labels | walkers (jobs) | frames explored | wall (s) | nodes | s per label | explore / select / label / train (s) | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        steps = " / ".join(
            f"{row['times'].get(step, float('nan')):.0f}" for step in ("explore", "select", "label", "train")
        )
        lines.append(
            f"| {row['kind']} | {row['labelled']} | {row['walkers']} ({row['explore_jobs']}) | {row['explored']} | {row['wall_s']:.0f} | "
            f"{row['nodes']} | {row['s_per_label']:.2f} | {steps} | {row['exit_status']} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    (output / "orchestration.md").write_text(report)
    (output / "orchestration.json").write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
