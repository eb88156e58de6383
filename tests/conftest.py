"""Test configuration: a temporary AiiDA profile on the best backend this machine offers.

PostgreSQL (``core.psql_dos``) + RabbitMQ on 127.0.0.1 when both answer, which is the production
set-up and what CI runs; otherwise SQLite (``core.sqlite_dos``) + the ZeroMQ broker. Under
``CI=true`` the fallback is refused: there ``.ci/run`` has started the services, so their absence
is a failure. The header of the test report says which backend was used.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket

import pytest

pytest_plugins = ["aiida.tools.pytest_fixtures"]

POSTGRES = ("127.0.0.1", 5432)
RABBITMQ = ("127.0.0.1", 5672)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(address: tuple[str, int], timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def services_backend() -> str:
    """Return ``"psql+rabbitmq"`` or ``"sqlite+zeromq"`` for this machine.

    ``AIIDA_MLIP_TEST_BACKEND=sqlite`` forces the embedded fallback (to test it on a machine with
    the services); ``=psql`` insists on the services.
    """
    wanted = os.environ.get("AIIDA_MLIP_TEST_BACKEND", "auto")
    if wanted == "sqlite" and not IN_CI:
        return "sqlite+zeromq"
    if _reachable(POSTGRES) and _reachable(RABBITMQ):
        return "psql+rabbitmq"
    if IN_CI or wanted == "psql":
        raise RuntimeError(
            f"PostgreSQL {POSTGRES} or RabbitMQ {RABBITMQ} is not reachable (CI=true or AIIDA_MLIP_TEST_BACKEND=psql): .ci/run starts them"
        )
    return "sqlite+zeromq"


def require_component(available: bool, name: str) -> None:
    """Skip the calling test when a system component is missing, but fail under ``CI=true``."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true (.ci/run installs it) but is not available")
    pytest.skip(f"{name} is not available on this machine")


def pytest_collection_modifyitems(config, items):
    """The test files with a test marked ``slow`` first, the rest in their order.

    Under ``make test`` each file is one unit of work of a pytest-xdist worker
    (:func:`pytest_xdist_make_scheduler`): a long file started last would leave one worker running
    it alone at the end.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order within a file is kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (``make test``), with the files that read ``finished_run`` as one unit.

    Each test file runs on one worker, so its module fixtures are made once; the files that use the
    session's ``finished_run`` (a whole active-learning run) go to the same worker, so that run is
    made once, not on every worker. (pytest-xdist's ``loadgroup`` would do this through marks, but
    it renames node ids in a way pytest 9 no longer honours.)
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    tests = config.rootpath / "tests"
    shared = {
        str(path.relative_to(config.rootpath))
        for path in tests.rglob("test_*.py")
        if "finished_run" in path.read_text(encoding="utf-8")
    }

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "finished_run" if path in shared else path

    return FileScheduling(config, log)


def pytest_report_header(config):
    return f"aiida-mlip test profile backend: {services_backend()}"


def _create_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(
        host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE DATABASE \"{name}\" OWNER postgres ENCODING 'UTF8' TEMPLATE template0")


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(
        host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_storage_config(database: str, repository) -> dict:
    """``core.psql_dos`` storage settings for ``database`` on 127.0.0.1 (user postgres, trust) and a file repository."""
    return {
        "database_engine": "postgresql_psycopg",
        "database_hostname": POSTGRES[0],
        "database_port": POSTGRES[1],
        "database_username": "postgres",
        "database_password": "",
        "database_name": database,
        "repository_uri": f"file://{repository}",
    }


def _patient_daemon(config, profile) -> None:
    """Give daemon commands a minute: on 2 busy cores, stopping workers takes longer than the default 2 s."""
    config.set_option("daemon.timeout", 60, scope=profile.name)
    config.store()


@pytest.fixture(scope="session")
def aiida_profile(aiida_config, aiida_profile_factory, tmp_path_factory):
    """Session profile on PostgreSQL + RabbitMQ when reachable, else SQLite + ZeroMQ."""
    backend = services_backend()
    if backend == "psql+rabbitmq":
        database = f"aiida_mlip_test_{secrets.token_hex(6)}"
        _create_postgres_database(database)
        repository = tmp_path_factory.mktemp("repository")
        try:
            with aiida_profile_factory(
                aiida_config,
                storage_backend="core.psql_dos",
                storage_config=postgres_storage_config(database, repository),
                broker_backend="core.rabbitmq",
            ) as profile:
                _patient_daemon(aiida_config, profile)
                yield profile
        finally:
            _drop_postgres_database(database)
            shutil.rmtree(repository, ignore_errors=True)
    else:
        with aiida_profile_factory(aiida_config, broker_backend="core.zeromq") as profile:
            _patient_daemon(aiida_config, profile)
            yield profile


@pytest.fixture(autouse=True)
def _reports_go_to_the_database():
    """Every test starts with aiida's database log handler in place.

    An in-process CLI command (``CliRunner``) calls ``configure_logging()`` without the ORM handler,
    after which no process report would be stored for the rest of the session: a later test reading
    ``Log`` entries would find none.
    """
    from aiida.common.log import configure_logging

    configure_logging(with_orm=True)


@pytest.fixture(scope="session")
def backend_name(aiida_profile) -> str:
    """``"core.psql_dos"`` or ``"core.sqlite_dos"``: the storage the session profile uses."""
    return aiida_profile.storage_backend


def engine_executable(name: str) -> str:
    """Absolute path of an ``aiida-mlip-*`` console script of this installation."""
    import pathlib
    import sys

    beside_python = pathlib.Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"the console script {name} is not installed: run `pip install -e .`")
    return found


@pytest.fixture
def engine_code(aiida_localhost, aiida_code_installed):
    """Return a factory of ``InstalledCode`` nodes for the engine executables on ``localhost``."""

    def factory(entry_point: str):
        executable = engine_executable(f"aiida-mlip-{entry_point.split('.', 1)[1]}")
        return aiida_code_installed(default_calc_job_plugin=entry_point, filepath_executable=executable)

    return factory


def slurm_ready() -> bool:
    """Whether a SLURM controller answers and has a node that accepts jobs (scripts/slurm-local.sh)."""
    import subprocess

    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=20
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return False
    return any(state.rstrip("*") in ("idle", "mixed", "allocated") for state in states)


@pytest.fixture(scope="session")
def slurm_codes(aiida_profile):
    """The ``slurm-local`` computer of ``examples/clusters/slurm-local.yaml`` and its codes, by plugin.

    Skips without a SLURM cluster (fails under ``CI=true``, where ``.ci/run`` starts one).
    """
    require_component(slurm_ready(), "a SLURM cluster (sudo scripts/slurm-local.sh)")
    return _example_cluster_codes("slurm-local.yaml")


def _example_cluster_codes(name: str) -> dict:
    """Set up ``examples/clusters/<name>``; return its codes by plugin and its ``steps`` options."""
    import pathlib

    from aiida_mlip.clusters import load_cluster_config, setup_cluster

    config = load_cluster_config(pathlib.Path(__file__).parents[1] / "examples" / "clusters" / name)
    codes = setup_cluster(config, log=lambda *_: None)
    codes["steps"] = config.steps
    return codes


def ssh_localhost_ready() -> bool:
    """Whether this user can SSH to localhost with the key of scripts/ssh-localhost.sh."""
    import pathlib
    import subprocess

    key = pathlib.Path.home() / ".ssh" / "aiida_mlip_localhost"
    if not key.is_file() or not shutil.which("ssh"):
        return False
    try:
        command = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-i",
            str(key),
            "localhost",
            "true",
        ]
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def slurm_ssh_codes(aiida_profile):
    """Codes on ``slurm-ssh``: the local SLURM cluster over AiiDA's core.ssh_async transport."""
    require_component(slurm_ready(), "a SLURM cluster (sudo scripts/slurm-local.sh)")
    require_component(ssh_localhost_ready(), "SSH to localhost (scripts/ssh-localhost.sh)")
    return _example_cluster_codes("slurm-ssh-localhost.yaml")


# ------------------------------------------------------------------------------------------------
# generate_calc_job: a CalcJob's prepare_for_submission without running it (helper i12tests)
# ------------------------------------------------------------------------------------------------


class PreparedCalcJob:
    """What ``prepare_for_submission`` made: the submission folder and the ``CalcInfo``.

    Attributes
    ----------
    folder : aiida.common.folders.Folder
        The folder the CalcJob wrote its input files into.
    calcinfo : aiida.common.datastructures.CalcInfo
        The files to copy and retrieve and the one ``CodeInfo`` with the command-line arguments.
    """

    def __init__(self, folder, calcinfo):
        self.folder = folder
        self.calcinfo = calcinfo

    @property
    def arguments(self) -> list[str]:
        """The executable's command-line arguments (``cmdline_params`` of the single code)."""
        (codeinfo,) = self.calcinfo.codes_info
        return list(codeinfo.cmdline_params)

    def option(self, flag: str) -> str | None:
        """The value after ``flag`` in the arguments, ``None`` when the flag is absent."""
        arguments = self.arguments
        return arguments[arguments.index(flag) + 1] if flag in arguments else None

    @property
    def uploads(self) -> dict[str, tuple[str, str]]:
        """``{target name: (source node uuid, file name in its repository)}`` of ``local_copy_list``."""
        return {target: (uuid, name) for uuid, name, target in self.calcinfo.local_copy_list}

    def written(self) -> list[str]:
        """Names of the files written into the submission folder, sorted."""
        return sorted(self.folder.get_content_list())

    def read_json(self, name: str):
        import json

        with self.folder.open(name, "r", encoding="utf8") as handle:
            return json.load(handle)


@pytest.fixture
def generate_calc_job(tmp_path):
    """Return a factory that instantiates a CalcJob and calls its ``prepare_for_submission``.

    ``generate_calc_job("mlip.train", inputs)`` validates ``inputs`` exactly as a submission would
    (input validators run when the process is made), writes the input files into a fresh folder
    under ``tmp_path`` and returns a :class:`PreparedCalcJob`. Nothing is uploaded or run.
    """
    from aiida.common.folders import Folder
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager
    from aiida.plugins import CalculationFactory

    count = iter(range(1_000_000))

    def factory(entry_point: str, inputs: dict) -> PreparedCalcJob:
        folder = Folder(str(tmp_path / f"submit-{next(count)}"))
        folder.create()
        process = instantiate_process(get_manager().get_runner(), CalculationFactory(entry_point), **inputs)
        return PreparedCalcJob(folder, process.prepare_for_submission(folder))

    return factory


# ------------------------------------------------------------------------------------------------
# end of generate_calc_job
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# finished_run: ONE active-learning run shared by the tests of what reads finished runs (helper i12tests)
# ------------------------------------------------------------------------------------------------

#: Labeller of the shared run, in the ``ase:module.Class:{json kwargs}`` form of ``aiida-mlip launch``
#: (``asap_cutoff`` is EMT's own default: the labels are plain EMT).
SHARED_RUN_LABELLER = 'ase:ase.calculators.emt.EMT:{"asap_cutoff": false}'


def shared_run_overrides() -> dict:
    """The ``--overrides`` file of the shared run, over the ``fast`` protocol.

    Iteration 1 explores with a real trust window (its candidates are selected, labelled and trained
    on); iteration 2 widens the window so that every frame is accurate, which converges the run after
    two iterations. The committee is the tiny one of the CalcJob tests. Units: K, fs, eV/Angstrom.
    """
    from tests.calculations.conftest import TINY_TRAINING

    return {
        "initial": {"copies_per_structure": 6, "rattle": 0.06, "strain": 0.02},
        "exploration": {
            "md": {"steps": 60, "check_interval": 5, "timestep": 2.0, "break_threshold": 5.0},
            "schedule": [
                {"temperatures": [300]},
                {"temperatures": [300], "trust": {"lo": 50.0, "hi": 100.0}, "break_threshold": 100.0},
            ],
        },
        "trust": {"lo": 0.01, "hi": 5.0},
        "selection": {"budget": 3},
        "convergence": {"max_iterations": 3, "accurate_fraction": 0.99, "patience": 1},
        "training": dict(TINY_TRAINING, max_epochs=6),
    }


class FinishedRun:
    """The shared run and how it was made.

    Attributes
    ----------
    node : aiida.orm.WorkChainNode
        The terminated ``ActiveLearningWorkChain``.
    structure : aiida.orm.StructureData
        The start structure, given to ``launch`` by its pk.
    launch, watch : click.testing.Result
        ``aiida-mlip launch ... --daemon`` and ``aiida-mlip watch`` that followed the run to its end.
    broker : str
        The profile's broker (``core.rabbitmq`` or ``core.zeromq``): ``watch`` followed live events
        only on RabbitMQ, and polled the database otherwise.
    """

    def __init__(self, node, structure, launch, watch, broker):
        self._pks = (node.pk, structure.pk)
        self.launch, self.watch, self.broker = launch, watch, broker

    # loaded anew on each access: a node object lives only as long as the storage it was loaded from
    @property
    def node(self):
        from aiida import orm

        return orm.load_node(self._pks[0])

    @property
    def structure(self):
        from aiida import orm

        return orm.load_node(self._pks[1])

    def watched(self) -> list[tuple[str, dict]]:
        """``(step, fields)`` of every event ``aiida-mlip watch`` printed (lines ``[iteration] step: {json}``)."""
        import json

        events = []
        for line in self.watch.output.splitlines():
            if line.startswith("["):
                step, _, fields = line.split("]", 1)[1].partition(":")
                events.append((step.strip(), json.loads(fields)))
        return events

    def called(self, label: str):
        """The process the run called with the link label ``label`` (``label_initial``, ``train_1``...)."""
        (node,) = [triple.node for triple in self.node.base.links.get_outgoing(link_label_filter=label).all()]
        return node


def _active_learning_pks() -> set[int]:
    from aiida import orm

    query = orm.QueryBuilder().append(
        orm.WorkChainNode, filters={"attributes.process_label": "ActiveLearningWorkChain"}, project="id"
    )
    return set(query.all(flat=True))


@pytest.fixture(scope="session")
def finished_run(aiida_profile, daemon_client, tmp_path_factory) -> FinishedRun:
    """One fast EMT aluminium run, made the way a user makes one, shared by the whole session.

    ``aiida-mlip launch <StructureData pk> --protocol fast --labeller 'ase:...:{kwargs}' --overrides
    overrides.yaml --daemon`` submits it to the session's daemon (started here if it is not running)
    and ``aiida-mlip watch`` follows it until it ends. One to two minutes on 2 cores.
    """
    import time

    import yaml
    from aiida import orm
    from ase.build import bulk
    from click.testing import CliRunner

    from aiida_mlip.cmdline import cmd_root

    folder = tmp_path_factory.mktemp("finished_run")
    overrides = folder / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(shared_run_overrides()))
    structure = orm.StructureData(ase=bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))).store()

    if not daemon_client.is_daemon_running:
        daemon_client.start_daemon()  # left running: daemon_client stops it at the end of the session
    before = _active_learning_pks()
    runner = CliRunner()
    launch = runner.invoke(
        cmd_root,
        [
            "launch",
            str(structure.pk),
            "--protocol",
            "fast",
            "--labeller",
            SHARED_RUN_LABELLER,
            "--overrides",
            str(overrides),
            "--daemon",
        ],
    )
    assert launch.exit_code == 0, launch.output
    (pk,) = _active_learning_pks() - before
    node = orm.load_node(pk)
    watch = runner.invoke(cmd_root, ["watch", str(pk), "--interval", "2"])
    deadline = time.monotonic() + 900
    while not node.is_terminated:  # the finished event comes just before the end
        assert time.monotonic() < deadline, f"the shared run <{pk}> did not end in 900 s"
        time.sleep(0.5)
    return FinishedRun(node, structure, launch, watch, aiida_profile.process_control_backend)


# ------------------------------------------------------------------------------------------------
# end of finished_run
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def generate_workchain(aiida_profile):
    """Return a factory of work chain instances that are set up but not run, to call outline steps on.

    ``generate_workchain(ActiveLearningWorkChain, builder_or_inputs)`` stores the process node with
    its inputs; a test then sets ``process.ctx`` as the steps before would have and calls one step.
    """

    def factory(process_class, inputs):
        from aiida.engine.processes.builder import ProcessBuilder
        from aiida.engine.utils import instantiate_process
        from aiida.manage import get_manager

        runner = get_manager().get_runner()
        if isinstance(inputs, ProcessBuilder):
            return instantiate_process(runner, inputs)
        return instantiate_process(runner, process_class, **inputs)

    return factory
