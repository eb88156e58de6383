"""docker-compose.yml, the Dockerfile and docker/entrypoint.sh, checked without a Docker engine.

There is none on the development machines, so the recipe is checked here instead of built: the
compose file parses and its services agree with each other and with the entrypoint, every option
the entrypoint gives to ``verdi`` and ``aiida-mlip`` exists, and the image installs Quantum ESPRESSO
and the pinned CPU torch. The last test runs the entrypoint itself against the PostgreSQL and
RabbitMQ of this machine (what the containers would do, minus the containers).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    POSTGRES,
    RABBITMQ,
    _create_postgres_database,
    _drop_postgres_database,
    _reachable,
    require_component,
)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
TEN_HOURS_MS = 10 * 3600 * 1000


ENV_EXAMPLE = ROOT / ".env.example"
PORTS_OVERRIDE = ROOT / "docker-compose.ports.yml"


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def _interpolate(value, variables: dict[str, str]):
    """Compose's ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``, over nested mappings and lists."""
    if isinstance(value, dict):
        return {key: _interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match):
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if variables.get(name):
            return variables[name]
        if operator == ":?":
            raise KeyError(f"{name}: {argument}")
        return argument or ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", substitute, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(compose_raw) -> dict:
    """docker-compose.yml as compose resolves it with a copy of .env.example as .env."""
    return _interpolate(compose_raw, _env_file(ENV_EXAMPLE))


@pytest.fixture(scope="module")
def aiida_env(compose) -> dict:
    return {key: str(value) for key, value in compose["services"]["aiida"]["environment"].items()}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [tuple(line.strip().split(None, 1)) for line in text.splitlines() if line.strip()]


def _entrypoint_commands(program: str) -> list[list[str]]:
    """The command lines of the entrypoint that run ``program``, as shell words."""
    text = re.sub(r"\\\n", " ", ENTRYPOINT.read_text())
    commands = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        while words and words[0] in ("if", "then", "else", "while", "until", "!"):
            words = words[1:]
        if words and words[0] == program:
            commands.append(words)
    return commands


def _subcommand_and_options(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """``verdi -p X profile setup core.psql_dos --a 1 --b`` -> ``(("profile", "setup", "core.psql_dos"), ["--a", "--b"])``."""
    rest = words[1:]
    if rest[:1] == ["-p"]:
        rest = rest[2:]
    path = []
    for word in rest:
        if not re.fullmatch(r"[a-z][a-z0-9._-]*", word):
            break
        path.append(word)
    options = [word.split("=", 1)[0] for word in rest if word.startswith("--")]
    return tuple(path), options


def test_services_and_volumes(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "rabbitmq", "aiida"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    declared = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in declared, volume


def test_rabbitmq_consumer_timeout_is_raised(compose):
    erl_args = compose["services"]["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    match = re.search(r"-rabbit\s+consumer_timeout\s+(\d+)\b", erl_args)
    assert match, erl_args
    assert int(match.group(1)) >= TEN_HOURS_MS


def test_aiida_waits_for_healthy_services(compose):
    services = compose["services"]
    depends_on = services["aiida"]["depends_on"]
    for name in ("postgres", "rabbitmq"):
        assert depends_on[name]["condition"] == "service_healthy"
        assert services[name]["healthcheck"]["test"]


def test_aiida_environment_matches_postgres_and_rabbitmq(compose, aiida_env):
    postgres = compose["services"]["postgres"]["environment"]
    assert aiida_env["AIIDA_MLIP_DB_HOST"] == "postgres"
    assert aiida_env["AIIDA_MLIP_DB_PORT"] == "5432"  # inside the compose network, whatever is published
    assert aiida_env["AIIDA_MLIP_DB_USER"] == postgres["POSTGRES_USER"]
    assert aiida_env["AIIDA_MLIP_DB_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert aiida_env["AIIDA_MLIP_DB_NAME"] == postgres.get("POSTGRES_DB", postgres["POSTGRES_USER"])

    rabbitmq = compose["services"]["rabbitmq"]["environment"]
    user = rabbitmq.get("RABBITMQ_DEFAULT_USER", "guest")
    assert user != "guest", "RabbitMQ refuses the guest user to every host but localhost"
    assert aiida_env["AIIDA_BROKER_PROTOCOL"] == "amqp"
    assert aiida_env["AIIDA_BROKER_HOST"] == "rabbitmq"
    assert aiida_env["AIIDA_BROKER_PORT"] == "5672"
    assert aiida_env["AIIDA_BROKER_USERNAME"] == user
    assert aiida_env["AIIDA_BROKER_PASSWORD"] == rabbitmq["RABBITMQ_DEFAULT_PASS"]
    assert aiida_env["AIIDA_BROKER_VIRTUAL_HOST"] == rabbitmq.get("RABBITMQ_DEFAULT_VHOST", "/").lstrip("/")


def test_aiida_keeps_config_and_repository_on_volumes(compose, aiida_env):
    targets = [volume.split(":")[1] for volume in compose["services"]["aiida"]["volumes"]]
    assert "/home/aiida/.aiida" in targets
    repository = Path(aiida_env["AIIDA_MLIP_REPOSITORY"])
    assert any(repository == Path(target) or Path(target) in repository.parents for target in targets)


def test_no_published_ports_by_default_and_loopback_only_when_opted_in(compose_raw):
    for name, service in compose_raw["services"].items():
        assert "ports" not in service and "network_mode" not in service, name
    override = yaml.safe_load(PORTS_OVERRIDE.read_text())
    assert set(override["services"]) == {"postgres", "rabbitmq"}
    for service in override["services"].values():
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), port
    readme = (ROOT / "README.md").read_text()
    assert "docker-compose.ports.yml" in readme and ".env.example" in readme


def test_credentials_come_from_dotenv_and_are_required(compose_raw):
    with pytest.raises(KeyError, match="AIIDA_MLIP_DB_PASSWORD: set AIIDA_MLIP_DB_PASSWORD in .env"):
        _interpolate(compose_raw, {})
    secrets_in_file = re.findall(r"(?:PASSWORD|_PASS):\s*(\S+)", COMPOSE.read_text())
    assert secrets_in_file and all(value.startswith("${") for value in secrets_in_file), secrets_in_file
    assert ".env" in (ROOT / ".gitignore").read_text().split() or "/.env" in (ROOT / ".gitignore").read_text()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def _run_entrypoint(**variables) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AIIDA_")}
    environment.update(
        AIIDA_MLIP_DB_HOST="127.0.0.1", AIIDA_MLIP_DB_PORT="1", AIIDA_MLIP_WAIT_SECONDS="0", **variables
    )
    return subprocess.run(
        ["bash", str(ENTRYPOINT), "true"], capture_output=True, text=True, env=environment, timeout=60
    )


@pytest.mark.parametrize("variable", ["AIIDA_MLIP_DB_PASSWORD", "AIIDA_BROKER_PASSWORD"])
def test_entrypoint_refuses_example_and_empty_passwords(variable):
    example = _env_file(ENV_EXAMPLE)
    good = {"AIIDA_MLIP_DB_PASSWORD": "s3cret-db", "AIIDA_BROKER_PASSWORD": "s3cret-mq"}
    for password in (
        example["AIIDA_MLIP_DB_PASSWORD"],
        example["AIIDA_MLIP_BROKER_PASSWORD"],
        "aiida",
        "guest",
    ):
        result = _run_entrypoint(**dict(good, **{variable: password}))
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{variable} is the example password '{password}'" in result.stdout
        assert "answers at" not in result.stdout and "did not answer" not in result.stdout
    result = _run_entrypoint(**dict(good, **{variable: ""}))
    assert result.returncode == 2 and f"{variable} is not set" in result.stdout
    # told otherwise: it goes on to wait for PostgreSQL (nothing listens on port 1)
    allowed = _run_entrypoint(**dict(good, **{variable: "aiida"}), AIIDA_MLIP_ALLOW_EXAMPLE_PASSWORDS="1")
    assert allowed.returncode == 1 and "PostgreSQL at 127.0.0.1:1 did not answer" in allowed.stdout


def test_image_runs_as_an_unprivileged_user():
    instructions = _dockerfile_instructions()
    users = [
        (index, arguments)
        for index, (instruction, arguments) in enumerate(instructions)
        if instruction == "USER"
    ]
    assert users, "the Dockerfile has no USER: the image would run as root"
    last_index, user = users[-1]
    assert user.split(":")[0] not in ("root", "0")
    entrypoint_index = next(
        i for i, (instruction, _) in enumerate(instructions) if instruction == "ENTRYPOINT"
    )
    assert last_index < entrypoint_index
    created = " ".join(arguments for instruction, arguments in instructions if instruction == "RUN")
    assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", created)
    assert "OMPI_ALLOW_RUN_AS_ROOT" not in (ROOT / "Dockerfile").read_text()


def test_entrypoint_exists_parses_and_reads_the_compose_variables(aiida_env):
    assert ENTRYPOINT.is_file() and os.access(ENTRYPOINT, os.X_OK)
    check = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    read = set(re.findall(r"\$\{(AIIDA_[A-Z_]+):=", ENTRYPOINT.read_text()))
    assert set(aiida_env) <= read, (
        f"set in docker-compose.yml but unknown to the entrypoint: {set(aiida_env) - read}"
    )


def test_verdi_and_aiida_mlip_options_of_the_entrypoint_exist():
    """Every subcommand the entrypoint runs exists and knows every ``--option`` it is given."""
    bindir = Path(sys.executable).parent
    invocations = {}
    for program in ("verdi", "aiida-mlip"):
        executable = str(bindir / program) if (bindir / program).exists() else shutil.which(program)
        assert executable, f"{program} is not installed"
        commands = _entrypoint_commands(program)
        assert commands, program
        for words in commands:
            path, options = _subcommand_and_options(words)
            invocations.setdefault((executable, path), set()).update(options)
    paths = {path for _, path in invocations}
    assert ("profile", "setup", "core.psql_dos") in paths
    assert ("profile", "configure-broker", "core.rabbitmq") in paths
    assert ("daemon", "start") in paths
    # all --help at once: each is a Python start-up
    helps = {
        key: subprocess.Popen(
            [key[0], *key[1], "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for key in invocations
    }
    for (executable, path), process in helps.items():
        text, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"{Path(executable).name} {' '.join(path)} --help:\n{text}"
        for option in invocations[(executable, path)]:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
                f"{Path(executable).name} {' '.join(path)} has no option {option}"
            )


def test_dockerfile_installs_quantum_espresso_torch_and_the_entrypoint(compose):
    assert compose["services"]["aiida"]["build"] in (".", {"context": "."})
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    runs = [arguments for instruction, arguments in instructions if instruction == "RUN"]
    apt = next(run for run in runs if "apt-get install" in run)
    assert {"quantum-espresso", "quantum-espresso-data"} <= set(apt.split())

    makefile_pin = re.search(r"torch==([\w.+]+)", (ROOT / "Makefile").read_text()).group(1)
    assert makefile_pin == "2.13.0"
    torch_index = next(index for index, run in enumerate(runs) if "torch==" in run)
    torch_words = runs[torch_index].split()
    assert f"torch=={makefile_pin}" in torch_words
    assert torch_words[torch_words.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    project_index = next(index for index, run in enumerate(runs) if re.search(r"pip install \.(\s|$)", run))
    assert torch_index < project_index, "torch must come first, or aiida-mlip pulls a CUDA build"

    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and line[0] != "#"
    ]
    copies = [arguments.split() for instruction, arguments in instructions if instruction == "COPY"]
    for *sources, _ in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    (entrypoint_copy,) = [copy for copy in copies if copy[0] == "docker/entrypoint.sh"]
    (entrypoint,) = [
        json.loads(arguments) for instruction, arguments in instructions if instruction == "ENTRYPOINT"
    ]
    assert entrypoint == [entrypoint_copy[-1]]


@pytest.mark.slow
def test_entrypoint_sets_up_a_profile_and_runs_the_daemon(tmp_path):
    """The entrypoint against this machine's PostgreSQL and RabbitMQ: first start, restart, daemon, stop."""
    require_component(_reachable(POSTGRES) and _reachable(RABBITMQ), "PostgreSQL and RabbitMQ on 127.0.0.1")
    database = f"aiida_mlip_entrypoint_{secrets.token_hex(4)}"
    profile = "entrypoint-test"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AIIDA_")}
    environment.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        AIIDA_PATH=str(tmp_path / "config"),
        AIIDA_MLIP_PROFILE=profile,
        AIIDA_MLIP_DB_HOST=POSTGRES[0],
        AIIDA_MLIP_DB_PORT=str(POSTGRES[1]),
        AIIDA_MLIP_DB_USER="postgres",  # what tests/conftest.py uses on this machine (trust authentication)
        AIIDA_MLIP_DB_PASSWORD="unused",
        AIIDA_MLIP_DB_NAME=database,
        AIIDA_MLIP_REPOSITORY=str(tmp_path / "repository"),
        AIIDA_BROKER_HOST=RABBITMQ[0],
        AIIDA_BROKER_PORT=str(RABBITMQ[1]),
        AIIDA_BROKER_USERNAME="guest",
        AIIDA_BROKER_PASSWORD="guest",
        AIIDA_MLIP_ALLOW_EXAMPLE_PASSWORDS="1",  # the local RabbitMQ's guest account
        AIIDA_MLIP_DAEMON_WORKERS="1",
        AIIDA_MLIP_WAIT_SECONDS="10",
    )
    config_dir = tmp_path / "config" / ".aiida"
    _create_postgres_database(database)
    daemon = None
    try:
        first = subprocess.run(
            ["bash", str(ENTRYPOINT), "verdi", "-p", profile, "status"],
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"first start: creating profile {profile}" in first.stdout

        inspect = """
import json
from aiida import load_profile, orm
profile = load_profile()
codes = [code.full_label for code in orm.QueryBuilder().append(orm.InstalledCode).all(flat=True)]
groups = [group.label for group in orm.QueryBuilder().append(orm.Group).all(flat=True)]
print(json.dumps({"storage": profile.storage_backend, "database": profile.storage_config["database_name"],
                  "broker": profile.process_control_backend,
                  "broker_host": profile.process_control_config["broker_host"], "codes": codes, "groups": groups}))
"""
        state = subprocess.run(
            [sys.executable, "-c", inspect], capture_output=True, text=True, env=environment, timeout=120
        )
        assert state.returncode == 0, state.stderr
        state = json.loads(state.stdout.splitlines()[-1])
        assert state["storage"] == "core.psql_dos" and state["database"] == database
        assert state["broker"] == "core.rabbitmq" and state["broker_host"] == RABBITMQ[0]
        assert {f"mlip-{step}@localhost" for step in ("train", "explore", "select", "label")} <= set(
            state["codes"]
        )
        if shutil.which("pw.x"):
            assert "pw@localhost" in state["codes"] and "debian/pbe" in state["groups"]

        # second start, in daemon mode: the profile is kept, the daemon runs until SIGTERM
        log = tmp_path / "daemon.log"
        with log.open("w") as stream:
            daemon = subprocess.Popen(
                ["bash", str(ENTRYPOINT)], stdout=stream, stderr=subprocess.STDOUT, env=environment
            )
        deadline = time.monotonic() + 180
        while "its log follows" not in log.read_text():
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        output = log.read_text()
        assert f"profile {profile} exists: kept" in output and "first start" not in output
        assert (config_dir / "daemon" / f"circus-{profile}.pid").is_file()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=120) == 0, log.read_text()
        assert "stopping the daemon" in log.read_text()
        assert not (config_dir / "daemon" / f"circus-{profile}.pid").exists()
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        if (config_dir / "daemon" / f"circus-{profile}.pid").exists():
            subprocess.run(["verdi", "-p", profile, "daemon", "stop"], env=environment, timeout=120)
        _drop_postgres_database(database)
