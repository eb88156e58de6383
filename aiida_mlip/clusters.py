"""Describe a cluster once in YAML: its AiiDA computer, the codes on it and the resources of each step.

``aiida-mlip setup computer cluster.yaml`` creates (or checks) the computer and its codes;
``aiida-mlip launch --cluster cluster.yaml`` runs the active-learning steps there with the per-step
``metadata.options`` of the file. The format (every key but ``computer.label``, ``hostname``,
``transport``, ``scheduler`` and ``workdir`` is optional)::

    computer:
      label: my-cluster
      hostname: login.example.org
      description: CPU and GPU partitions
      transport: core.ssh              # core.local for this machine
      scheduler: core.slurm            # core.direct, core.slurm, core.pbspro, core.sge, core.lsf ...
      workdir: /scratch/{username}/aiida
      mpirun_command: srun             # a string or a list
      default_mpiprocs_per_machine: 32
      shebang: "#!/bin/bash"
      prepend_text: ""                 # lines before every job's commands
      use_double_quotes: false
      minimum_job_poll_interval: 10    # seconds between two scheduler queries
    configure:                         # the transport's settings, as `verdi computer configure`
      username: me
      key_filename: ~/.ssh/id_ed25519
      safe_interval: 5
    codes:
      engine:                          # aiida-mlip-train/-explore/-select/-label on that computer
        bin: /home/me/mlip-engine/bin  # their folder; `auto`: beside this Python (this machine only)
        prefix: mlip                   # codes mlip-train, mlip-explore, ...
        prepend_text: module load cuda/12.4
      pw:                              # optional: Quantum ESPRESSO
        executable: /opt/qe/bin/pw.x
        label: pw
        prepend_text: module load qe
    steps:                             # metadata.options of each step (plus `device` for train)
      label: {queue_name: cpu, resources: {num_machines: 1, num_mpiprocs_per_machine: 32}, max_wallclock_seconds: 3600}
      # explore and label may set max_concurrent: most jobs of the step at once (default: no cap
      # behind a scheduler; the CPUs divided by the processes of a job on core.direct)
      train: {queue_name: gpu, custom_scheduler_commands: "#SBATCH --gres=gpu:1", device: cuda}
      explore: {queue_name: cpu}
      select: {queue_name: cpu}

The placeholders ``{username}`` in ``workdir`` are AiiDA's own. Examples: ``examples/clusters/``.
"""

from __future__ import annotations

import pathlib
import sys
from dataclasses import dataclass, field

from aiida_mlip.codes import ENGINE_EXECUTABLES, get_or_create_code, register_engine_codes

__all__ = (
    "ClusterConfig",
    "ClusterConfigError",
    "load_cluster_config",
    "setup_cluster",
    "step_options",
)

COMPUTER_REQUIRED = ("label", "hostname", "transport", "scheduler", "workdir")
COMPUTER_OPTIONAL = (
    "description",
    "mpirun_command",
    "default_mpiprocs_per_machine",
    "default_memory_per_machine",
    "shebang",
    "prepend_text",
    "append_text",
    "use_double_quotes",
    "minimum_job_poll_interval",
)
TOP_LEVEL = ("computer", "configure", "codes", "steps")
STEPS = ("explore", "select", "label", "train")
ENGINE_OPTIONAL = ("prefix", "prepend_text", "append_text")
PW_OPTIONAL = ("label", "prepend_text", "append_text")
DEVICES = ("auto", "cpu", "cuda")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class ClusterConfigError(ValueError):
    """A cluster description that cannot be used, with the key that is wrong."""


@dataclass
class ClusterConfig:
    """A validated cluster description (see the module docstring for the keys)."""

    computer: dict
    configure: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    source: str = "<mapping>"

    @property
    def label(self) -> str:
        return self.computer["label"]


def _check_keys(mapping, allowed, where: str, required=()) -> None:
    if not isinstance(mapping, dict):
        raise ClusterConfigError(f"{where} must be a mapping, not {type(mapping).__name__}")
    unknown = sorted(set(mapping) - set(allowed) - set(required))
    if unknown:
        raise ClusterConfigError(
            f"{where}: unknown key(s) {unknown}; allowed: {sorted({*required, *allowed})}"
        )
    missing = [key for key in required if mapping.get(key) in (None, "")]
    if missing:
        raise ClusterConfigError(f"{where}: missing {missing}")


def _check_plugin(group: str, name: str, where: str) -> None:
    from aiida.plugins.entry_point import get_entry_point_names

    names = get_entry_point_names(group)
    if name not in names:
        raise ClusterConfigError(f"{where}: unknown {group.split('.')[-1][:-1]} {name!r}; installed: {names}")


def validate_cluster_config(values: dict, source: str = "<mapping>") -> ClusterConfig:
    """Check a cluster description and return it as a :class:`ClusterConfig`.

    Raises
    ------
    ClusterConfigError
        Naming the key that is missing, unknown or wrong.
    """
    from aiida_mlip.calculations.train import is_device_name

    _check_keys(values, TOP_LEVEL, source, required=("computer",))
    computer = values["computer"]
    _check_keys(computer, COMPUTER_OPTIONAL, f"{source}: computer", required=COMPUTER_REQUIRED)
    _check_plugin("aiida.transports", computer["transport"], f"{source}: computer.transport")
    _check_plugin("aiida.schedulers", computer["scheduler"], f"{source}: computer.scheduler")
    configure = values.get("configure") or {}
    if not isinstance(configure, dict):
        raise ClusterConfigError(f"{source}: configure must be a mapping")
    codes = values.get("codes") or {}
    _check_keys(codes, ("engine", "pw"), f"{source}: codes")
    if "engine" in codes:
        _check_keys(codes["engine"], ENGINE_OPTIONAL, f"{source}: codes.engine", required=("bin",))
    if "pw" in codes:
        _check_keys(codes["pw"], PW_OPTIONAL, f"{source}: codes.pw", required=("executable",))
    steps = values.get("steps") or {}
    _check_keys(steps, STEPS, f"{source}: steps")
    steps = {step: options or {} for step, options in steps.items()}
    for step, options in steps.items():
        if not isinstance(options, dict):
            raise ClusterConfigError(
                f"{source}: steps.{step} must be a mapping, not {type(options).__name__}"
            )
        device = options.get("device")
        if device is not None and step != "train":
            raise ClusterConfigError(f"{source}: steps.{step}.device: only the train step has a device")
        if device is not None and not is_device_name(str(device)):
            raise ClusterConfigError(f"{source}: steps.train.device must be one of {DEVICES} or cuda:N")
    _check_step_options(steps, source)
    return ClusterConfig(dict(computer), dict(configure), dict(codes), steps, source)


def _check_step_options(steps: dict, source: str) -> None:
    """Refuse option names a CalcJob does not have, before anything is created."""
    from aiida_mlip.calculations.train import TrainCalculation

    known = set(TrainCalculation.spec().inputs["metadata"]["options"].keys())
    for step, options in steps.items():
        unknown = sorted(set(options) - known - {"device", "max_concurrent"})
        if "max_concurrent" in options and step not in ("explore", "label"):
            raise ClusterConfigError(f"{source}: steps.{step}.max_concurrent: only explore and label have it")
        if unknown:
            raise ClusterConfigError(f"{source}: steps.{step}: unknown metadata.options {unknown}")


def load_cluster_config(path: str | pathlib.Path) -> ClusterConfig:
    """Read and validate a cluster YAML file."""
    import yaml

    path = pathlib.Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as exception:
        raise ClusterConfigError(f"cannot read {path}: {exception}") from exception
    except yaml.YAMLError as exception:
        raise ClusterConfigError(f"{path} is not valid YAML: {exception}") from exception
    return validate_cluster_config(values or {}, source=str(path))


def _engine_bin(engine: dict, computer) -> pathlib.PurePath:
    if engine["bin"] == "auto":
        if computer.transport_type != "core.local" and computer.hostname not in LOCAL_HOSTS:
            raise ClusterConfigError(
                "codes.engine.bin: `auto` (this Python's folder) only works for this machine; give the "
                f"folder of the aiida-mlip-* executables on {computer.hostname}"
            )
        return pathlib.Path(sys.executable).parent
    return pathlib.PurePosixPath(engine["bin"])


def setup_cluster(config: ClusterConfig, log=print) -> dict:
    """Create (or reuse) the computer and codes of ``config``; return the codes by plugin name.

    An existing computer with the same label is reused when its hostname, transport and scheduler
    match, and refused otherwise (so a typo never re-points a computer that has calculations).
    Codes are registered once; an existing code with another executable is kept and reported.

    Raises
    ------
    ClusterConfigError
        If the computer exists with other settings, or an engine executable is missing on a
        ``core.local`` computer.
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    settings = config.computer
    try:
        computer = orm.load_computer(settings["label"])
        for key, attribute in (
            ("hostname", "hostname"),
            ("transport", "transport_type"),
            ("scheduler", "scheduler_type"),
        ):
            if getattr(computer, attribute) != settings[key]:
                raise ClusterConfigError(
                    f"computer {computer.label!r} exists with {key} {getattr(computer, attribute)!r}, "
                    f"not {settings[key]!r}: pick another label or fix the file"
                )
        log(f"computer {computer.label} <{computer.pk}> exists")
    except NotExistent:
        computer = orm.Computer(
            label=settings["label"],
            hostname=settings["hostname"],
            description=settings.get("description", f"set up by aiida-mlip from {config.source}"),
            transport_type=settings["transport"],
            scheduler_type=settings["scheduler"],
            workdir=settings["workdir"],
        )
        mpirun = settings.get("mpirun_command")
        if mpirun is not None:
            computer.set_mpirun_command(mpirun.split() if isinstance(mpirun, str) else list(mpirun))
        for key in ("shebang", "prepend_text", "append_text", "use_double_quotes"):
            if key in settings:
                getattr(computer, f"set_{key}")(settings[key])
        computer.store()
        computer.set_default_mpiprocs_per_machine(settings.get("default_mpiprocs_per_machine", 1))
        if "default_memory_per_machine" in settings:
            computer.set_default_memory_per_machine(settings["default_memory_per_machine"])
        computer.set_minimum_job_poll_interval(settings.get("minimum_job_poll_interval", 10.0))
        log(
            f"created computer {computer.label} <{computer.pk}> ({settings['transport']}, {settings['scheduler']})"
        )
    if not computer.is_configured:
        configure = dict(config.configure)
        if "key_filename" in configure:
            configure["key_filename"] = str(pathlib.Path(configure["key_filename"]).expanduser())
        configure.setdefault("safe_interval", 0.0 if settings["transport"] == "core.local" else 5.0)
        computer.configure(**configure)
        log(f"configured computer {computer.label} for the current user")

    codes = {}
    engine = config.codes.get("engine")
    if engine is not None:
        folder = _engine_bin(engine, computer)
        paths = {executable: folder / executable for executable in ENGINE_EXECUTABLES}
        for path in paths.values():
            if computer.hostname in LOCAL_HOSTS and not pathlib.Path(path).is_file():
                raise ClusterConfigError(f"codes.engine.bin: {path} does not exist on this machine")
        codes.update(
            register_engine_codes(
                computer, prefix=engine.get("prefix", "mlip"), log=log, paths=paths, settings=engine
            )
        )
    pw = config.codes.get("pw")
    if pw is not None:
        codes["quantumespresso.pw"] = get_or_create_code(
            computer, pw.get("label", "pw"), pw["executable"], "quantumespresso.pw", pw, log
        )
    return codes


def step_options(config: ClusterConfig) -> dict:
    """The per-step options of ``config`` in the form ``get_builder_from_protocol(options=...)`` takes."""
    return {step: dict(options) for step, options in config.steps.items()}
