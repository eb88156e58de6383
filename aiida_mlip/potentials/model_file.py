"""The on-disk format of a committee potential: one safetensors file with JSON metadata.

A model file holds every tensor of the committee's ``state_dict`` and, in the safetensors header,
one metadata entry ``aiida_mlip`` with a JSON object::

    {
      "format": "aiida-mlip-committee",
      "format_version": 2,
      "architecture": "...",          # the model class that reads the tensors
      "elements": ["Al", ...],        # chemical symbols, in the order the model indexes them
      "cutoff": 5.0,                  # Angstrom
      "committee_size": 4,
      "hyperparameters": {...},       # what the architecture needs to rebuild itself
      "reference_energies": {...},    # eV per isolated atom of each element
      "training_set_uuid": "...",     # or null
      "weights_sha256": "...",        # digest of all tensors, see :func:`tensors_sha256`
      "integrity": {                  # see :func:`integrity_record`
        "fields": {"cutoff": "...", "hyperparameters.cutoff": "...", ...},
        "tensors": {"w1": "...", ...},
        "sha256": "..."
      }
    }

The file never contains pickled Python objects, so loading an untrusted file cannot run code.

Every load checks the ``integrity`` record: one sha256 per metadata field (nested objects are
flattened to dotted names such as ``hyperparameters.cutoff``), one per tensor, and one over the whole
record. A file whose metadata, hyperparameters or weights were edited after it was written is refused
with a :class:`ModelFileError` that names the file and the field or tensor that changed. The record
detects accidental and casual edits; it is not a signature (whoever rewrites the record can forge
it), which is why a ``PotentialData`` node also records the sha256 of the whole file.

Files of format version 1 (written before the record existed, with a digest of the weights only) are
refused: their metadata cannot be checked, and accepting them would let an edited file pass by
claiming the old version. Retrain, or re-save a trusted copy with :func:`write_model_file`.
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
FORMAT_VERSION = 2
METADATA_KEY = "aiida_mlip"
INTEGRITY_KEY = "integrity"
REQUIRED_METADATA = ("architecture", "elements", "cutoff", "committee_size")

__all__ = (
    "FORMAT_VERSION",
    "ModelFileError",
    "file_sha256",
    "integrity_record",
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


def _canonical_sha256(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _flatten(metadata: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted names: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay leaves)."""
    fields: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, Mapping) and value:
            fields.update(_flatten(value, f"{prefix}{key}."))
        else:
            fields[f"{prefix}{key}"] = value
    return fields


def integrity_record(metadata: Mapping[str, Any], tensor_digests: Mapping[str, str]) -> dict[str, Any]:
    """Return the ``integrity`` record of a model file's metadata and tensors.

    Parameters
    ----------
    metadata
        The metadata without its ``integrity`` entry.
    tensor_digests
        Tensor name -> :func:`tensors_sha256` of that tensor alone (name, dtype, shape, bytes).

    Returns
    -------
    dict
        ``fields`` (dotted field name -> sha256 of its canonical JSON), ``tensors`` (the given
        digests) and ``sha256`` (of the canonical JSON of the whole metadata and the tensor digests,
        which also covers how the fields nest).
    """
    return {
        "fields": {name: _canonical_sha256(value) for name, value in _flatten(metadata).items()},
        "tensors": dict(tensor_digests),
        "sha256": _canonical_sha256({"metadata": metadata, "tensors": dict(tensor_digests)}),
    }


def _tensor_digests(tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    return {name: tensors_sha256({name: tensor}) for name, tensor in tensors.items()}


def _mismatch(path: str | os.PathLike, kind: str, names: list[str]) -> ModelFileError:
    listed = ", ".join(f"`{name}`" for name in sorted(names))
    verb = "does" if len(names) == 1 else "do"
    noun = kind if len(names) == 1 else f"{kind}s"
    return ModelFileError(f"{path}: {noun} {listed} {verb} not match the digest (the file was edited)")


def _compare(path, kind: str, recorded: Mapping[str, str], found: Mapping[str, str]) -> None:
    """Raise naming every entry whose digest differs, or that was added or removed."""
    changed = [name for name in found if name in recorded and recorded[name] != found[name]]
    if changed:
        raise _mismatch(path, kind, changed)
    added, removed = sorted(set(found) - set(recorded)), sorted(set(recorded) - set(found))
    if added:
        raise ModelFileError(
            f"{path}: {kind} `{added[0]}` is not covered by the digest (the file was edited)"
        )
    if removed:
        raise ModelFileError(f"{path}: {kind} `{removed[0]}` is missing from the file (the file was edited)")


def _check_integrity(path, metadata: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None) -> None:
    """Check the metadata (and the tensors, when given) against the file's integrity record."""
    record = metadata.get(INTEGRITY_KEY)
    if not isinstance(record, Mapping) or not all(
        isinstance(record.get(key), Mapping) for key in ("fields", "tensors")
    ):
        raise ModelFileError(f"{path}: the metadata field `{INTEGRITY_KEY}` is missing or malformed")
    plain = {key: value for key, value in metadata.items() if key != INTEGRITY_KEY}
    found = integrity_record(plain, record["tensors"] if tensors is None else _tensor_digests(tensors))
    _compare(path, "metadata field", record["fields"], found["fields"])
    _compare(path, "tensor", record["tensors"], found["tensors"])
    if record.get("sha256") != found["sha256"]:
        raise ModelFileError(
            f"{path}: metadata field `{INTEGRITY_KEY}.sha256` does not match the digest "
            "(the metadata was restructured or the record edited)"
        )


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
        ``architecture``, ``elements``, ``cutoff`` (Angstrom) and ``committee_size``. The
        ``integrity`` record over it and the tensors is added here.
    """
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ModelFileError(f"model metadata lacks the required keys {missing}")
    cpu_tensors = {name: value.detach().to("cpu").contiguous() for name, value in tensors.items()}
    header = {key: value for key, value in metadata.items() if key != INTEGRITY_KEY}
    header["format"] = FORMAT_NAME
    header["format_version"] = FORMAT_VERSION
    header["weights_sha256"] = tensors_sha256(cpu_tensors)
    # Through JSON once, so that the record covers exactly what a reader will parse.
    header = json.loads(json.dumps(header, sort_keys=True))
    header[INTEGRITY_KEY] = integrity_record(header, _tensor_digests(cpu_tensors))
    save_file(cpu_tensors, os.fspath(path), metadata={METADATA_KEY: json.dumps(header, sort_keys=True)})
    return file_sha256(path)


def read_model_metadata(path: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Return the metadata of a model file, reading only its header.

    With ``verify``, every metadata field is checked against the file's integrity record (the
    tensors are checked by :func:`read_model_file`).

    Raises
    ------
    ModelFileError
        If the header is unreadable, the metadata is not a JSON object, the format or its version is
        not one this code reads, or a field does not match its digest (the message names it).
    """
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except FileNotFoundError:
        raise
    except Exception as exception:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"{path} is not a readable aiida-mlip model file: {exception}") from exception
    if raw is None:
        raise ModelFileError(f"{path} is a safetensors file without aiida-mlip metadata")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as exception:
        raise ModelFileError(f"{path}: the metadata is not valid JSON: {exception}") from exception
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: the metadata is a JSON {type(metadata).__name__}, not an object")
    if metadata.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} has format {metadata.get('format')!r}, expected {FORMAT_NAME!r}")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: metadata field `format_version` is {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {version}; this aiida-mlip reads up to "
            f"version {FORMAT_VERSION}: upgrade aiida-mlip"
        )
    if version < FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {version}, whose digest covers the weights only, so its "
            f"metadata cannot be checked; this aiida-mlip reads version {FORMAT_VERSION}: retrain the "
            "potential or re-save a copy you trust with aiida_mlip.potentials.model_file.write_model_file"
        )
    if verify:
        _check_integrity(path, metadata, None)
    return metadata


def read_model_file(
    path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return the tensors and metadata of a model file, checking them against the integrity record.

    Raises
    ------
    ModelFileError
        If the file is not an aiida-mlip model file, or if ``verify`` and a metadata field or a
        tensor differs from what was recorded when the file was written (the message names the
        file and the field or tensor).
    """
    metadata = read_model_metadata(path, verify=verify)
    try:
        tensors = load_file(os.fspath(path), device="cpu")
    except Exception as exception:
        raise ModelFileError(f"{path}: the tensors cannot be read: {exception}") from exception
    if verify:
        _check_integrity(path, metadata, tensors)
    if str(device) != "cpu":
        tensors = {name: value.to(device) for name, value in tensors.items()}
    return tensors, metadata
