"""Run a process here, in the foreground, without waiting a minute for every child.

aiida-core's ``run``/``run_get_node`` (2.9) run a process in a fresh local runner *without* a
communicator, so a work chain run this way never hears the termination broadcast of a child it
submitted: it learns of it only when the runner polls the child's node, every ``runner.poll.interval``
seconds (60 by default; 0 on test profiles, 1 on profiles made by ``verdi presto`` or ``aiida-mlip
setup profile``). On a profile with the default, every step of an active-learning iteration then
starts on a whole-minute boundary (about 4 minutes of overhead per iteration). The daemon's runners
have a communicator and are not affected. :func:`run_get_node` runs the process in a local runner
whose poll interval is at most :data:`FOREGROUND_POLL_INTERVAL`.
"""

from __future__ import annotations

__all__ = ("FOREGROUND_POLL_INTERVAL", "run_get_node")

#: Longest wait (s) between a child's end and its parent's next step in a foreground run.
FOREGROUND_POLL_INTERVAL = 0.5


def run_get_node(
    process, inputs: dict | None = None, poll_interval: float = FOREGROUND_POLL_INTERVAL, **kwargs
):
    """Run ``process`` (a class or a builder) here until it terminates; return ``(outputs, node)``.

    As ``aiida.engine.run_get_node``, but children are polled every ``poll_interval`` seconds, or
    the profile's ``runner.poll.interval`` when that is shorter.
    """
    from aiida.manage import get_manager

    manager = get_manager()
    interval = min(float(manager.get_option("runner.poll.interval")), poll_interval)
    if manager.get_profile().is_test_profile:
        interval = 0.0
    runner = manager.create_runner(communicator=None, poll_interval=interval)
    return runner.run_get_node(process, inputs, **kwargs)
