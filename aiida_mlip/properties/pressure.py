"""Pressure from an NVT trajectory two ways: the virial route and the calculator's stress.

Virial route (the Clausius virial theorem; M. P. Allen and D. J. Tildesley, *Computer Simulation of
Liquids*, 2nd ed., Oxford 2017, section 2.4)::

    P = N k_B T / V + < W > / (3 V),    W = sum_i r_i . f_i,

with ``N k_B T = 2 K / 3`` from the instantaneous kinetic energy ``K``. In a periodic cell
``sum_i r_i . f_i`` over the atoms of one box is not defined (it changes when an atom is wrapped
into another image); the periodic form of the virial is the derivative of the energy under a
homogeneous scaling of positions and cell, ``W = -dE(lambda r, lambda h)/d lambda`` at
``lambda = 1``, which equals ``sum r_ij . f_ij`` over pairs for a pair potential and holds for any
many-body potential (A. P. Thompson, S. J. Plimpton and W. Mattson, J. Chem. Phys. 131, 154107
(2009); M. J. Louwerse and E. J. Baerends, Chem. Phys. Lett. 421, 138 (2006)). It is evaluated
here by a central finite difference of the energy, independently of the calculator's stress.

Stress route: ``P = -trace(sigma) / 3`` of ``atoms.get_stress(include_ideal_gas=True)``. The two
agree for a potential whose stress is the strain derivative of its energy; a gap between them
exposes a stress that is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pydantic
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from aiida_mlip.properties.checks import require_calculator, require_periodic, resolve_settings
from aiida_mlip.settings import Settings

__all__ = ("PressureResult", "PressureSettings", "nvt_pressure", "nvt_trajectory", "virial")


class PressureSettings(Settings):
    """Settings of :func:`nvt_pressure` (block ``pressure``).

    Attributes
    ----------
    temperature
        K, of the Langevin thermostat.
    timestep
        fs.
    steps
        MD steps after equilibration.
    equilibration
        MD steps discarded first.
    interval
        Steps between recorded frames.
    friction
        Langevin friction, 1/fs.
    scaling
        Relative step of the homogeneous scaling of the virial's finite difference.
    seed
        Seed of the start velocities and the thermostat noise.
    """

    block = "pressure"

    temperature: float = pydantic.Field(300.0, gt=0)
    timestep: float = pydantic.Field(2.0, gt=0)
    steps: int = pydantic.Field(200, ge=1)
    equilibration: int = pydantic.Field(50, ge=0)
    interval: int = pydantic.Field(10, ge=1)
    friction: float = pydantic.Field(0.02, gt=0)
    scaling: float = pydantic.Field(1e-4, gt=0, le=1e-2)
    seed: int = 0


@dataclass
class PressureResult:
    """Pressures of the recorded frames of an NVT run, GPa.

    Attributes
    ----------
    virial, stress
        (n,) GPa per frame: the virial route and ``-trace(stress) / 3`` (kinetic part included).
    kinetic
        (n,) GPa: ``N k_B T / V``, the part both routes share.
    temperature
        (n,) K, instantaneous kinetic temperature.
    """

    virial: np.ndarray
    stress: np.ndarray
    kinetic: np.ndarray
    temperature: np.ndarray = field(repr=False)

    def scalars(self) -> dict[str, float]:
        """``P_virial``, ``P_stress`` (GPa, averages over frames) and ``T`` (K)."""
        return {
            "P_virial": float(self.virial.mean()),
            "P_stress": float(self.stress.mean()),
            "T": float(self.temperature.mean()),
        }


def virial(atoms: Atoms, calculator: Calculator, scaling: float = 1e-4) -> float:
    """The configurational virial ``W = -dE/d lambda`` (eV) of a periodic configuration.

    Positions and cell are scaled by ``1 +- scaling`` and the energy difference taken (central
    difference, error O(scaling^2)).
    """
    energies = []
    for factor in (1 + scaling, 1 - scaling):
        scaled = atoms.copy()
        scaled.set_cell(atoms.cell.array * factor, scale_atoms=True)
        scaled.calc = calculator
        energies.append(scaled.get_potential_energy())
    return -(energies[0] - energies[1]) / (2 * scaling)


def nvt_trajectory(atoms: Atoms, calculator: Calculator, settings: PressureSettings) -> list[Atoms]:
    """Langevin NVT frames (positions and momenta, every ``interval`` steps after equilibration) of ``atoms``.

    Temperature in K, time step in fs (``settings``); ``atoms`` is not modified.
    """
    system = atoms.copy()
    system.calc = calculator
    rng = np.random.default_rng(settings.seed)
    MaxwellBoltzmannDistribution(system, temperature_K=settings.temperature, rng=rng)
    Stationary(system)
    dynamics = Langevin(
        system,
        settings.timestep * units.fs,
        temperature_K=settings.temperature,
        friction=settings.friction / units.fs,
        rng=rng,
        fixcm=False,
    )
    dynamics.run(settings.equilibration)
    frames = []
    for _ in range(settings.steps // settings.interval):
        dynamics.run(settings.interval)
        frames.append(system.copy())
    return frames


def nvt_pressure(
    atoms: Atoms,
    calculator: Calculator | None = None,
    settings: PressureSettings | dict | None = None,
    frames: list[Atoms] | None = None,
) -> PressureResult:
    """Virial and stress pressures over an NVT trajectory (run here unless ``frames`` are given).

    Parameters
    ----------
    atoms
        A periodic structure, the start of the run; not modified.
    calculator
        ASE calculator with energy and stress; default ``atoms.calc``.
    settings
        :class:`PressureSettings` or a mapping of its keys.
    frames
        An existing trajectory (Atoms with momenta, amu Angstrom/fs in ASE units) to evaluate instead.

    Returns
    -------
    PressureResult
        Pressures in GPa, temperatures in K.
    """
    settings = resolve_settings(PressureSettings, settings)
    require_periodic(atoms, "pressures")
    calculator = require_calculator(atoms, calculator)
    if frames is None:
        frames = nvt_trajectory(atoms, calculator, settings)
    virials, stresses, kinetics, temperatures = [], [], [], []
    for frame in frames:
        frame = frame.copy()
        frame.calc = calculator
        volume = frame.get_volume()
        kinetic = 2.0 * frame.get_kinetic_energy() / 3.0 / volume
        kinetics.append(kinetic / units.GPa)
        virials.append((kinetic + virial(frame, calculator, settings.scaling) / (3.0 * volume)) / units.GPa)
        stresses.append(-frame.get_stress(include_ideal_gas=True)[:3].mean() / units.GPa)
        temperatures.append(frame.get_temperature())
    return PressureResult(np.array(virials), np.array(stresses), np.array(kinetics), np.array(temperatures))
