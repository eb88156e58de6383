"""Model backends: one interface over the architectures a committee can be made of.

The active-learning loop, the engine executables and the properties only meet a backend through
:class:`Backend`: train a committee from labelled frames with the ``training`` settings
(:class:`~aiida_mlip.potentials.train.TrainConfig`, warm start from a parent model file included),
write and read it as a model file (:mod:`~aiida_mlip.potentials.model_file`: safetensors + JSON
metadata with an integrity record), and load it as an ASE calculator whose results hold the
committee mean (``energy``, ``free_energy``, ``energies``, ``forces``, ``stress``) and spread
(``committee_energy``, ``committee_forces``, ``force_deviation``, ``max_force_deviation``,
``energy_deviation``), with ``get_features(atoms, kind)`` for D-optimal selection and
``member_calculators()`` for per-member properties.

Backends:

- ``builtin`` (:mod:`.builtin`): the power-spectrum committee of :mod:`~aiida_mlip.potentials.committee`.
- ``mace`` (:mod:`.mace_backend`): a committee of MACE models through mace-torch (``pip install
  aiida-mlip[mace]``).

:func:`load_calculator` reads which backend wrote a model file from its metadata and dispatches;
nothing else in the package needs to know.
"""

from __future__ import annotations

import abc
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from ase.calculators.calculator import Calculator

    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import TrainConfig, TrainResult

__all__ = (
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "ModelKind",
    "backend_of",
    "get_backend",
    "load_calculator",
)

#: Backend name -> ``module:class`` (imported on first use, so that naming a backend costs nothing).
BACKENDS = {
    "builtin": "aiida_mlip.potentials.backends.builtin:BuiltinBackend",
    "mace": "aiida_mlip.potentials.backends.mace_backend:MaceBackend",
}


@dataclass(frozen=True)
class ModelKind:
    """What the training loop needs of a model class; the built-in committee is :data:`~.builtin.BUILTIN_MODEL`.

    A backend hands its own to :func:`~aiida_mlip.potentials.train.train_committee`. Its
    model must be called as ``model(batch, committee=True, forces=True, strain_derivative=...)`` and
    return what :meth:`~aiida_mlip.potentials.committee.CommitteePotential.forward` returns, and its frame set must cut
    batches as :class:`~aiida_mlip.potentials.training_data.FrameSet` does.

    Attributes
    ----------
    model_class
        Instances of it are taken as a parent as they are; anything else is a model file path.
    load
        ``load(path) -> model``.
    build
        ``build(frames, elements, config) -> model``: a new committee for the training frames.
    frame_set
        ``frame_set(frames, model)``: the frames cut into batches for ``model``.
    normalise
        ``normalise(model, frame_set)``: fit a new committee's scales on its training frames.
    save
        ``save(model, path, metadata) -> sha256``: a model file (the checkpoints).
    """

    model_class: type
    load: Callable
    build: Callable
    frame_set: Callable
    normalise: Callable
    save: Callable


class BackendUnavailable(RuntimeError):
    """A backend whose package is not installed here; the message names the extra that installs it."""


class Backend(abc.ABC):
    """A model architecture the loop can train, save, load and run as a committee ASE calculator."""

    #: The name users write in ``training.backend``.
    name: ClassVar[str]
    #: The model file's ``architecture`` metadata this backend writes and reads.
    architecture: ClassVar[str]

    def check_available(self) -> None:  # noqa: B027 - nothing to check for a backend without extra packages
        """Raise :class:`BackendUnavailable` (naming the pip extra) when the backend cannot run here."""

    @abc.abstractmethod
    def version(self) -> str:
        """Version of the code that defines the architecture (recorded on ``PotentialData``)."""

    @abc.abstractmethod
    def model_kind(self):
        """What the training loop needs of this backend's model (:class:`~aiida_mlip.potentials.train.ModelKind`):
        its class, how to build, load and save it and how to cut frames into its batches."""

    def train(
        self,
        train: Frames,
        config: TrainConfig,
        valid: Frames | None = None,
        init: str | os.PathLike | None = None,
        device: str = "auto",
        log=print,
        checkpoint_path: str | os.PathLike | None = None,
        curve_path: str | os.PathLike | None = None,
    ) -> TrainResult:
        """Train a committee (warm start from the model file ``init`` when given).

        :func:`~aiida_mlip.potentials.train.train_committee` with this backend's model; the
        arguments are its own.
        """
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
            kind=self.model_kind(),
        )

    def save(self, model: Any, path: str | os.PathLike, extra_metadata: dict[str, Any] | None = None) -> str:
        """Write ``model`` as a model file and return the file's sha256 (``extra_metadata`` merged in)."""
        return self.model_kind().save(model, path, extra_metadata)

    def load(self, path: str | os.PathLike, device: str = "cpu") -> Any:
        """Read a model file this backend wrote (its integrity record checked)."""
        return self.model_kind().load(path, device=device)

    def calculator(self, model: Any, device: str = "auto", spread_every: int = 1, **kwargs) -> Calculator:
        """The committee ASE calculator (:class:`~aiida_mlip.potentials.calculator.CommitteeCalculator`)
        of a model object or model file path; ``kwargs`` go to the calculator (``dtype``, ``skin``)."""
        from aiida_mlip.potentials.calculator import CommitteeCalculator

        if isinstance(model, str | os.PathLike):
            model = self.load(model)
        return CommitteeCalculator(model, device=device, spread_every=spread_every, **kwargs)

    def features(self, calculator: Calculator, atoms, kind: str = "hidden"):
        """(N, F) per-atom features of ``atoms`` for D-optimal selection (``calculator.get_features``)."""
        return calculator.get_features(atoms, kind=kind)

    def version_of(self, metadata: dict[str, Any]) -> str:
        """The backend version a model file records (its metadata ``backend_version``)."""
        return str(metadata.get("backend_version", ""))


def get_backend(name: str) -> Backend:
    """The backend called ``name``.

    Raises
    ------
    ValueError
        For a name that is not one of :data:`BACKENDS`.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown model backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def backend_of(metadata: dict[str, Any]) -> str:
    """The name of the backend that wrote a model file, from its metadata.

    Files of the built-in committee predate the ``backend`` field: their ``architecture`` names them.
    """
    if "backend" in metadata:
        return str(metadata["backend"])
    from aiida_mlip.potentials.committee import ARCHITECTURE

    if metadata.get("architecture") == ARCHITECTURE:
        return "builtin"
    from aiida_mlip.potentials.model_file import ModelFileError

    raise ModelFileError(f"a model file of unknown architecture {metadata.get('architecture')!r}")


def load_calculator(
    path: str | os.PathLike, device: str = "auto", spread_every: int = 1, **kwargs
) -> Calculator:
    """Read a model file of any backend and return its committee ASE calculator.

    Raises
    ------
    BackendUnavailable
        If the file was written by a backend whose package is not installed here.
    """
    from aiida_mlip.potentials.model_file import read_model_metadata

    backend = get_backend(backend_of(read_model_metadata(path)))
    backend.check_available()
    return backend.calculator(path, device=device, spread_every=spread_every, **kwargs)
