"""``max_concurrent``: jobs of one step are submitted in waves, so a small machine is not flooded."""

from __future__ import annotations

import os

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlip.workflows.concurrency import default_max_concurrent
from tests.workflows.test_labelling import builder, structures  # noqa: F401

ONE_CORE = {"num_machines": 1, "num_mpiprocs_per_machine": 1}


def most_at_once(nodes) -> int:
    """The largest number of ``nodes`` alive at one instant (each from creation to its last change)."""
    events = sorted([(node.ctime, 1) for node in nodes] + [(node.mtime, -1) for node in nodes])
    alive = peak = 0
    for _, change in events:
        alive += change
        peak = max(peak, alive)
    return peak


def computer(scheduler: str, transport: str = "core.local", cpus: int | None = None) -> orm.Computer:
    node = orm.Computer(
        label=f"c-{scheduler}-{transport}", hostname="h", scheduler_type=scheduler, transport_type=transport
    )
    if cpus is not None:
        node.set_default_mpiprocs_per_machine(cpus)
    return node


def test_default_cap_follows_the_computer(aiida_profile):
    assert default_max_concurrent(computer("core.direct")) == os.cpu_count()
    assert default_max_concurrent(computer("core.direct"), processes_per_job=2) == max(1, os.cpu_count() // 2)
    assert default_max_concurrent(computer("core.direct", "core.ssh", cpus=8), processes_per_job=2) == 4
    assert default_max_concurrent(computer("core.direct", "core.ssh")) is None
    assert default_max_concurrent(computer("core.slurm", "core.ssh", cpus=64)) is None


@pytest.mark.parametrize("cap", [1, 2])
def test_labelling_jobs_run_at_most_max_concurrent_at_once(builder, cap):  # noqa: F811
    _, node = run_get_node(
        builder(structures(5), max_structures_per_job=orm.Int(1), max_concurrent=orm.Int(cap))
    )
    assert node.is_finished_ok, node.exit_message
    jobs = [child for child in node.called if child.process_label == "LabelCalculation"]
    assert len(jobs) == 5
    assert most_at_once(jobs) == cap


def test_labelling_on_this_machine_defaults_to_its_cpus(builder):  # noqa: F811
    count = os.cpu_count() + 1
    _, node = run_get_node(builder(structures(count), max_structures_per_job=orm.Int(1)))
    assert node.is_finished_ok, node.exit_message
    jobs = [child for child in node.called if child.process_label == "LabelCalculation"]
    assert len(jobs) == count and most_at_once(jobs) == os.cpu_count()


def test_max_concurrent_below_one_is_refused(builder):  # noqa: F811
    with pytest.raises(ValueError, match="max_concurrent must be at least 1, got 0"):
        run_get_node(builder(structures(2), max_concurrent=orm.Int(0)))


def test_max_concurrent_reaches_the_steps_from_options_and_cluster_files(engine_code):
    from ase.build import bulk

    from aiida_mlip.clusters import ClusterConfigError, validate_cluster_config
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    codes = {
        plugin: engine_code(plugin) for plugin in ("mlip.train", "mlip.explore", "mlip.select", "mlip.label")
    }
    al_builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True)],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        codes=codes,
        protocol="fast",
        options={
            "explore": {"max_concurrent": 1},
            "label": {"max_concurrent": 3, "resources": ONE_CORE},
        },
    )
    assert al_builder.explore.max_concurrent.value == 1 and al_builder.label.max_concurrent.value == 3
    assert dict(al_builder.label.ase.metadata.options)["resources"] == ONE_CORE
    cluster = {
        "computer": {
            "label": "c",
            "hostname": "h",
            "transport": "core.ssh",
            "scheduler": "core.slurm",
            "workdir": "/w",
        },
        "steps": {"label": {"max_concurrent": 4}},
    }
    assert validate_cluster_config(cluster).steps["label"]["max_concurrent"] == 4
    cluster["steps"] = {"train": {"max_concurrent": 4}}
    with pytest.raises(ClusterConfigError, match="only explore and label have it"):
        validate_cluster_config(cluster)


#: each test here (or its fixtures) takes over ~30 s: `make test` starts this file early (tests/conftest.py)
pytestmark = pytest.mark.slow
