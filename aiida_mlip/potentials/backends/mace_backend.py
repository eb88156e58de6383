"""The ``mace`` backend: a committee of K MACE models (mace-torch, the ``[mace]`` extra).

Training is the training loop of :mod:`aiida_mlip.potentials.train` over a
:class:`~.mace_model.MaceCommittee` (:data:`MACE_MODEL`): energies, forces and stresses in the loss,
the same loss weights, optimiser, learning-rate schedule, early stopping, checkpoints, warm start
from a parent model file and metrics as the built-in committee.

**How the members differ.** Each member starts from its own random weights (seed ``seed + k``) and,
with ``training.bootstrap`` (the default, as for the built-in committee), weights the training
frames by its own bootstrap resample (Efron 1979). Deep ensembles are often trained on the same data
with different seeds only (Lakshminarayanan, Pritzel and Blundell, NeurIPS 2017), which keeps every
frame in every member; we resample all the same because in active learning the committee spread is
the signal the loop acts on, the training sets are small (tens of frames in the first iterations),
and a small MACE model trained to convergence on the same few frames from different seeds agrees
closely on configurations near them: the resample widens the spread where the data are thin, which
is where a label is worth buying, and keeps the spread on the same footing as the built-in
committee's, so the trust window calibrated for one applies to the other. ``bootstrap: false``
gives the same-data, different-seeds committee.

The calculator is :class:`~aiida_mlip.potentials.calculator.CommitteeCalculator` over the MACE
committee: the same results (committee mean and spread, ``force_deviation``), the same Verlet list,
``get_features(kind="hidden")`` the invariant node features of every member concatenated (N, K F),
``kind="descriptor"`` those of member 0 (N, F).
"""

from __future__ import annotations

from aiida_mlip.potentials.backends import Backend

__all__ = ("MaceBackend",)


def _no_normalisation(model, data) -> None:
    """A MACE committee is normalised when it is built (its constructor takes the scales)."""


def _mace_model_kind():
    from aiida_mlip.potentials.backends.mace_model import (
        MaceCommittee,
        MaceFrameSet,
        build_committee,
        load_mace_committee,
        save_mace_committee,
    )
    from aiida_mlip.potentials.train import ModelKind

    return ModelKind(
        model_class=MaceCommittee,
        load=load_mace_committee,
        build=build_committee,
        frame_set=MaceFrameSet,
        normalise=_no_normalisation,
        save=save_mace_committee,
    )


class MaceBackend(Backend):
    """A committee of independently seeded MACE models (see the module docstring)."""

    name = "mace"
    architecture = "mace-committee"

    def check_available(self) -> None:
        from aiida_mlip.potentials.backends.mace_model import mace_modules

        mace_modules()  # BackendUnavailable, naming the extra, when mace-torch is missing or broken

    def version(self) -> str:
        from aiida_mlip.potentials.backends.mace_settings import mace_version

        return mace_version()

    def model_kind(self):
        """The :class:`~aiida_mlip.potentials.train.ModelKind` of the MACE committee (imports mace-torch)."""
        self.check_available()
        return _mace_model_kind()
