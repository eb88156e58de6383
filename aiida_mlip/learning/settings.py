"""The settings of a whole active-learning run: every block in one typed model.

:class:`ActiveLearningSettings` composes the blocks, each its own model with its defaults and bounds:

=============================  ================================================================
``initial``                    :class:`~aiida_mlip.learning.initial.InitialSettings`
``exploration.md``             the keys of :class:`~aiida_mlip.exploration.parameters.ExploreParameters`
``exploration.schedule``       a list of entries: ``temperatures`` (K; ``[start, stop]`` ramps),
                               optional ``pressures`` (GPa) and any ``exploration.md`` key
``exploration.watch_gamma``    bool: also classify by the extrapolation grade
``exploration.generate``       :class:`~aiida_mlip.exploration.generator_settings.GenerateSettings`:
                               structures (surfaces, defects, alloys, strains) added to the start
                               structures at chosen iterations
``trust``                      :class:`~aiida_mlip.selection.trust.TrustWindow` (eV/Angstrom)
``selection``                  :class:`~aiida_mlip.selection.settings.SelectionSettings`
``convergence``                :class:`~aiida_mlip.learning.convergence.ConvergenceSettings`
``training``                   :class:`~aiida_mlip.potentials.train.TrainConfig`
``warm_start``                 bool: train each committee from the previous one
``warm_start_parameters``      ``training`` keys that replace those of ``training`` on a warm start
=============================  ================================================================

The protocol inputs with the user's overrides merged over them (``get_protocol_inputs``) and the
work chain's input validator both read the settings through :meth:`ActiveLearningSettings.from_mapping`,
so a typo anywhere (``trsut:``, ``trust.low``, ``selection.budgt``) is refused at submission with
the nearest valid key, and every exploration job's MD parameters are checked before anything runs.

No AiiDA import: the AiiDA-free loop can read the same mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pydantic

from aiida_mlip.exploration.generator_settings import GenerateSettings
from aiida_mlip.exploration.parameters import ExploreParameters
from aiida_mlip.learning.convergence import ConvergenceSettings
from aiida_mlip.learning.initial import InitialSettings
from aiida_mlip.potentials.train import TrainConfig
from aiida_mlip.selection.settings import SelectionSettings
from aiida_mlip.selection.trust import TrustWindow
from aiida_mlip.settings import Settings, SettingsError

__all__ = ("ActiveLearningSettings", "ExplorationSettings", "ScheduleEntry", "explore_parameters")

#: Keys of a schedule entry that are not MD parameters.
_SCHEDULE_KEYS = ("temperatures", "pressures")


def _md_keys(exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every ExploreParameters key (with its aliases) as an optional, not yet checked field.

    The values are checked by ExploreParameters itself once ``md``, the schedule entry and the trust
    window are merged (see :meth:`ActiveLearningSettings.from_mapping`); here only the keys are.
    """
    return {
        name: (Any, pydantic.Field(None, validation_alias=field.validation_alias))
        for name, field in ExploreParameters.model_fields.items()
        if name not in exclude
    }


MDSettings = pydantic.create_model(
    "MDSettings",
    __base__=Settings,
    __doc__="The keys of ``exploration.md``: those of ExploreParameters, checked when merged.",
    **_md_keys(),
    watch_gamma=(Any, None),
)
MDSettings.block = "exploration.md"

ScheduleEntry = pydantic.create_model(
    "ScheduleEntry",
    __base__=Settings,
    __doc__="One ``exploration.schedule`` entry: ``temperatures`` (K), ``pressures`` (GPa), MD overrides.",
    temperatures=(list[Any], pydantic.Field(default_factory=list)),
    pressures=(list[Any] | None, None),
    **_md_keys(exclude=("temperature", "pressure")),
    watch_gamma=(Any, None),
)
ScheduleEntry.block = "exploration.schedule"


class ExplorationSettings(Settings):
    """The ``exploration`` block: MD parameters shared by all jobs, the per-iteration schedule, and the
    structures generated at chosen iterations (``generate``, off by default)."""

    block: ClassVar[str] = "exploration"

    md: MDSettings = pydantic.Field(default_factory=MDSettings)  # type: ignore[valid-type]
    schedule: list[ScheduleEntry] = pydantic.Field(default_factory=list)  # type: ignore[valid-type]
    watch_gamma: bool = False
    generate: GenerateSettings | None = None


def explore_parameters(md: Mapping[str, Any], entry: Mapping[str, Any], trust: Mapping[str, Any]) -> dict:
    """The ExploreParameters of one job of a schedule entry, without its temperature (set per job).

    ``md`` is overridden by the entry's MD keys; the trust window (``lo``, ``hi``, eV/Angstrom) is
    the run's unless the entry or ``md`` gives one.
    """
    parameters = dict(md)
    parameters.update({key: value for key, value in entry.items() if key not in _SCHEDULE_KEYS})
    parameters.pop("watch_gamma", None)
    parameters.setdefault("trust", {key: trust[key] for key in ("lo", "hi") if key in trust})
    return parameters


def _given(settings: pydantic.BaseModel) -> dict[str, Any]:
    """The keys a user gave in a block of optional fields (defaults left out)."""
    return settings.model_dump(exclude_unset=True)


class ActiveLearningSettings(Settings):
    """Every settings block of an active-learning run (see the module docstring for the table)."""

    block: ClassVar[str] = ""

    initial: InitialSettings = pydantic.Field(default_factory=InitialSettings)
    exploration: ExplorationSettings = pydantic.Field(default_factory=ExplorationSettings)
    trust: TrustWindow = pydantic.Field(default_factory=TrustWindow)
    selection: SelectionSettings = pydantic.Field(default_factory=SelectionSettings)
    convergence: ConvergenceSettings = pydantic.Field(default_factory=ConvergenceSettings)
    training: TrainConfig = pydantic.Field(default_factory=TrainConfig)
    warm_start: pydantic.StrictBool = True
    warm_start_parameters: dict[str, Any] | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, where: str | None = None, **extra):
        """Read and check every block, then every exploration job's MD parameters.

        Raises
        ------
        SettingsError
            For a mapping that is not one (e.g. an overrides file holding a list), an unknown key
            anywhere (with the nearest valid key), a value out of range, an empty schedule or an
            entry without temperatures, MD parameters that do not hold together for one job, generated
            slabs or vacuum thinner than the training cutoff, or ``warm_start_parameters`` that are
            not training settings.
        """
        if values is not None and not isinstance(values, Mapping):
            raise SettingsError(
                "the settings must be a mapping of blocks (`trust:`, `selection:`, `exploration:`, ...), "
                f"got a {type(values).__name__}"
            )
        settings = super().from_mapping(values, where=where, **extra)
        settings._check_schedule()
        if settings.exploration.generate is not None:
            settings.exploration.generate.check(cutoff=settings.training.cutoff)
        if settings.warm_start_parameters:
            TrainConfig.from_mapping(
                {**settings.training.model_dump(exclude_unset=True), **settings.warm_start_parameters},
                where="warm_start_parameters",
            )
        return settings

    def _check_schedule(self) -> None:
        schedule = self.exploration.schedule
        if not schedule:
            raise SettingsError(
                "the exploration schedule is empty: give at least one entry with `temperatures`"
            )
        md = _given(self.exploration.md)
        trust = {"lo": self.trust.lo, "hi": self.trust.hi}
        for number, entry in enumerate(schedule):
            if not entry.temperatures:
                raise SettingsError(f"exploration schedule entry {number} has no temperatures")
            parameters = explore_parameters(md, _given(entry), trust)
            # one job per temperature and pressure, as the work chain and the AiiDA-free loop run them
            for temperature in entry.temperatures:
                for pressure in entry.pressures or [None]:
                    job = dict(parameters, temperature=temperature)
                    if pressure is not None:
                        job["pressure"] = pressure
                    try:
                        ExploreParameters.from_mapping(job)
                    except SettingsError as exception:
                        raise SettingsError(f"exploration schedule entry {number}: {exception}") from None
