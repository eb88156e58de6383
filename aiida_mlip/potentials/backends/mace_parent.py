"""A mace-torch model file as the parent of a fine-tuned MACE committee.

mace-torch saves a trained model (``mace_run_train``'s ``*.model``, the foundation models) with
``torch.save`` of the whole ``ScaleShiftMACE`` module: a pickle. :func:`read_mace_torch_model`
unpickles it (``torch.load(weights_only=False)``, so only files the user trusts: this runs whatever
code the pickle names, as mace-torch's own loaders do) and adopts it as a one-member
:class:`~.mace_model.MaceCommittee` whose ``hyperparameters`` are the module's full constructor
arguments (read by mace-torch's ``extract_config_mace_model``, classes and functions by name), so
the committee is rebuilt from a safetensors model file without any pickle from then on.

Accepted: a ``ScaleShiftMACE`` with one head (mace-torch's default model class and that of the
MACE-MP/MACE-OFF foundation models). Refused with a :class:`~aiida_mlip.potentials.model_file.ModelFileError`:
other classes, multi-head models, models converted for cuEquivariance, checkpoints and bare state
dicts (pass the ``.model`` file instead).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols

from aiida_mlip.potentials.model_file import ModelFileError

__all__ = ("is_torch_save_file", "mace_config", "read_mace_torch_model")


def is_torch_save_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``torch.save`` archive (a zip holding a ``data.pkl``); nothing is unpickled."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())


def _plain(value: Any) -> Any:
    """A JSON value of one constructor argument: classes and functions by name, irreps as strings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if type(value).__name__ == "Irreps":  # a tuple subclass: its string form, before the sequences
        return str(value)
    if isinstance(value, type) or callable(value) and hasattr(value, "__name__"):
        return value.__name__
    if isinstance(value, torch.Tensor | np.ndarray):
        return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).tolist()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


def mace_config(module: torch.nn.Module, path: str | os.PathLike = "") -> dict[str, Any]:
    """The constructor arguments of a ``ScaleShiftMACE`` module, JSON-serialisable.

    Raises
    ------
    ModelFileError
        For a module that is not a single-head ``ScaleShiftMACE`` without cuEquivariance.
    """
    from mace.tools.scripts_utils import extract_config_mace_model

    if type(module).__name__ != "ScaleShiftMACE":
        raise ModelFileError(
            f"{path} holds a {type(module).__name__}, not a mace-torch ScaleShiftMACE model: the mace "
            "backend fine-tunes ScaleShiftMACE models (mace-torch's default and the foundation models)"
        )
    config = extract_config_mace_model(module)
    heads = list(config.get("heads") or ["Default"])
    if len(heads) > 1:
        raise ModelFileError(
            f"{path} is a multi-head MACE model (heads {heads}); keep one head with mace-torch first"
        )
    if config.get("cueq_config") is not None or config.get("embedding_specs"):
        raise ModelFileError(
            f"{path} uses cuEquivariance or embedding heads; convert it back to a plain e3nn ScaleShiftMACE"
        )
    config = {key: _plain(value) for key, value in config.items() if key not in ("cueq_config",)}
    config["distance_transform"] = config.get("distance_transform") or "None"
    config["heads"] = heads
    return config


def read_mace_torch_model(path: str | os.PathLike):
    """Unpickle a mace-torch model file and adopt it as a one-member MACE committee (see the module docstring).

    The adopted member predicts what the file's module predicts (same weights, same architecture).

    Raises
    ------
    ModelFileError
        For a file that does not unpickle to a model this backend can adopt.
    """
    from aiida_mlip.potentials.backends.mace_model import MaceCommittee, mace_modules

    mace_modules()  # mace-torch importable (or BackendUnavailable naming the extra), its warnings filtered
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The TorchScript type system", UserWarning)
        try:
            module = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exception:  # any unpickling failure: the file is not a usable model
            raise ModelFileError(f"{path} is not a readable mace-torch model file: {exception}") from None
    if isinstance(module, dict):
        raise ModelFileError(
            f"{path} holds a dict (a mace-torch checkpoint or state dict), not a model: give the `.model` "
            "file mace-torch writes at the end of training"
        )
    if not isinstance(module, torch.nn.Module):
        raise ModelFileError(f"{path} holds a {type(module).__name__}, not a torch model")
    config = mace_config(module, path)
    elements = [chemical_symbols[int(z)] for z in config["atomic_numbers"]]
    dtype = next(module.parameters()).dtype
    committee = MaceCommittee(elements, config, 1, 0).to(dtype)
    try:
        committee.members[0].load_state_dict(module.state_dict())
    except RuntimeError as exception:
        raise ModelFileError(
            f"{path}: its weights do not fit the rebuilt architecture: {exception}"
        ) from None
    return committee
