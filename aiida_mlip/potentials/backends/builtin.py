"""The ``builtin`` backend: the power-spectrum committee (:mod:`aiida_mlip.potentials.committee`).

A thin wrapper (:data:`~aiida_mlip.potentials.train.BUILTIN_MODEL`): training is
:func:`~aiida_mlip.potentials.train.train_committee`, the file format
:func:`~aiida_mlip.potentials.committee.save_committee` / ``load_committee``, the calculator
:class:`~aiida_mlip.potentials.calculator.CommitteeCalculator`. Its files carry no ``backend``
metadata field (they predate backends); their ``architecture`` names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiida_mlip.potentials.backends import Backend, ModelKind
from aiida_mlip.potentials.committee import ARCHITECTURE, CommitteePotential, load_committee, save_committee
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.training_data import FrameSet, fit_normalisation

if TYPE_CHECKING:  # pragma: no cover
    from aiida_mlip.potentials.train import TrainConfig

__all__ = ("BUILTIN_MODEL", "BuiltinBackend")


def _new_committee(frames: Frames, elements: list[str], config: TrainConfig) -> CommitteePotential:
    return CommitteePotential(
        elements=elements,
        cutoff=config.cutoff,
        committee_size=config.committee_size,
        hidden=config.hidden,
        n_radial=config.n_radial,
        l_max=config.l_max,
        species_channels=config.species_channels,
        repulsion_radius=config.repulsion_radius,
        seed=config.seed,
    )


#: The built-in power-spectrum committee.
BUILTIN_MODEL = ModelKind(
    model_class=CommitteePotential,
    load=load_committee,
    build=_new_committee,
    frame_set=FrameSet,
    normalise=fit_normalisation,
    save=save_committee,
)


class BuiltinBackend(Backend):
    """The built-in committee of power-spectrum readouts."""

    name = "builtin"
    architecture = ARCHITECTURE

    def version(self) -> str:
        from aiida_mlip.potentials.committee import ARCHITECTURE_VERSION

        return f"architecture {ARCHITECTURE_VERSION}"

    def version_of(self, metadata: dict[str, Any]) -> str:
        return f"architecture {metadata.get('hyperparameters', {}).get('architecture_version', 1)}"

    def model_kind(self) -> ModelKind:
        return BUILTIN_MODEL
