"""Computers and codes a run needs: ``localhost``, the engine executables, pw.x.

The library side of ``aiida-mlip setup localhost|pw`` and of cluster files (:mod:`aiida_mlip.clusters`);
``ActiveLearningWorkChain.get_builder_from_protocol`` and the demo use it to register what is missing.
Errors are :class:`CodeSetupError`; the command line turns them into one-line messages.

The ``localhost`` computer created here works in ``<AiiDA folder>/scratch/<profile>``, created with
mode 700 (only its owner may read the jobs' files), one folder per profile.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

__all__ = (
    "ENGINE_EXECUTABLES",
    "CodeSetupError",
    "find_executable",
    "get_or_create_code",
    "get_or_create_localhost",
    "localhost_workdir",
    "register_engine_codes",
    "register_pw_code",
)

#: The engine executables and the CalcJob plugin each one serves.
ENGINE_EXECUTABLES = {
    "aiida-mlip-train": "mlip.train",
    "aiida-mlip-explore": "mlip.explore",
    "aiida-mlip-label": "mlip.label",
    "aiida-mlip-select": "mlip.select",
}
#: The extra of a pw.x code that holds its number of MPI processes (``aiida-mlip setup pw --mpiprocs``).
MPIPROCS_EXTRA = "mlip_mpiprocs"


class CodeSetupError(ValueError):
    """A code or computer that cannot be set up (an executable that is not installed, ...)."""


def find_executable(name: str) -> str | None:
    """Return the path of ``name`` installed beside this Python, else on the ``PATH``."""
    beside_python = pathlib.Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def localhost_workdir(profile_name: str | None = None) -> pathlib.Path:
    """``<AiiDA folder>/scratch/<profile>``, created with mode 700 (owner only) if missing."""
    from aiida.manage import get_manager
    from aiida.manage.configuration.settings import AiiDAConfigDir

    name = profile_name or get_manager().get_profile().name
    workdir = pathlib.Path(AiiDAConfigDir.get()) / "scratch" / name
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(workdir, 0o700)
    return workdir


def get_or_create_localhost(label: str = "localhost"):
    """Return the computer ``label``; create and configure it (core.local, core.direct) if missing.

    A new computer works in :func:`localhost_workdir`, polls its jobs every 0.5 s and runs one MPI
    process per job unless told otherwise. An existing computer is returned as it is (configured for
    this user if it was not).
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        computer = orm.Computer(
            label=label,
            hostname="localhost",
            description="This machine, set up by aiida-mlip",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(localhost_workdir()),
        ).store()
        computer.set_minimum_job_poll_interval(0.5)
        computer.set_default_mpiprocs_per_machine(1)
    if not computer.is_configured:
        computer.configure(safe_interval=0.0)
    return computer


def get_or_create_code(
    computer,
    label: str,
    path: str,
    plugin: str,
    settings: dict | None = None,
    log=print,
    with_mpi: bool | None = None,
):
    """Return the code ``label`` on ``computer``, registering ``path`` for ``plugin`` if it is missing.

    ``settings`` may hold ``prepend_text``/``append_text``; ``with_mpi`` is the new code's
    ``with_mpi`` (``None``: the calculation decides). An existing code is kept as it is; when it runs
    another executable or another MPI setting, that is reported.
    """
    from aiida import orm

    settings = settings or {}
    existing = (
        orm.QueryBuilder()
        .append(orm.Computer, filters={"id": computer.pk}, tag="computer")
        .append(orm.InstalledCode, with_computer="computer", filters={"label": label})
        .first(flat=True)
    )
    if existing is not None:
        if str(existing.filepath_executable) != path:
            log(
                f"kept code {label}@{computer.label} <{existing.pk}>: it runs {existing.filepath_executable}, not {path}"
            )
        elif existing.with_mpi != with_mpi:
            log(
                f"kept code {label}@{computer.label} <{existing.pk}>: it has with_mpi={existing.with_mpi}, not "
                f"{with_mpi}; give another --label for the new setting"
            )
        else:
            log(f"code {label}@{computer.label} <{existing.pk}> exists")
        return existing
    code = orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=path,
        default_calc_job_plugin=plugin,
        prepend_text=settings.get("prepend_text", ""),
        append_text=settings.get("append_text", ""),
        description=f"{plugin} on {computer.label}, set up by aiida-mlip",
        with_mpi=with_mpi,
    ).store()
    log(f"registered code {label}@{computer.label} <{code.pk}>: {path}")
    return code


def register_engine_codes(
    computer, prefix: str = "mlip", log=print, paths: dict | None = None, settings: dict | None = None
) -> dict:
    """Register every engine executable as an ``InstalledCode`` on ``computer``; return them by plugin.

    Codes are labelled ``<prefix>-<step>`` (``mlip-train``, ...). An existing code with that label on
    that computer is kept when it runs the same executable, and reported otherwise. ``paths`` maps
    each executable name to its path on ``computer`` (default: this installation's, found with
    :func:`find_executable`); ``settings`` may hold the codes' ``prepend_text``/``append_text``.

    Raises
    ------
    CodeSetupError
        If ``paths`` is not given and an executable is not installed here.
    """
    codes = {}
    for executable, plugin in ENGINE_EXECUTABLES.items():
        path = paths[executable] if paths is not None else find_executable(executable)
        if path is None:
            raise CodeSetupError(f"{executable} is not installed: run `pip install aiida-mlip` first")
        label = f"{prefix}-{executable.rsplit('-', 1)[1]}"
        codes[plugin] = get_or_create_code(computer, label, str(path), plugin, settings, log=log)
    return codes


def register_pw_code(computer, executable: str, label: str = "pw", mpiprocs: int = 1, log=print):
    """Register ``executable`` as an ``InstalledCode`` ``label`` (plugin ``quantumespresso.pw``) on ``computer``.

    ``mpiprocs`` 1: the code runs without ``mpirun`` (``with_mpi`` False); more: under ``mpirun``
    with that many processes (the code's extra ``mlip_mpiprocs``, read by the ``pw`` labeller). An
    existing code of that label on that computer is returned as it is (and reported when it runs
    another executable or another MPI setting); its ``mlip_mpiprocs`` is updated when the MPI
    setting matches.
    """
    code = get_or_create_code(
        computer, label, executable, "quantumespresso.pw", log=log, with_mpi=mpiprocs > 1
    )
    if code.with_mpi == (mpiprocs > 1):
        code.base.extras.set(MPIPROCS_EXTRA, mpiprocs)
    return code
