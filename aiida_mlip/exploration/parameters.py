"""Parameters of an uncertainty-watched MD exploration, validated before anything runs.

Units: temperature K, pressure GPa, times fs, force deviations eV/Angstrom, distances Angstrom,
energy jumps eV/atom; the extrapolation grade ``gamma`` is dimensionless.
"""

from __future__ import annotations

import math
from typing import Any

import pydantic

from aiida_mlip.selection.trust import TrustWindow
from aiida_mlip.settings import Settings

from .bias import BiasSettings
from .metadynamics import MetadynamicsSettings
from .pimd import PathIntegralSettings

__all__ = ("BREAK_FACTOR", "ENSEMBLES", "ExploreParameters")

ENSEMBLES = ("nvt", "npt", "nve")

#: Default break threshold as a multiple of the trust window's ``hi`` (2.0 eV/Angstrom with the
#: default window): frames between ``hi`` and the break are kept for the selection's top-up.
BREAK_FACTOR = 2.0


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


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class ExploreParameters(Settings):
    """What an exploration does (the ``exploration.md`` settings block).

    Attributes
    ----------
    ensemble : {"nvt", "npt", "nve"}
        NVT: Langevin (BAOAB) thermostat; NPT: the same with a Langevin-Hoover hydrostatic barostat
        (ASE's ``LangevinBAOAB``; Leimkuhler & Matthews, J. Chem. Phys. 138, 174102 (2013); Quigley &
        Probert, J. Chem. Phys. 120, 11432 (2004)); NVE: velocity Verlet.
    temperature : float or [start, stop]
        K. A pair ramps linearly over the run (NVT/NPT); for NVE it sets the initial velocities only.
        ``temperature_K`` is accepted as the key too.
    pressure : float or [start, stop]
        GPa, NPT only (``pressure_GPa`` accepted).
    steps : int
        MD steps per walker.
    timestep : float
        fs (``timestep_fs`` accepted).
    check_interval : int
        Steps between two uncertainty checks; every check is a row of the per-frame table.
    write_interval : int
        Steps between two trajectory frames; a multiple of ``check_interval`` (default: it).
    trust : TrustWindow
        Trust window on the committee's max force deviation, eV/Angstrom (the ``trust`` block).
    break_threshold : float
        A checked frame with max force deviation at or above it ends the walker, eV/Angstrom
        (default ``BREAK_FACTOR * trust.hi``, 2.0 eV/Angstrom with the default window). Frames
        between ``trust.hi`` and it are kept in the pool for the selection's top-up.
    gamma_lo, gamma_hi, gamma_break : float
        The window and break on the extrapolation grade, used when an active set is given (default
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
    bias : BiasSettings or None
        Uncertainty-biased MD for the walkers it names (``strength``, ``cap`` in eV, ``walkers``;
        :mod:`aiida_mlip.exploration.bias`); NVT or NVE only. ``None``: plain MD.
    metadynamics : MetadynamicsSettings or None
        Well-tempered metadynamics on a distance for the walkers it names (``cv``, ``height`` eV,
        ``width`` Angstrom, ``pace`` steps, ``bias_factor``, ``walkers``;
        :mod:`aiida_mlip.exploration.metadynamics`); NVT or NVE only.
    path_integral : PathIntegralSettings or None
        Ring-polymer MD with ``beads`` per atom and a PILE-L thermostat for the walkers it names
        (``beads``, ``pile_lambda``, ``walkers``; :mod:`aiida_mlip.exploration.pimd`), the centroid
        thermostatted with ``thermostat_time``; NVT only, and not with ``bias`` or ``metadynamics``.
    batched : bool
        Run the walkers in lockstep with one batched committee evaluation per MD step for all of
        them (:mod:`aiida_mlip.exploration.lockstep`): the same trajectories, checks, records and
        seeds as one walker after the other, to the precision of the dtype; a walker that stops
        leaves the batch. Walkers named by ``bias``, ``metadynamics`` or ``path_integral`` always
        run one after the other (after the batch), as do all walkers of a calculator that cannot
        evaluate a batch. Default ``True``: measured faster for every walker count above one on
        both backends (README, "MD throughput"); ``False``: one walker after the other.
    """

    block = "exploration.md"

    ensemble: str = "nvt"
    temperature: tuple[float, float] = pydantic.Field(
        (300.0, 300.0), validation_alias=pydantic.AliasChoices("temperature", "temperature_K")
    )
    pressure: tuple[float, float] = pydantic.Field(
        (0.0, 0.0), validation_alias=pydantic.AliasChoices("pressure", "pressure_GPa")
    )
    steps: int = 1000
    timestep: float = pydantic.Field(1.0, validation_alias=pydantic.AliasChoices("timestep", "timestep_fs"))
    check_interval: int = 10
    write_interval: int | None = None
    trust: TrustWindow = pydantic.Field(default_factory=TrustWindow)
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
    bias: BiasSettings | None = None
    metadynamics: MetadynamicsSettings | None = None
    path_integral: PathIntegralSettings | None = None
    batched: bool = True

    @pydantic.field_validator("ensemble", mode="before")
    @classmethod
    def _ensemble(cls, value: Any) -> str:
        value = str(value).lower()
        if value not in ENSEMBLES:
            raise ValueError(f"unknown ensemble {value!r}; choose one of {', '.join(ENSEMBLES)}")
        return value

    @pydantic.field_validator("temperature", "pressure", mode="before")
    @classmethod
    def _ramps(cls, value: Any, info: pydantic.ValidationInfo) -> tuple[float, float]:
        return _ramp(info.field_name, value)

    @pydantic.field_validator("steps", "check_interval", "walkers", mode="before")
    @classmethod
    def _counts(cls, value: Any, info: pydantic.ValidationInfo) -> int:
        return _positive_int(info.field_name, value)

    @pydantic.field_validator("write_interval", mode="before")
    @classmethod
    def _write_interval(cls, value: Any) -> int | None:
        return None if value is None else _positive_int("write_interval", value)

    @pydantic.field_validator(
        "timestep", "thermostat_time", "barostat_time", "min_distance", "max_energy_jump", mode="after"
    )
    @classmethod
    def _positive(cls, value: float, info: pydantic.ValidationInfo) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{info.field_name} must be positive, got {value!r}")
        return value

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ExploreParameters:
        # assignments below go through object.__setattr__: validate_assignment would re-enter here
        if min(self.temperature) < 0:
            raise ValueError(f"temperature must be non-negative (K), got {list(self.temperature)}")
        if self.ensemble != "nve" and min(self.temperature) == 0:
            raise ValueError("a thermostat needs a positive temperature (K)")
        if self.ensemble == "nve" and self.temperature[0] != self.temperature[1]:
            raise ValueError("a temperature ramp needs a thermostat (ensemble nvt or npt), not nve")
        if self.path_integral is not None:
            if self.ensemble != "nvt":
                raise ValueError(
                    f"path_integral walkers run nvt (the PILE-L thermostat), not {self.ensemble}"
                )
            if self.bias is not None or self.metadynamics is not None:
                raise ValueError("path_integral does not combine with bias or metadynamics")
        for name in ("bias", "metadynamics", "path_integral"):
            block = getattr(self, name)
            if block is not None and self.ensemble == "npt":
                raise ValueError(f"{name} has no stress term: its walkers run nvt or nve, not npt")
            if block is not None and block.walkers and max(block.walkers) >= self.walkers:
                raise ValueError(
                    f"{name}.walkers {block.walkers} names walkers beyond the {self.walkers} of the exploration"
                )
        if self.ensemble != "npt" and self.pressure != (0.0, 0.0):
            raise ValueError(f"pressure is only used by ensemble npt, not {self.ensemble}")
        if self.write_interval is None:
            object.__setattr__(self, "write_interval", self.check_interval)
        if self.write_interval % self.check_interval:
            raise ValueError(
                f"write_interval ({self.write_interval}) must be a multiple of check_interval ({self.check_interval})"
            )
        if self.break_threshold is None:
            object.__setattr__(self, "break_threshold", BREAK_FACTOR * self.trust.hi)
        if not math.isfinite(self.break_threshold) or self.break_threshold < self.trust.lo:
            raise ValueError(
                f"break_threshold ({self.break_threshold}) must not be below the trust window's lo ({self.trust.lo})"
            )
        if not (0 <= self.gamma_lo < self.gamma_hi):
            raise ValueError(
                f"the gamma window needs 0 <= gamma_lo < gamma_hi, got {self.gamma_lo}, {self.gamma_hi}"
            )
        if self.gamma_break is None:
            object.__setattr__(self, "gamma_break", self.gamma_hi)
        if self.gamma_break < self.gamma_lo:
            raise ValueError(f"gamma_break ({self.gamma_break}) must not be below gamma_lo ({self.gamma_lo})")
        return self

    @property
    def gamma_window(self) -> TrustWindow:
        """The window on the extrapolation grade (dimensionless)."""
        return TrustWindow(lo=self.gamma_lo, hi=self.gamma_hi)

    def temperature_at(self, step: int) -> float:
        """Target temperature (K) at ``step`` of the linear ramp."""
        start, stop = self.temperature
        return start + (stop - start) * min(step, self.steps) / self.steps

    def pressure_at(self, step: int) -> float:
        """Target pressure (GPa) at ``step`` of the linear ramp."""
        start, stop = self.pressure
        return start + (stop - start) * min(step, self.steps) / self.steps

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (ramps as lists); the same as :meth:`to_dict`."""
        return self.to_dict()
