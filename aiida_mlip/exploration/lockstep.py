"""Walkers in lockstep: one batched committee evaluation per MD step for all of them.

Each walker runs the very code of the one-walker path (:func:`~aiida_mlip.exploration.md.run_walker`:
the same ASE integrator, random stream, checks, records and stops) in a thread of its own, with a
:class:`LockstepCalculator` in place of the committee. The threads never run at the same time: the
driver (:func:`run_in_lockstep`) hands control to one walker after the other, each running until it
asks its calculator for a new configuration (or ends); then every pending configuration goes through
the committee in one forward pass (:meth:`~aiida_mlip.potentials.calculator.CommitteeCalculator.evaluate_many`,
a batch of graphs), each walker gets its own slice of the results, and the next round begins.

Since the walkers make the same calls (one force evaluation per MD step), a round is one MD step of
every walker still running; a walker that stops (break threshold, explosion, the end of its steps)
leaves the batch and the others go on. Each walker keeps its own Verlet list. The trajectories are
those of the one-walker path to the precision of the dtype: a configuration's graph does not see
the others' in the batch. Only the order of the log lines differs (interleaved by step).

Units: Angstrom, eV, eV/Angstrom.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ase.calculators.calculator import Calculator, all_changes

from aiida_mlip.potentials.neighbours import VerletList

__all__ = ("LockstepCalculator", "can_batch", "run_in_lockstep")


def can_batch(calculator) -> bool:
    """Whether ``calculator`` evaluates several configurations at once (``evaluate_many``)."""
    return callable(getattr(calculator, "evaluate_many", None))


class _Walker:
    """A walker's thread and its hand-over state."""

    def __init__(self) -> None:
        self.resume = threading.Semaphore(0)
        self.request = None  # the configuration it waits for
        self.answer: dict | Exception | None = None
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class LockstepCalculator(Calculator):
    """A walker's view of the shared committee: each call waits for the round's batched evaluation.

    Its results are those of the committee calculator (the mean and, on every call, the spread).
    Other attributes (``elements``, ``cutoff``, ``get_features``...) are the committee calculator's.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, committee, walker: _Walker, paused: threading.Semaphore, **kwargs) -> None:
        super().__init__(**kwargs)
        self.committee = committee
        self.walker = walker
        self.paused = paused
        self.neighbours = VerletList(committee.cutoff, committee.neighbours.skin)

    def __getattr__(self, name):
        if name in ("committee", "walker", "paused", "neighbours"):
            raise AttributeError(name)
        return getattr(self.committee, name)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        walker = self.walker
        walker.request = self
        self.paused.release()  # back to the driver, which evaluates the round
        walker.resume.acquire()
        answer, walker.answer = walker.answer, None
        if isinstance(answer, Exception):
            raise answer
        self.results = answer


def run_in_lockstep(
    calculator, tasks: Sequence[Callable[[Calculator], Any]], log: Callable[[str], Any] | None = None
) -> list[Any]:
    """Run ``tasks[i](calculator_i)`` for every i in lockstep, the committee evaluated once per round.

    Parameters
    ----------
    calculator
        The committee calculator; it must have ``evaluate_many`` (:func:`can_batch`).
    tasks
        One callable per walker, given its :class:`LockstepCalculator`; typically a
        :func:`~aiida_mlip.exploration.md.run_walker` call.
    log
        Receives one line at the end: rounds and the mean batch size.

    Returns
    -------
    list
        What each task returned, in order. An exception raised by a task is raised here once every
        other task has finished.
    """
    paused = threading.Semaphore(0)
    walkers = [_Walker() for _ in tasks]

    def body(walker: _Walker, task: Callable[[Calculator], Any]) -> None:
        walker.resume.acquire()
        try:
            walker.result = task(LockstepCalculator(calculator, walker, paused))
        except BaseException as error:  # handed to the driver, raised there
            walker.error = error
        finally:
            walker.done = True
            paused.release()

    threads = [
        threading.Thread(target=body, args=(walker, task), daemon=True, name=f"walker-{index}")
        for index, (walker, task) in enumerate(zip(walkers, tasks, strict=True))
    ]
    for thread in threads:
        thread.start()
    running, rounds, evaluated = list(walkers), 0, 0
    while running:
        for walker in running:  # one at a time: each runs until its next request, or ends
            walker.resume.release()
            paused.acquire()
        running = [walker for walker in running if not walker.done]
        if not running:
            break
        requests = [walker.request for walker in running]
        answers = calculator.evaluate_many(
            [request.atoms for request in requests], [request.neighbours for request in requests]
        )
        for walker, answer in zip(running, answers, strict=True):
            walker.answer = answer
        rounds += 1
        evaluated += len(running)
    for thread in threads:
        thread.join()
    if log is not None and rounds:
        log(
            f"lockstep: {len(tasks)} walkers, {rounds} batched evaluations of {evaluated / rounds:.1f} on average"
        )
    for walker in walkers:
        if walker.error is not None:
            raise walker.error
    return [walker.result for walker in walkers]
