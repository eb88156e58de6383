"""The base of the ``exploration.md`` blocks that change how some walkers move (bias, metadynamics, path integral)."""

from __future__ import annotations

import pydantic

from aiida_mlip.settings import Settings

__all__ = ("WalkerBlock",)


class WalkerBlock(Settings):
    """An ``exploration.md`` block that applies to the walkers it names.

    Attributes
    ----------
    walkers : list of int or None
        Indices of the walkers (of ``exploration.md.walkers``) it applies to; ``None``: all of them.
    """

    walkers: list[pydantic.NonNegativeInt] | None = None

    def applies_to(self, walker: int) -> bool:
        """Whether walker ``walker`` runs with this block."""
        return self.walkers is None or walker in self.walkers
