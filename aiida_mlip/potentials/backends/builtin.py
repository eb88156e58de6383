"""The ``builtin`` backend: the power-spectrum committee (:mod:`aiida_mlip.potentials.committee`).

A thin wrapper: training is :func:`~aiida_mlip.potentials.train.train_committee`, the file format
:func:`~aiida_mlip.potentials.committee.save_committee` / ``load_committee``, the calculator
:class:`~aiida_mlip.potentials.calculator.CommitteeCalculator`. Its files carry no ``backend``
metadata field (they predate backends); their ``architecture`` names them.
"""

from __future__ import annotations

import os
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

    def train(
        self,
        train,
        config,
        valid=None,
        init=None,
        device="auto",
        log=print,
        checkpoint_path=None,
        curve_path=None,
    ):
        from aiida_mlip.potentials.train import train_committee

        return train_committee(
            train,
            config,
            valid=valid,
            init=init,
            device=device,
            log=log,
            checkpoint_path=checkpoint_path,
            curve_path=curve_path,
        )

    def model_kind(self):
        from aiida_mlip.potentials.train import BUILTIN_MODEL

        return BUILTIN_MODEL

    def save(self, model, path: str | os.PathLike, extra_metadata: dict[str, Any] | None = None) -> str:
        from aiida_mlip.potentials.committee import save_committee

        return save_committee(model, path, extra_metadata)

    def load(self, path: str | os.PathLike, device: str = "cpu"):
        from aiida_mlip.potentials.committee import load_committee

        return load_committee(path, device=device)

    def calculator(self, model, device: str = "auto", spread_every: int = 1, **kwargs):
        from aiida_mlip.potentials.calculator import CommitteeCalculator

        return CommitteeCalculator(model, device=device, spread_every=spread_every, **kwargs)
