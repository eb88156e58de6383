"""NVE energy drift against the time step: the smoothness check of a potential.

For each time step the same start (velocities drawn from Maxwell-Boltzmann at ``temperature``,
fixed seed, zero total momentum) is integrated with velocity Verlet for ``duration`` fs. The total
energy per atom is fitted linearly in time: the slope is the drift (eV/atom/ps), the RMS residual
the fluctuation (eV/atom). For a smooth potential and a stable step the fluctuation of velocity
Verlet grows as dt^2 and the drift stays near zero; a drift that grows with dt much faster than
the fluctuation, or a sizeable drift at a small step, points at discontinuities (a cutoff without
smoothing) or non-conservative forces (e.g. E. Hairer, C. Lubich and G. Wanner, Acta Numerica 12,
399 (2003) on the energy behaviour of the Verlet scheme).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pydantic
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

from aiida_mlip.properties.checks import require_calculator, resolve_settings
from aiida_mlip.settings import Settings

__all__ = ("DriftResult", "DriftSettings", "energy_drift")


class DriftSettings(Settings):
    """Settings of :func:`energy_drift` (block ``drift``).

    Attributes
    ----------
    time_steps
        fs, one NVE run each.
    duration
        Simulated time of each run, fs.
    temperature
        K, of the Maxwell-Boltzmann start velocities (the kinetic temperature starts there and
        settles near half of it as energy flows into the potential).
    seed
        Seed of the start velocities, the same for every time step.
    """

    block = "drift"

    time_steps: list[pydantic.PositiveFloat] = [0.5, 1.0, 2.0, 4.0]
    duration: float = pydantic.Field(200.0, gt=0)
    temperature: float = pydantic.Field(300.0, ge=0)
    seed: int = 0


@dataclass
class DriftResult:
    """NVE energy conservation at each time step.

    Attributes
    ----------
    time_steps
        (n,) fs.
    drift
        (n,) eV/atom/ps: slope of the total energy per atom over time.
    fluctuation
        (n,) eV/atom: RMS deviation of the total energy per atom from that line.
    times, energies
        Per time step: (m,) fs and (m,) eV/atom, the total energy of every step.
    """

    time_steps: np.ndarray
    drift: np.ndarray
    fluctuation: np.ndarray
    times: list[np.ndarray] = field(repr=False)
    energies: list[np.ndarray] = field(repr=False)

    def scalars(self) -> dict[str, float]:
        """``drift_{dt}fs`` (eV/atom/ps) and ``fluctuation_{dt}fs`` (eV/atom) per time step."""
        values = {}
        for dt, drift, fluctuation in zip(self.time_steps, self.drift, self.fluctuation, strict=True):
            values[f"drift_{dt:g}fs"] = float(drift)
            values[f"fluctuation_{dt:g}fs"] = float(fluctuation)
        return values


def energy_drift(
    atoms: Atoms, calculator: Calculator | None = None, settings: DriftSettings | dict | None = None
) -> DriftResult:
    """NVE (velocity Verlet) energy drift per atom per ps and its fluctuation at each time step.

    Parameters
    ----------
    atoms
        The start structure (its own momenta are replaced); not modified.
    calculator
        ASE calculator with energy and forces; default ``atoms.calc``.
    settings
        :class:`DriftSettings` or a mapping of its keys (time steps in fs, duration in fs,
        temperature in K).

    Returns
    -------
    DriftResult
        Drift in eV/atom/ps, fluctuation in eV/atom.
    """
    settings = resolve_settings(DriftSettings, settings)
    calculator = require_calculator(atoms, calculator)
    start = atoms.copy()
    MaxwellBoltzmannDistribution(
        start, temperature_K=settings.temperature, rng=np.random.default_rng(settings.seed)
    )
    Stationary(start)
    drifts, fluctuations, all_times, all_energies = [], [], [], []
    for dt in settings.time_steps:
        system = start.copy()
        system.calc = calculator
        steps = max(int(round(settings.duration / dt)), 2)
        energies = [system.get_total_energy()]
        dynamics = VelocityVerlet(system, timestep=dt * units.fs)
        for _ in range(steps):
            dynamics.run(1)
            energies.append(system.get_total_energy())
        energies = np.array(energies) / len(system)
        times = dt * np.arange(len(energies))
        slope, intercept = np.polyfit(times, energies, 1)
        drifts.append(slope * 1000.0)
        fluctuations.append(float(np.sqrt(np.mean((energies - (slope * times + intercept)) ** 2))))
        all_times.append(times)
        all_energies.append(energies)
    return DriftResult(
        np.array(settings.time_steps), np.array(drifts), np.array(fluctuations), all_times, all_energies
    )
