"""How many jobs of one step may run at once on a computer: the ``max_concurrent`` of the work chains.

A work chain with many independent jobs (one pw.x per structure, one MD per temperature) submits
them in waves of at most ``max_concurrent`` and waits for each wave before the next. Without an
explicit value the cap comes from the computer: on a ``core.direct`` scheduler (nothing else
queues the jobs) it is the machine's CPU count (``os.cpu_count()`` for this machine, i.e. a
``core.local`` transport; the computer's ``default_mpiprocs_per_machine`` for another host)
divided by the processes of one job, so a 2-core machine does not start 9 pw.x at once. Behind a
real scheduler (SLURM, PBS...) the queue decides: no cap unless one is given.
"""

from __future__ import annotations

import os

from aiida import orm

__all__ = ("default_max_concurrent", "resolve_max_concurrent", "validate_max_concurrent")


def default_max_concurrent(computer: orm.Computer, processes_per_job: int = 1) -> int | None:
    """The cap for jobs of ``processes_per_job`` MPI processes on ``computer``; ``None``: no cap."""
    if computer.scheduler_type != "core.direct":
        return None
    if computer.transport_type == "core.local":
        cpus = os.cpu_count()
    else:
        cpus = computer.get_default_mpiprocs_per_machine()
    if not cpus:
        return None
    return max(1, cpus // max(1, processes_per_job))


def resolve_max_concurrent(
    given: orm.Int | None, code: orm.AbstractCode, options: dict | None = None
) -> int | None:
    """``given`` when set, else :func:`default_max_concurrent` for ``code``'s computer and the job's ``options``."""
    if given is not None:
        return given.value
    resources = (options or {}).get("resources", {})
    processes = resources.get("tot_num_mpiprocs") or resources.get("num_machines", 1) * resources.get(
        "num_mpiprocs_per_machine", 1
    )
    return default_max_concurrent(code.computer, processes)


def validate_max_concurrent(value, _):
    """At least one job at a time."""
    if value is not None and value.value < 1:
        return f"max_concurrent must be at least 1, got {value.value}"
    return None
