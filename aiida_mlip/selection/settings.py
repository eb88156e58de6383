"""The ``selection`` settings block and the parameters of one selection job.

:class:`SelectionSettings` is what the protocol's ``selection`` block holds: the strategy, the
per-iteration budget (the one place that checks it: ``budget >= 1``), the seed, the feature kind
and the strategy options. Each strategy uses some of the options and says which
(:data:`~aiida_mlip.selection.strategies.STRATEGY_OPTIONS`); an option given explicitly to a
strategy that ignores it is an error, never silently dropped.

:class:`SelectParameters` adds the trust window: it is what ``SelectCalculation`` validates and
``aiida-mlip-select`` reads from its ``--parameters`` file.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from aiida_mlip.settings import Settings, suggest

from .strategies import STRATEGIES, STRATEGY_OPTIONS
from .trust import TrustWindow

__all__ = ("SelectParameters", "SelectionSettings")


class SelectionSettings(Settings):
    """How a batch of frames to label is chosen (the ``selection`` settings block).

    Attributes
    ----------
    strategy : str
        One of :data:`~aiida_mlip.selection.strategies.STRATEGIES`. Default ``random``: on the
        data-efficiency benchmark (README, "Performance") no strategy beat random beyond the spread
        over seeds, and random is the cheapest (no features, no active set).
    windowed : bool
        True: the strategy selects among the frames inside the trust window first (``lo <= score <
        hi``), then tops up from above ``hi`` (see ``top_up``). False (default): every eligible frame
        of the pool (explored, not accurate, not exploded) is treated alike and the strategy alone
        decides; the window then only sets which frames are accurate (``lo``) and where walkers
        break (``2 hi``). ``hybrid`` is the D-optimal batch inside the window, so it is always
        windowed (``windowed: false`` with it is an error).
    budget : int
        Frames to select per iteration, >= 1.
    seed : int
        Seed of the strategies that draw random numbers.
    features : {"hidden", "descriptor"}
        Per-atom features of the committee used by the feature-based strategies.
    score : str
        Per-frame score the trust window and ``max_deviation`` read (eV/Angstrom).
    top_up : bool
        With ``windowed``, fill the budget from frames above ``hi`` (lowest score first) once the
        window is used up.
    min_distance : float
        Angstrom: a frame with two atoms closer than this is never selected (physical check).
    duplicate_tol : float or None
        Relative fingerprint distance under which two frames are near-duplicates; ``None``: off.
    tol : float
        D-optimal strategies: a frame of grade ``<= 1 + tol`` adds nothing.
    regularisation : float
        D-optimal strategies: length of the virtual rows an element without training rows starts from.
    kind : {"mahalanobis", "leverage"}
        The ``leverage`` strategy's score.
    """

    block = "selection"

    strategy: str = "random"
    windowed: bool = False
    budget: pydantic.StrictInt = pydantic.Field(10, ge=1)
    seed: pydantic.StrictInt = 0
    features: Literal["hidden", "descriptor"] = "hidden"
    score: str = "max_force_deviation"
    top_up: bool = True
    min_distance: float = pydantic.Field(0.5, ge=0, allow_inf_nan=False)
    duplicate_tol: float | None = pydantic.Field(1e-3, ge=0, allow_inf_nan=False)
    tol: float = pydantic.Field(1e-3, ge=0, allow_inf_nan=False)
    regularisation: float = pydantic.Field(0.1, gt=0, allow_inf_nan=False)
    kind: Literal["mahalanobis", "leverage"] = "mahalanobis"

    @pydantic.field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {value!r}{suggest(value, STRATEGIES)}; choose one of {', '.join(sorted(STRATEGIES))}"
            )
        return value

    @pydantic.model_validator(mode="before")
    @classmethod
    def _hybrid_is_windowed(cls, values):
        if isinstance(values, dict) and values.get("strategy") == "hybrid" and "windowed" not in values:
            values = {**values, "windowed": True}
        return values

    @pydantic.model_validator(mode="after")
    def _window_options(self) -> SelectionSettings:
        if self.strategy == "hybrid" and not self.windowed:
            raise ValueError(
                "strategy 'hybrid' selects inside the trust window; it cannot run with windowed: false"
            )
        if not self.windowed and "top_up" in self.model_fields_set:
            raise ValueError(
                "option top_up applies only with windowed: true (without the window every frame is eligible)"
            )
        return self

    @pydantic.model_validator(mode="after")
    def _options_used(self) -> SelectionSettings:
        ignored = sorted(
            name
            for name in self.model_fields_set & set(STRATEGY_OPTIONS["*"])
            if name not in STRATEGY_OPTIONS[self.strategy]
        )
        if ignored:
            raise ValueError(
                f"strategy {self.strategy!r} ignores option(s) {', '.join(ignored)}; it uses "
                f"{', '.join(STRATEGY_OPTIONS[self.strategy])}"
            )
        return self

    def strategy_options(self) -> dict:
        """The keyword options the chosen strategy function takes, from these settings."""
        return {name: getattr(self, name) for name in STRATEGY_OPTIONS[self.strategy]}


class SelectParameters(SelectionSettings):
    """One selection job's parameters: the ``selection`` block plus the ``trust`` window (eV/Angstrom)."""

    block = "selection"

    trust: TrustWindow = pydantic.Field(default_factory=TrustWindow)

    def selection(self) -> SelectionSettings:
        """The selection settings alone."""
        return SelectionSettings.model_validate(self.model_dump(exclude={"trust"}, exclude_unset=True))
