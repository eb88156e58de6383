"""Parameters of an uncertainty-watched MD exploration, validated before anything runs.

Units: temperature K, pressure GPa, times fs, force deviations eV/Angstrom, distances Angstrom,
energy jumps eV/atom; the extrapolation grade ``gamma`` is dimensionless.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ("ENSEMBLES", "ExploreParameters")

ENSEMBLES = ("nvt", "npt", "nve")


def _ramp(name: str, value: Any) -> tuple[float, float]:
    """A constant or a linear ramp ``[start, stop]`` as a pair of floats."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif isinstance(value, list | tuple) and len(value) == 2:
        try:
            pair = (float(value[0]), float(value[1]))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or [start, stop], got {value!r}") from None
    else:
        raise ValueError(f"{name} must be a number or [start, stop], got {value!r}")
    if not all(math.isfinite(v) for v in pair):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return pair


@dataclass
class ExploreParameters:
    """What an exploration does.

    Attributes
    ----------
    ensemble : {"nvt", "npt", "nve"}
        NVT: Langevin (BAOAB) thermostat; NPT: the same with a Langevin-Hoover hydrostatic barostat
        (ASE's ``LangevinBAOAB``; Leimkuhler & Matthews, J. Chem. Phys. 138, 174102 (2013); Quigley &
        Probert, J. Chem. Phys. 120, 11432 (2004)); NVE: velocity Verlet.
    temperature : float or [start, stop]
        K. A pair ramps linearly over the run (NVT/NPT); for NVE it sets the initial velocities only.
    pressure : float or [start, stop]
        GPa, NPT only.
    steps : int
        MD steps per walker.
    timestep : float
        fs.
    check_interval : int
        Steps between two uncertainty checks; every check is a row of the per-frame table.
    write_interval : int
        Steps between two trajectory frames; a multiple of ``check_interval``.
    trust_lo, trust_hi : float
        Trust window on the committee's max force deviation, eV/Angstrom.
    break_threshold : float
        A checked frame with max force deviation at or above it ends the walker, eV/Angstrom
        (default ``trust_hi``).
    gamma_lo, gamma_hi, gamma_break : float
        The same on the extrapolation grade, used when an active set is given (default
        ``gamma_break = gamma_hi``).
    walkers : int
        Independent trajectories; walker ``i`` starts from structure ``i % len(structures)``.
    seed : int
        Walker ``i`` draws its velocities and Langevin noise from ``seed + i``.
    thermostat_time, barostat_time : float
        Relaxation times of the thermostat and barostat, fs.
    min_distance : float
        A checked frame with two atoms closer than this (Angstrom) has exploded.
    max_energy_jump : float
        A change of the potential energy between two checks larger than this (eV/atom) is an explosion.
    """

    ensemble: str = "nvt"
    temperature: tuple[float, float] = (300.0, 300.0)
    pressure: tuple[float, float] = (0.0, 0.0)
    steps: int = 1000
    timestep: float = 1.0
    check_interval: int = 10
    write_interval: int | None = None
    trust_lo: float = 0.05
    trust_hi: float = 0.25
    break_threshold: float | None = None
    gamma_lo: float = 2.0
    gamma_hi: float = 10.0
    gamma_break: float | None = None
    walkers: int = 1
    seed: int = 0
    thermostat_time: float = 100.0
    barostat_time: float = 1000.0
    min_distance: float = 0.5
    max_energy_jump: float = 1.0

    def __post_init__(self) -> None:
        self.ensemble = str(self.ensemble).lower()
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"unknown ensemble {self.ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
        self.temperature = _ramp("temperature", self.temperature)
        self.pressure = _ramp("pressure", self.pressure)
        if min(self.temperature) < 0:
            raise ValueError(f"temperature must be non-negative (K), got {list(self.temperature)}")
        if self.ensemble != "nve" and min(self.temperature) == 0:
            raise ValueError("a thermostat needs a positive temperature (K)")
        if self.ensemble == "nve" and self.temperature[0] != self.temperature[1]:
            raise ValueError("a temperature ramp needs a thermostat (ensemble nvt or npt), not nve")
        if self.ensemble != "npt" and self.pressure != (0.0, 0.0):
            raise ValueError(f"pressure is only used by ensemble npt, not {self.ensemble}")
        for name in ("steps", "check_interval", "walkers"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            setattr(self, name, int(value))
        if self.write_interval is None:
            self.write_interval = self.check_interval
        if int(self.write_interval) != self.write_interval or self.write_interval < 1:
            raise ValueError(f"write_interval must be a positive integer, got {self.write_interval!r}")
        self.write_interval = int(self.write_interval)
        if self.write_interval % self.check_interval:
            raise ValueError(
                f"write_interval ({self.write_interval}) must be a multiple of check_interval ({self.check_interval})"
            )
        for name in ("timestep", "thermostat_time", "barostat_time", "min_distance", "max_energy_jump"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
            setattr(self, name, value)
        if not (0 <= self.trust_lo < self.trust_hi):
            raise ValueError(
                f"the trust window needs 0 <= trust_lo < trust_hi, got {self.trust_lo}, {self.trust_hi}"
            )
        if self.break_threshold is None:
            self.break_threshold = self.trust_hi
        if self.break_threshold < self.trust_lo:
            raise ValueError(
                f"break_threshold ({self.break_threshold}) must not be below trust_lo ({self.trust_lo})"
            )
        if not (0 <= self.gamma_lo < self.gamma_hi):
            raise ValueError(
                f"the gamma window needs 0 <= gamma_lo < gamma_hi, got {self.gamma_lo}, {self.gamma_hi}"
            )
        if self.gamma_break is None:
            self.gamma_break = self.gamma_hi
        if self.gamma_break < self.gamma_lo:
            raise ValueError(f"gamma_break ({self.gamma_break}) must not be below gamma_lo ({self.gamma_lo})")
        self.seed = int(self.seed)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ExploreParameters:
        """Build from a mapping (a YAML/JSON file); unknown keys are refused, ``_fs``/``_K`` suffixes allowed."""
        if not isinstance(values, Mapping):
            raise ValueError(f"the parameters must be a mapping, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        aliases = {"timestep_fs": "timestep", "temperature_K": "temperature", "pressure_GPa": "pressure"}
        kwargs = {}
        for key, value in values.items():
            name = aliases.get(key, key)
            if name not in names:
                raise ValueError(f"unknown parameter {key!r}; known: {', '.join(sorted(names))}")
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as error:
            raise ValueError(str(error)) from None

    def temperature_at(self, step: int) -> float:
        """Target temperature (K) at ``step`` of the linear ramp."""
        start, stop = self.temperature
        return start + (stop - start) * min(step, self.steps) / self.steps

    def pressure_at(self, step: int) -> float:
        """Target pressure (GPa) at ``step`` of the linear ramp."""
        start, stop = self.pressure
        return start + (stop - start) * min(step, self.steps) / self.steps

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (ramps as lists)."""
        data = dataclasses.asdict(self)
        data["temperature"] = list(self.temperature)
        data["pressure"] = list(self.pressure)
        return data
