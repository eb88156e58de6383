"""The ``builtin`` backend: the power-spectrum committee (:mod:`aiida_mlip.potentials.committee`).

A thin wrapper (:data:`~aiida_mlip.potentials.train.BUILTIN_MODEL`): training is
:func:`~aiida_mlip.potentials.train.train_committee`, the file format
:func:`~aiida_mlip.potentials.committee.save_committee` / ``load_committee``, the calculator
:class:`~aiida_mlip.potentials.calculator.CommitteeCalculator`. Its files carry no ``backend``
metadata field (they predate backends); their ``architecture`` names them.
"""

from __future__ import annotations

from typing import Any

from aiida_mlip.potentials.backends import Backend
from aiida_mlip.potentials.committee import ARCHITECTURE

__all__ = ("BuiltinBackend",)


class BuiltinBackend(Backend):
    """The built-in committee of power-spectrum readouts."""

    name = "builtin"
    architecture = ARCHITECTURE

    def version(self) -> str:
        from aiida_mlip.potentials.committee import ARCHITECTURE_VERSION

        return f"architecture {ARCHITECTURE_VERSION}"

    def version_of(self, metadata: dict[str, Any]) -> str:
        return f"architecture {metadata.get('hyperparameters', {}).get('architecture_version', 1)}"

    def model_kind(self):
        from aiida_mlip.potentials.train import BUILTIN_MODEL

        return BUILTIN_MODEL
