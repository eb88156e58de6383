"""Molecular dynamics with a committee potential, watched for uncertainty.

Each walker runs NVT, NPT or NVE dynamics (ASE integrators, see
:class:`~aiida_mlip.exploration.parameters.ExploreParameters`) with temperature and pressure
ramps, and every ``check_interval`` steps :func:`~aiida_mlip.exploration.watch.check_frame` records
the committee's force deviation, the extrapolation grade (when an active set is given), the
closest pair of atoms and the energy. Frames inside the trust window and, for the selection's
top-up, frames above it that did not explode (up to and including the breaking frame) become
candidates for labelling; a frame at the break threshold ends the walker (the trajectory up to it
is kept), and so
does an explosion, which is an outcome of the walker, never an exception of the run. This is the
exploration step of concurrent learning as in DP-GEN (Zhang et al., Comput. Phys. Commun. 253,
107206 (2020)) with the D-optimality grade of Podryabinkin & Shapeev (Comput. Mater. Sci. 140, 171
(2017)) as a second watch.

A walker named by ``parameters.bias`` runs on the committee plus an uncertainty bias
(:mod:`~aiida_mlip.exploration.bias`) that pulls it towards configurations where the committee
disagrees; one named by ``parameters.metadynamics`` lays well-tempered hills on a distance
(:mod:`~aiida_mlip.exploration.metadynamics`) to cross barriers; one named by
``parameters.path_integral`` runs ring-polymer MD (:mod:`~aiida_mlip.exploration.pimd`), its
least trusted bead being the checked frame.

With ``parameters.batched`` (the default) the plain walkers of one exploration run in lockstep,
one batched committee evaluation per MD step for all of them (:mod:`~aiida_mlip.exploration.lockstep`);
the trajectories and records are those of one walker after the other.

Units: K, GPa, fs, eV, eV/Angstrom, Angstrom.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from aiida_mlip.selection.trust import CLASS_NAMES

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # pragma: no cover - older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms, temperature_K, rng=None):
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


from .bias import UncertaintyBias
from .lockstep import can_batch, run_in_lockstep
from .metadynamics import MetadynamicsBias
from .parameters import ExploreParameters
from .pimd import RingPolymerDynamics
from .watch import FrameCheck, check_frame

__all__ = ("ExplorationResult", "WalkerResult", "explore", "grader", "run_walker")

STOP_REASONS = ("completed", "break_threshold", "exploded")


@dataclass
class WalkerResult:
    """One walker's trajectory, checks and candidates.

    Attributes
    ----------
    walker, structure_index : int
    checks : list[FrameCheck]
        Every checked frame, in order; the last one is the frame that stopped the walker, if any.
    trajectory : list[Atoms]
        Frames written every ``write_interval`` steps (and the breaking frame), without calculator.
    candidates : list[tuple[Atoms, FrameCheck]]
        The selection pool: checked frames classified ``candidate`` (inside the trust window) and
        those above the window that did not explode (class ``failed``, deviation at or above
        ``trust.hi``); the selection takes the window first and tops up from the others.
    steps_done : int
    stop_reason : {"completed", "break_threshold", "exploded"}
    detail : str
        Why it stopped, in words.
    """

    walker: int
    structure_index: int
    checks: list[FrameCheck] = field(default_factory=list)
    trajectory: list[Atoms] = field(default_factory=list)
    candidates: list[tuple[Atoms, FrameCheck]] = field(default_factory=list)
    steps_done: int = 0
    stop_reason: str = "completed"
    detail: str = ""

    @property
    def counts(self) -> dict[str, int]:
        """Checked frames per class (an exploded frame counts as failed)."""
        return {name: sum(check.frame_class == name for check in self.checks) for name in CLASS_NAMES}

    @property
    def exploded_before_first_frame(self) -> bool:
        """Exploded without a single good frame (the start structure or the potential is broken)."""
        good = [check for check in self.checks if not check.stop_reason.startswith("exploded")]
        return self.stop_reason == "exploded" and not good

    def summary(self) -> dict[str, Any]:
        deviations = [c.max_force_deviation for c in self.checks if np.isfinite(c.max_force_deviation)]
        grades = [c.gamma for c in self.checks if np.isfinite(c.gamma)]
        cvs = [c.collective_variable for c in self.checks if np.isfinite(c.collective_variable)]
        return {
            "walker": self.walker,
            "structure_index": self.structure_index,
            "steps_done": self.steps_done,
            "stopped_early": self.stop_reason != "completed",
            "stop_reason": self.stop_reason,
            "detail": self.detail,
            "checked_frames": len(self.checks),
            "counts": self.counts,
            "candidates": len(self.candidates),
            "trajectory_frames": len(self.trajectory),
            "max_force_deviation_seen": max(deviations) if deviations else None,
            "max_gamma_seen": max(grades) if grades else None,
            "final_target_temperature_K": self.checks[-1].target_temperature if self.checks else None,
            # a metadynamics walker's collective variable over its checked frames, Angstrom
            "collective_variable_range": [min(cvs), max(cvs)] if cvs else None,
        }


@dataclass
class ExplorationResult:
    """All walkers of one exploration."""

    parameters: ExploreParameters
    walkers: list[WalkerResult]

    @property
    def counts(self) -> dict[str, int]:
        return {name: sum(w.counts[name] for w in self.walkers) for name in CLASS_NAMES}

    @property
    def all_exploded_before_first_frame(self) -> bool:
        return bool(self.walkers) and all(w.exploded_before_first_frame for w in self.walkers)

    def summary(self) -> dict[str, Any]:
        counts = self.counts
        total = sum(counts.values())
        reasons = {reason: sum(w.stop_reason == reason for w in self.walkers) for reason in STOP_REASONS}
        return {
            "format": "aiida-mlip-exploration",
            "format_version": 1,
            "parameters": self.parameters.as_dict(),
            "counts": counts,
            "accurate_fraction": counts["accurate"] / total if total else 0.0,
            "candidates": sum(len(w.candidates) for w in self.walkers),
            "stop_reasons": reasons,
            "all_exploded_before_first_frame": self.all_exploded_before_first_frame,
            "walkers": [w.summary() for w in self.walkers],
        }


def grader(calculator, active_set, kind: str = "hidden") -> Callable[[Atoms], float]:
    """``grade(atoms) -> max gamma`` over the atoms, from the calculator's features and an active set.

    Parameters
    ----------
    calculator
        Has ``get_features(atoms, kind=...) -> (N, m)``.
    active_set : ActiveSet
        Built from the training set's features of the same kind.
    """

    def grade(atoms: Atoms) -> float:
        features = calculator.get_features(atoms, kind=kind)
        return float(active_set.grade(features, atoms.numbers).max())

    return grade


def _dynamics(atoms: Atoms, parameters: ExploreParameters, rng: np.random.Generator, walker: int):
    if parameters.path_integral is not None and parameters.path_integral.applies_to(walker):
        return RingPolymerDynamics(
            atoms,
            atoms.calc,
            parameters.path_integral,
            parameters.temperature_at(0),
            parameters.timestep,
            parameters.thermostat_time,
            rng,
        )
    timestep = parameters.timestep * units.fs
    if parameters.ensemble == "nve":
        return VelocityVerlet(atoms, timestep=timestep)
    kwargs = {
        "temperature_K": parameters.temperature_at(0),
        "T_tau": parameters.thermostat_time * units.fs,
        "rng": rng,
    }
    if parameters.ensemble == "npt":
        kwargs.update(
            externalstress=-parameters.pressure_at(0) * units.GPa,
            hydrostatic=True,
            P_tau=parameters.barostat_time * units.fs,
        )
    with warnings.catch_warnings():
        # the barostat mass from P_tau is ASE's documented heuristic, which is what we ask for
        warnings.filterwarnings("ignore", message="Using heuristic P_mass", category=UserWarning)
        return LangevinBAOAB(atoms, timestep=timestep, **kwargs)


def _snapshot(atoms: Atoms, check: FrameCheck) -> Atoms:
    snapshot = atoms.copy()
    snapshot.calc = None
    snapshot.info.update(
        walker=check.walker,
        step=check.step,
        time_fs=check.time,
        temperature_K=check.temperature,
        model_energy=check.energy,
        max_force_deviation=check.max_force_deviation,
        gamma=check.gamma,
        frame_class=check.frame_class,
    )
    if np.isfinite(check.collective_variable):
        snapshot.info["collective_variable"] = check.collective_variable
    return snapshot


def _least_trusted_bead(
    dynamics: RingPolymerDynamics,
    parameters: ExploreParameters,
    walker: int,
    step: int,
    target_temperature: float,
    grade: Callable[[Atoms], float] | None,
) -> tuple[Atoms, FrameCheck]:
    """Check every bead (each against its own previous energy); return the least trusted one.

    Least trusted: an explosion first, then a break, then the largest max force deviation.
    """
    checks = [
        check_frame(image, parameters, walker, step, target_temperature, energy, grade)
        for image, energy in zip(dynamics.images, dynamics.previous_energies, strict=True)
    ]
    dynamics.previous_energies = [check.energy for check in checks]

    def distrust(index: int) -> tuple[bool, bool, float]:
        check = checks[index]
        deviation = check.max_force_deviation
        return (
            check.stop_reason.startswith("exploded"),
            bool(check.stop_reason),
            deviation if np.isfinite(deviation) else np.inf,
        )

    bead = max(range(dynamics.beads), key=distrust)
    dynamics.images[bead].info["bead"] = bead
    checks[bead].bead = bead
    return dynamics.images[bead], checks[bead]


def run_walker(
    atoms: Atoms,
    calculator,
    parameters: ExploreParameters,
    walker: int = 0,
    structure_index: int = 0,
    grade: Callable[[Atoms], float] | None = None,
    log: Callable[[str], Any] | None = None,
) -> WalkerResult:
    """Run one walker from ``atoms`` (not modified) until ``parameters.steps`` or a stop.

    Parameters
    ----------
    atoms : Atoms
        Start configuration.
    calculator
        The committee calculator (committee spread on every call: ``spread_every=1``); with
        ``parameters.bias`` naming this walker, the MD runs on it plus the uncertainty bias
        (:class:`~aiida_mlip.exploration.bias.UncertaintyBias`).
    parameters : ExploreParameters
    walker, structure_index : int
        Labels of this walker; the random stream is ``parameters.seed + walker``.
    grade : callable, optional
        ``grade(atoms) -> float``, see :func:`grader`.
    log : callable, optional
        Receives a progress line at every written frame and at the stop.
    """
    result = WalkerResult(walker=walker, structure_index=structure_index)
    atoms = atoms.copy()
    biased = parameters.bias is not None and parameters.bias.applies_to(walker)
    atoms.calc = UncertaintyBias(calculator, parameters.bias) if biased else calculator
    metadynamics = parameters.metadynamics
    if metadynamics is not None and metadynamics.applies_to(walker):
        metadynamics.check_atoms(len(atoms), f"start structure {structure_index}")
        atoms.calc = MetadynamicsBias(atoms.calc, metadynamics, parameters.temperature_at(0))
    rng = np.random.default_rng(parameters.seed + walker)
    path_integral = parameters.path_integral is not None and parameters.path_integral.applies_to(walker)
    if parameters.temperature_at(0) > 0 and not path_integral:  # a ring polymer draws its own
        thermalize_momenta(atoms, parameters.temperature_at(0), rng=rng)
        Stationary(atoms)
    dynamics = _dynamics(atoms, parameters, rng, walker)
    if isinstance(atoms.calc, MetadynamicsBias):
        dynamics.attach(atoms.calc.deposit, interval=parameters.metadynamics.pace)
    previous_energy = None
    step = 0

    def record(checked: tuple[Atoms, FrameCheck]) -> bool:
        """Keep a checked frame; return whether the walker stops here."""
        nonlocal previous_energy
        frame, check = checked
        result.checks.append(check)
        exploded = check.stop_reason.startswith("exploded")
        if not exploded:
            previous_energy = check.energy
            if check.frame_class in ("candidate", "failed"):
                check.candidate_index = len(result.candidates)
                result.candidates.append((_snapshot(frame, check), check))
            if check.step % parameters.write_interval == 0 or check.stop_reason:
                check.trajectory_index = len(result.trajectory)
                result.trajectory.append(_snapshot(frame, check))
        if log is not None and (check.step % parameters.write_interval == 0 or check.stop_reason):
            log(
                f"walker {walker} step {check.step} T {check.temperature:.0f} K (target "
                f"{check.target_temperature:.0f}) E {check.energy:.4f} eV max_dev "
                f"{check.max_force_deviation:.4f} eV/A gamma {check.gamma:.3f} {check.frame_class}"
                + (f" STOP {check.stop_reason}" if check.stop_reason else "")
            )
        if check.stop_reason:
            result.stop_reason = check.stop_reason.split(":")[0]
            result.detail = check.stop_reason
            return True
        return False

    def check_now() -> tuple[Atoms, FrameCheck]:
        target = parameters.temperature_at(step)
        if isinstance(dynamics, RingPolymerDynamics):
            return _least_trusted_bead(dynamics, parameters, walker, step, target, grade)
        return atoms, check_frame(atoms, parameters, walker, step, target, previous_energy, grade)

    if record(check_now()):
        return result
    while step < parameters.steps:
        segment = min(parameters.check_interval, parameters.steps - step)
        if parameters.ensemble != "nve":
            dynamics.set_temperature(temperature_K=parameters.temperature_at(step + segment))
        if parameters.ensemble == "npt":
            dynamics.externalstress = -parameters.pressure_at(step + segment) * units.GPa
        try:
            with np.errstate(all="ignore"):
                dynamics.run(segment)
        except Exception as error:  # the integrator or the calculator gave up on this geometry
            result.stop_reason = "exploded"
            result.detail = f"exploded: {type(error).__name__}: {error} during steps {step}..{step + segment}"
            result.steps_done = step
            if log is not None:
                log(f"walker {walker} STOP {result.detail}")
            return result
        step += segment
        result.steps_done = step
        if record(check_now()):
            break
    return result


def _runs_alone(parameters: ExploreParameters, walker: int) -> bool:
    """Whether a bias, metadynamics or path-integral block names this walker (no lockstep for it)."""
    blocks = (parameters.bias, parameters.metadynamics, parameters.path_integral)
    return any(block is not None and block.applies_to(walker) for block in blocks)


def explore(
    structures: Sequence[Atoms],
    calculator,
    parameters: ExploreParameters,
    grade: Callable[[Atoms], float] | None = None,
    log: Callable[[str], Any] | None = None,
) -> ExplorationResult:
    """Run ``parameters.walkers`` independent walkers; walker ``i`` starts from ``structures[i % len]``.

    With ``parameters.batched`` (and a calculator with ``evaluate_many``), the plain walkers run in
    lockstep, one batched committee evaluation per MD step (:mod:`.lockstep`); the walkers of a
    bias, metadynamics or path-integral block run one after the other afterwards. Either way the
    result lists the walkers in order.
    """
    if len(structures) == 0:
        raise ValueError("no start structures given")

    def walker_run(index: int) -> Callable[[Any], WalkerResult]:
        structure_index = index % len(structures)
        return lambda walker_calculator: run_walker(
            structures[structure_index], walker_calculator, parameters, index, structure_index, grade, log
        )

    lockstep = []
    if parameters.batched and can_batch(calculator):
        lockstep = [index for index in range(parameters.walkers) if not _runs_alone(parameters, index)]
    walkers: dict[int, WalkerResult] = {}
    if len(lockstep) > 1:
        results = run_in_lockstep(calculator, [walker_run(index) for index in lockstep], log)
        walkers.update(zip(lockstep, results, strict=True))
    for index in range(parameters.walkers):
        if index not in walkers:
            walkers[index] = walker_run(index)(calculator)
    return ExplorationResult(
        parameters=parameters, walkers=[walkers[index] for index in range(parameters.walkers)]
    )
