"""The on-disk format of a committee potential: one safetensors file with JSON metadata.

A model file holds every tensor of the committee's ``state_dict`` and, in the safetensors header,
one metadata entry ``aiida_mlip`` with a JSON object::

    {
      "format": "aiida-mlip-committee",
      "format_version": 1,
      "architecture": "...",          # the model class that reads the tensors
      "elements": ["Al", ...],        # chemical symbols, in the order the model indexes them
      "cutoff": 5.0,                  # Angstrom
      "committee_size": 4,
      "hyperparameters": {...},       # what the architecture needs to rebuild itself
      "reference_energies": {...},    # eV per isolated atom of each element
      "training_set_uuid": "...",     # or null
      "weights_sha256": "..."         # digest of the tensors, see :func:`tensors_sha256`
    }

The file never contains pickled Python objects, so loading an untrusted file cannot run code. The
digest of the tensors is checked on every load: a file whose weights were changed after it was
written is refused with the expected and the found digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FORMAT_NAME = "aiida-mlip-committee"
FORMAT_VERSION = 1
METADATA_KEY = "aiida_mlip"
REQUIRED_METADATA = ("architecture", "elements", "cutoff", "committee_size")

__all__ = (
    "FORMAT_VERSION",
    "ModelFileError",
    "file_sha256",
    "read_model_file",
    "read_model_metadata",
    "tensors_sha256",
    "write_model_file",
)


class ModelFileError(ValueError):
    """A model file that cannot be trusted or understood."""


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of the bytes of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Return a digest of named tensors that does not depend on their order or device.

    Each tensor contributes its name, dtype, shape and raw bytes, in sorted name order.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def write_model_file(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> str:
    """Write a committee to ``path`` and return the sha256 of the written file.

    Parameters
    ----------
    path
        Destination file (conventionally ``*.safetensors``).
    tensors
        The model's ``state_dict``: names to tensors. They are stored on the CPU, contiguous.
    metadata
        JSON-serialisable description of the model; must hold at least
        ``architecture``, ``elements``, ``cutoff`` (Angstrom) and ``committee_size``.
    """
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ModelFileError(f"model metadata lacks the required keys {missing}")
    cpu_tensors = {name: value.detach().to("cpu").contiguous() for name, value in tensors.items()}
    header = dict(metadata)
    header["format"] = FORMAT_NAME
    header["format_version"] = FORMAT_VERSION
    header["weights_sha256"] = tensors_sha256(cpu_tensors)
    save_file(cpu_tensors, os.fspath(path), metadata={METADATA_KEY: json.dumps(header, sort_keys=True)})
    return file_sha256(path)


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the metadata of a model file, reading only its header."""
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except FileNotFoundError:
        raise
    except Exception as exception:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"{path} is not a readable aiida-mlip model file: {exception}") from exception
    if raw is None:
        raise ModelFileError(f"{path} is a safetensors file without aiida-mlip metadata")
    metadata = json.loads(raw)
    if metadata.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} has format {metadata.get('format')!r}, expected {FORMAT_NAME!r}")
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {metadata['format_version']}; this aiida-mlip reads up to "
            f"version {FORMAT_VERSION}: upgrade aiida-mlip"
        )
    return metadata


def read_model_file(
    path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return the tensors and metadata of a model file, checking the weights' digest.

    Raises
    ------
    ModelFileError
        If the file is not an aiida-mlip model file, or if ``verify`` and the tensors' digest differs
        from the one recorded when the file was written.
    """
    metadata = read_model_metadata(path)
    try:
        tensors = load_file(os.fspath(path), device="cpu")
    except Exception as exception:
        raise ModelFileError(f"{path}: the tensors cannot be read: {exception}") from exception
    if verify:
        expected = metadata.get("weights_sha256")
        found = tensors_sha256(tensors)
        if expected != found:
            raise ModelFileError(
                f"{path}: the weights were modified after the file was written: "
                f"expected sha256 {expected}, found {found}"
            )
    if str(device) != "cpu":
        tensors = {name: value.to(device) for name, value in tensors.items()}
    return tensors, metadata
