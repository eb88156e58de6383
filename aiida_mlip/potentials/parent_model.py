"""Fine-tuning from a model file the user brings (``training.parent_model``).

The first committee of an active-learning run can start from a *parent model* (e.g. a foundation
model on disk; nothing is downloaded) instead of random weights. Accepted parents, by backend:

=============  ==============================================================================
``builtin``    a built-in committee model file (``.safetensors``, any committee size), e.g. the
               ``model.safetensors`` of an earlier ``aiida-mlip-train`` run
``mace``       a MACE committee model file of this package (``.safetensors``), or a mace-torch
               model file (``*.model``: ``torch.save`` of a single-head ``ScaleShiftMACE``, what
               ``mace_run_train`` writes and the foundation models are; unpickled, so only a file
               you trust, see :mod:`~.backends.mace_parent`)
=============  ==============================================================================

**The parent's architecture is adopted**: its cutoff, descriptor or MACE layers, element list,
reference energies and normalisation are kept, and the architecture keys of the ``training`` block
(``cutoff``, ``hidden``, ``mace``...) are ignored, as on a warm start. **A committee of K members
is made from the parent** (:func:`committee_from_parent`): member ``k`` starts from the weights of
the parent's member ``k mod K'`` (every member from the one model of a mace-torch file); the members
then differ by their bootstrap resamples (seed ``seed + k``, :func:`~.training_data.bootstrap_weights`),
which is why a committee made from fewer parent members than K needs ``bootstrap: true``.

Checks before any job runs (:func:`check_parent_model` when the ``training`` settings are read,
:func:`check_parent_elements` once the structures are known): the file exists and is a model file of
``training.backend``, and its elements cover the structures' elements.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from aiida_mlip.potentials.model_file import ModelFileError, file_sha256, read_model_metadata

__all__ = (
    "ParentModelError",
    "check_parent_elements",
    "check_parent_model",
    "committee_from_parent",
    "load_parent_model",
    "parent_backend",
    "parent_elements",
    "write_parent_model",
)


class ParentModelError(ValueError):
    """A parent model file that cannot be fine-tuned from: missing, unreadable, of another backend or
    without the structures' elements."""


def parent_backend(path: str | os.PathLike) -> str:
    """The backend a parent model file belongs to, read without loading its weights.

    Raises
    ------
    ParentModelError
        For a path that is not a readable file, or a file that is neither a model file of this
        package nor a ``torch.save`` archive (a mace-torch model).
    """
    path = Path(path)
    if not path.is_file():
        raise ParentModelError(f"training.parent_model: {path} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise ParentModelError(f"training.parent_model: {path} cannot be read (permissions)")
    from aiida_mlip.potentials.backends import backend_of
    from aiida_mlip.potentials.backends.mace_parent import is_torch_save_file

    if is_torch_save_file(path):
        return "mace"
    try:
        return backend_of(read_model_metadata(path))
    except (ModelFileError, OSError, ValueError) as exception:
        raise ParentModelError(
            f"training.parent_model: {path} is neither a model file of aiida-mlip nor a mace-torch model "
            f"({exception})"
        ) from None


def check_parent_model(path: str | os.PathLike, backend: str) -> None:
    """Refuse a parent that does not exist, cannot be read or was made by another backend than ``backend``."""
    found = parent_backend(path)
    if found != backend:
        raise ParentModelError(
            f"training.parent_model: {path} is a `{found}` model but training.backend is `{backend}`: "
            f"a committee is fine-tuned from a parent of its own backend"
        )


def load_parent_model(path: str | os.PathLike, backend: str):
    """The parent as a committee object of ``backend`` (see the module docstring for the formats).

    Raises
    ------
    ParentModelError
        As :func:`check_parent_model`, or for a file whose contents cannot be read as a model.
    """
    check_parent_model(path, backend)
    from aiida_mlip.potentials.backends import get_backend
    from aiida_mlip.potentials.backends.mace_parent import is_torch_save_file

    try:
        if is_torch_save_file(path):
            from aiida_mlip.potentials.backends.mace_parent import read_mace_torch_model

            return read_mace_torch_model(path)
        return get_backend(backend).load(path)
    except ModelFileError as exception:
        raise ParentModelError(f"training.parent_model: {exception}") from None


def parent_elements(path: str | os.PathLike, backend: str) -> list[str]:
    """The chemical symbols a parent model knows (from its metadata; a mace-torch file is loaded)."""
    check_parent_model(path, backend)
    from aiida_mlip.potentials.backends.mace_parent import is_torch_save_file

    if is_torch_save_file(path):
        return list(load_parent_model(path, backend).elements)
    return list(read_model_metadata(path)["elements"])


def check_parent_elements(path: str | os.PathLike, backend: str, elements: Iterable[str]) -> None:
    """Refuse a parent that does not know every element of ``elements`` (the structures', the data's)."""
    known = parent_elements(path, backend)
    missing = sorted(set(elements) - set(known))
    if missing:
        raise ParentModelError(
            f"training.parent_model: {path} knows the elements {known}, not {missing} of the structures: "
            "fine-tune from a parent that covers them, or train from scratch"
        )


def committee_from_parent(parent, committee_size: int):
    """A committee of ``committee_size`` members, member ``k`` a copy of the parent's member ``k mod K'``.

    ``parent`` is a built-in :class:`~.committee.CommitteePotential` or a
    :class:`~.backends.mace_model.MaceCommittee`; the result is of the same class, with the parent's
    architecture, elements and normalisation, and a prediction of member ``k`` equal to that of the
    parent's member ``k mod K'``.
    """
    from aiida_mlip.potentials.committee import CommitteePotential

    source = [k % parent.committee_size for k in range(committee_size)]
    if isinstance(parent, CommitteePotential):
        model = copy.deepcopy(parent)
        model.committee_size = committee_size
        with torch.no_grad():
            for name in ("w1", "b1", "w2", "b2", "w3", "b3"):
                setattr(model, name, torch.nn.Parameter(getattr(parent, name)[source].clone()))
        return model
    from aiida_mlip.potentials.backends.mace_model import MaceCommittee

    if isinstance(parent, MaceCommittee):
        members = [copy.deepcopy(parent.members[k]) for k in source]
        return MaceCommittee(
            parent.elements, parent.hyperparameters, committee_size, parent.seed, members
        ).to(dtype=parent.dtype)
    raise TypeError(f"cannot fine-tune from a {type(parent).__name__}")


def fine_tuning_start(config, elements: Iterable[str]) -> tuple[Any, list[str], dict[str, Any]]:
    """The committee a training fine-tunes from ``config.parent_model``.

    Returns the committee (``config.committee_size`` members), the fingerprints of the frames the
    parent records as its training frames (empty when it records none: every frame is new to it)
    and a summary for the metrics (``path``, ``sha256``, ``backend``, ``parent_committee_size``).

    Raises
    ------
    ParentModelError
        For a bad parent, one without the ``elements``, or a committee of more members than the
        parent has without ``bootstrap`` (its members would stay identical: no committee spread).
    """
    path = config.parent_model
    parent = load_parent_model(path, config.backend)
    missing = sorted(set(elements) - set(parent.elements))
    if missing:
        raise ParentModelError(
            f"training.parent_model: {path} knows the elements {parent.elements}, not {missing} of the data"
        )
    if config.committee_size > parent.committee_size and not config.bootstrap:
        raise ParentModelError(
            f"training.parent_model: a committee of {config.committee_size} made from a parent of "
            f"{parent.committee_size} member(s) needs `bootstrap: true`: its copies differ only by their "
            "bootstrap resamples"
        )
    from aiida_mlip.potentials.backends.mace_parent import is_torch_save_file

    recorded = [] if is_torch_save_file(path) else read_model_metadata(path).get("training_frames") or []
    summary = {
        "path": str(path),
        "sha256": file_sha256(path),
        "backend": config.backend,
        "parent_committee_size": parent.committee_size,
    }
    return committee_from_parent(parent, config.committee_size), list(recorded), summary


def write_parent_model(path: str | os.PathLike, backend: str, destination: str | os.PathLike) -> Path:
    """Write the parent as a model file of this package at ``destination`` (what a ``PotentialData`` holds).

    A model file of this package is copied as it is; a mace-torch model is converted (its
    ``hyperparameters`` then hold the full constructor arguments, and the metadata ``parent_source``
    the original file's name and sha256).
    """
    import shutil

    from aiida_mlip.potentials.backends.mace_parent import is_torch_save_file

    check_parent_model(path, backend)
    destination = Path(destination)
    if not is_torch_save_file(path):
        shutil.copyfile(path, destination)
        return destination
    from aiida_mlip.potentials.backends.mace_model import save_mace_committee

    model = load_parent_model(path, backend)
    source = {"file": Path(path).name, "sha256": file_sha256(path), "format": "mace-torch model"}
    save_mace_committee(model, destination, {"parent_source": source})
    return destination
