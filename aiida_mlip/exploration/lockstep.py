"""Walkers in lockstep: one batched committee evaluation per MD step for all of them.

Each walker runs the very code of the one-walker path (:func:`~aiida_mlip.exploration.md.run_walker`:
the same ASE integrator, random stream, checks, records and stops) as a coroutine of its own (a
greenlet; a thread where greenlet is missing), with a :class:`LockstepCalculator` in place of the
committee. The walkers never run at the same time: the driver (:func:`run_in_lockstep`) hands
control to one walker after the other, each running until it asks its calculator for a new
configuration (or ends); then every pending configuration goes through
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

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from aiida_mlip.potentials.neighbours import VerletList

try:  # switches between walkers in one thread, in about a microsecond
    import greenlet
except ImportError:  # pragma: no cover - greenlet is a dependency; threads do the same, slower
    greenlet = None

__all__ = ("LockstepCalculator", "can_batch", "run_in_lockstep")


def can_batch(calculator) -> bool:
    """Whether ``calculator`` evaluates several configurations at once (``evaluate_many``)."""
    return callable(getattr(calculator, "evaluate_many", None))


class _Walker:
    """A walker's task and its hand-over state; subclasses say how control passes to and fro."""

    def __init__(self, task: Callable[[Calculator], Any], calculator) -> None:
        self.task = task
        self.calculator = calculator
        self.request: LockstepCalculator | None = None  # the calculator call it waits on
        self.answer: dict | Exception | None = None
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def body(self) -> None:
        try:
            self.result = self.task(LockstepCalculator(self.calculator, self))
        except BaseException as error:  # handed to the driver, raised there
            self.error = error
        finally:
            self.done = True

    def advance(self) -> None:
        """(driver) Let the walker run until its next calculator call or its end."""
        raise NotImplementedError

    def wait(self) -> None:
        """(walker) Hand control back to the driver until the answer is there."""
        raise NotImplementedError

    def finish(self) -> None:
        """(driver) Clean up after the walker ended."""


class _GreenletWalker(_Walker):
    def __init__(self, task, calculator) -> None:
        super().__init__(task, calculator)
        self.driver = greenlet.getcurrent()
        self.greenlet = greenlet.greenlet(self.body, parent=self.driver)

    def advance(self) -> None:
        self.greenlet.switch()

    def wait(self) -> None:
        self.driver.switch()


class _ThreadWalker(_Walker):
    def __init__(self, task, calculator) -> None:
        super().__init__(task, calculator)
        self.resume = threading.Semaphore(0)
        self.paused = threading.Semaphore(0)
        self.thread = threading.Thread(target=self.threaded, daemon=True)
        self.thread.start()

    def threaded(self) -> None:
        self.resume.acquire()
        try:
            self.body()
        finally:
            self.paused.release()

    def advance(self) -> None:
        self.resume.release()
        self.paused.acquire()

    def wait(self) -> None:
        self.paused.release()
        self.resume.acquire()

    def finish(self) -> None:
        self.thread.join()


class LockstepCalculator(Calculator):
    """A walker's view of the shared committee: each call waits for the round's batched evaluation.

    Its results are those of the committee calculator (the mean and, on every call, the spread).
    Other attributes (``elements``, ``cutoff``, ``get_features``...) are the committee calculator's.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, committee, walker: _Walker, **kwargs) -> None:
        super().__init__(**kwargs)
        self.committee = committee
        self.walker = walker
        self.neighbours = VerletList(committee.cutoff, committee.neighbours.skin)

    def __getattr__(self, name):
        if name in ("committee", "walker", "neighbours"):
            raise AttributeError(name)
        return getattr(self.committee, name)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        walker = self.walker
        walker.request = self
        walker.wait()  # the driver evaluates the round
        answer, walker.answer = walker.answer, None
        if isinstance(answer, Exception):
            raise answer
        self.results = answer


def run_in_lockstep(
    calculator,
    tasks: Sequence[Callable[[Calculator], Any]],
    log: Callable[[str], Any] | None = None,
    threads: bool = False,
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
    threads
        Run each task in a thread of its own (only one runs at a time) instead of a greenlet;
        the default where greenlet is not installed. The results are the same; a hand-over between
        threads costs an operating-system wake-up, which on a loaded machine is a whole time slice.

    Returns
    -------
    list
        What each task returned, in order. An exception raised by a task is raised here once every
        other task has finished.
    """
    kind = _ThreadWalker if threads or greenlet is None else _GreenletWalker
    walkers = [kind(task, calculator) for task in tasks]
    running, rounds, evaluated = list(walkers), 0, 0
    while running:
        for walker in running:  # one at a time: each runs until its next request, or ends
            walker.advance()
        running = [walker for walker in running if not walker.done]
        if not running:
            break
        requests = [walker.request for walker in running]
        with np.errstate(all="ignore"):  # as the walkers' own integration steps: exploded frames are outcomes
            answers = calculator.evaluate_many(
                [request.atoms for request in requests], [request.neighbours for request in requests]
            )
        for walker, answer in zip(running, answers, strict=True):
            walker.answer = answer
        rounds += 1
        evaluated += len(running)
    for walker in walkers:
        walker.finish()
    if log is not None and rounds:
        log(
            f"lockstep: {len(tasks)} walkers, {rounds} batched evaluations of {evaluated / rounds:.1f} on average"
        )
    for walker in walkers:
        if walker.error is not None:
            raise walker.error
    return [walker.result for walker in walkers]
