"""Committee potentials: pure torch + ASE, no AiiDA.

Importing this package is cheap: torch is imported only when a name that needs it is used.

- :func:`load_calculator`: a model file of any backend -> its committee ASE calculator
  (:class:`~.calculator.CommitteeCalculator` for the built-in one; see :mod:`~.backends`).
- :mod:`~.descriptor`, :mod:`~.committee`: the model; :mod:`~.train`: training; :mod:`~.model_file`:
  the file format; :mod:`~.frames`: labelled configurations.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from aiida_mlip.potentials.calculator import CommitteeCalculator

__all__ = ("CommitteeCalculator", "load_calculator")


def load_calculator(
    path: str | os.PathLike, device: str = "auto", spread_every: int = 1, **kwargs: Any
) -> CommitteeCalculator:
    """Read a committee model file and return its ASE calculator, whichever backend wrote it.

    See :func:`aiida_mlip.potentials.backends.load_calculator`.
    """
    from aiida_mlip.potentials.backends import load_calculator as _load_calculator

    return _load_calculator(path, device=device, spread_every=spread_every, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "CommitteeCalculator":
        from aiida_mlip.potentials.calculator import CommitteeCalculator

        return CommitteeCalculator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
