"""What an exploration checks on a frame: committee spread, extrapolation grade, geometry, finiteness.

A :class:`FrameCheck` is one row of the per-frame table. :func:`check_frame` fills it from the
calculator's results on the current configuration and says whether the walker must stop:

- ``"exploded"``: NaN or infinite positions, energy or forces; two atoms closer than
  ``min_distance``; or the potential energy moved by more than ``max_energy_jump`` per atom since
  the previous check. The trajectory is physically meaningless from here on.
- ``"break_threshold"``: the max force deviation reached ``break_threshold``, or the grade reached
  ``gamma_break``. The committee no longer knows what it predicts (Zhang et al., Comput. Phys.
  Commun. 253, 107206 (2020)); continuing would sample an unphysical region.

Units: eV, Angstrom, eV/Angstrom, K, GPa, fs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, units

from aiida_mlip.potentials.neighbours import minimum_distance
from aiida_mlip.selection.trust import CLASS_NAMES, FAILED, classify

from .parameters import ExploreParameters

__all__ = ("FrameCheck", "check_frame", "minimum_distance")


@dataclass
class FrameCheck:
    """One checked frame: a row of ``frames.csv``.

    Attributes are in eV, eV/Angstrom, K, GPa, fs, Angstrom; ``gamma`` is NaN without an active set,
    ``collective_variable`` (Angstrom) NaN on a walker without metadynamics; ``bead`` is the
    checked bead of a path-integral walker (its least trusted one), -1 on a classical walker.
    """

    walker: int
    step: int
    time: float
    target_temperature: float
    temperature: float
    pressure: float
    energy: float
    max_force_deviation: float
    energy_deviation: float
    gamma: float
    min_distance: float
    frame_class: str
    stop_reason: str = ""
    collective_variable: float = float("nan")
    bead: int = -1
    trajectory_index: int = -1
    candidate_index: int = -1

    COLUMNS = (
        "walker",
        "step",
        "time_fs",
        "target_temperature_K",
        "temperature_K",
        "pressure_GPa",
        "energy_eV",
        "max_force_deviation",
        "energy_deviation",
        "gamma",
        "min_distance",
        "class",
        "stop_reason",
        "collective_variable",
        "bead",
        "trajectory_index",
        "candidate_index",
    )

    def row(self) -> list:
        return [
            self.walker,
            self.step,
            f"{self.time:.3f}",
            f"{self.target_temperature:.3f}",
            f"{self.temperature:.3f}",
            f"{self.pressure:.6f}",
            f"{self.energy:.8f}",
            f"{self.max_force_deviation:.6f}",
            f"{self.energy_deviation:.6f}",
            f"{self.gamma:.6f}",
            f"{self.min_distance:.4f}",
            self.frame_class,
            self.stop_reason,
            f"{self.collective_variable:.6f}",
            self.bead,
            self.trajectory_index,
            self.candidate_index,
        ]


def check_frame(
    atoms: Atoms,
    parameters: ExploreParameters,
    walker: int,
    step: int,
    target_temperature: float,
    previous_energy: float | None,
    grade=None,
) -> FrameCheck:
    """Evaluate and check the current configuration of a walker.

    Parameters
    ----------
    atoms : Atoms
        With the committee calculator attached; it must leave ``"max_force_deviation"`` (eV/Angstrom)
        and ``"energy_deviation"`` (eV) in its results on this call.
    parameters : ExploreParameters
    walker, step : int
    target_temperature : float
        K, the thermostat's current target.
    previous_energy : float or None
        Potential energy at the previous check, eV.
    grade : callable, optional
        ``grade(atoms) -> float``, the largest extrapolation grade over the atoms.
    """
    time = step * parameters.timestep
    nan = float("nan")
    finite_positions = bool(np.isfinite(atoms.positions).all()) and bool(np.isfinite(atoms.cell.array).all())
    try:
        if not finite_positions:
            raise FloatingPointError("positions are not finite")
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces()
        results = atoms.calc.results
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            raise FloatingPointError("energy or forces are not finite")
        if "max_force_deviation" not in results:
            raise KeyError("the calculator left no 'max_force_deviation' (load it with spread_every=1)")
        deviation = float(results["max_force_deviation"])
        energy = float(results.get("unbiased_energy", energy))  # the committee's, without an MD bias
        energy_spread = float(results.get("energy_deviation", nan))
        collective_variable = float(results.get("cv", nan))  # a metadynamics walker's, Angstrom
    except KeyError:
        raise
    except Exception as error:  # an exploded configuration breaks calculators in many ways
        return FrameCheck(
            walker,
            step,
            time,
            target_temperature,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            "failed",
            f"exploded: {error}",
        )

    temperature = float(atoms.get_temperature())
    pressure = nan
    if atoms.pbc.all() and "stress" in results:
        stress = atoms.get_stress(include_ideal_gas=True)
        pressure = float(-stress[:3].mean() / units.GPa)
    gamma = float(grade(atoms)) if grade is not None else nan
    closest = minimum_distance(atoms, search=max(3.0, 2 * parameters.min_distance))
    code = int(
        classify(
            np.array([deviation]),
            parameters.trust,
            None if grade is None else np.array([gamma]),
            parameters.gamma_window,
        )[0]
    )
    stop = ""
    jump = abs(energy - previous_energy) / len(atoms) if previous_energy is not None else 0.0
    if closest < parameters.min_distance:
        stop = f"exploded: atoms {closest:.3f} A apart (min_distance {parameters.min_distance} A)"
    elif jump > parameters.max_energy_jump:
        stop = f"exploded: energy jumped by {jump:.3f} eV/atom since the last check"
    elif deviation >= parameters.break_threshold:
        stop = f"break_threshold: max force deviation {deviation:.4f} >= {parameters.break_threshold} eV/A"
    elif grade is not None and gamma >= parameters.gamma_break:
        stop = f"break_threshold: gamma {gamma:.3f} >= {parameters.gamma_break}"
    if stop.startswith("exploded"):
        code = FAILED
    return FrameCheck(
        walker,
        step,
        time,
        target_temperature,
        temperature,
        pressure,
        energy,
        deviation,
        energy_spread,
        gamma,
        closest,
        CLASS_NAMES[code],
        stop,
        collective_variable,
    )
