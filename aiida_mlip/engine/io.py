"""What the engine executables share: input errors, readers of mappings and frames, exit codes.

Every ``aiida-mlip-*`` executable reads its settings from a YAML or JSON mapping and its
configurations from extended XYZ or a :class:`~aiida_mlip.potentials.frames.Frames` ``.h5`` file,
and answers a problem with its input by one line on stderr and exit code :data:`EXIT_BAD_INPUT`.
No AiiDA import: this runs on compute nodes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = (
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "InputError",
    "read_frames",
    "read_labelled",
    "read_mapping",
    "read_structures",
    "report_bad_input",
)

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """A problem with the files or settings given to an executable; exit code :data:`EXIT_BAD_INPUT`."""


def report_bad_input(program: str, error: Exception) -> int:
    """Write ``<program>: error: <message>`` to stderr and return :data:`EXIT_BAD_INPUT`."""
    print(f"{program}: error: {error}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def read_mapping(path: str | os.PathLike, what: str = "parameters") -> dict:
    """Read a YAML or JSON mapping (``.json``: JSON, anything else: YAML); empty file: ``{}``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    try:
        text = path.read_text()
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise InputError(f"{what} file {path} is not valid YAML/JSON: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"{what} file {path} must hold a mapping, not {type(values).__name__}")
    return values


def read_frames(path: str | os.PathLike, require_labels: bool = False):
    """Read :class:`~aiida_mlip.potentials.frames.Frames` from ``.h5``/``.hdf5`` or extended XYZ.

    Raises
    ------
    InputError
        Missing or unreadable file, no frame, or (with ``require_labels``) a frame without labels.
    """
    from aiida_mlip.potentials.frames import Frames

    path = Path(path)
    if not path.is_file():
        raise InputError(f"structures file {path} does not exist")
    try:
        if path.suffix in (".h5", ".hdf5"):
            frames = Frames.read_hdf5(path)
        else:
            frames = Frames.read_extxyz(path, require_labels=require_labels)
        if require_labels:
            frames.validate(require_labels=True)
    except Exception as error:
        raise InputError(f"cannot read structures from {path}: {error}") from None
    if not len(frames):
        raise InputError(f"{path} holds no structures")
    return frames


def read_structures(path: str | os.PathLike, require_labels: bool = False) -> list:
    """Read configurations (extxyz, any ASE format, or Frames ``.h5``) as ASE Atoms."""
    path = Path(path)
    if path.suffix in (".h5", ".hdf5") or not path.is_file():
        return read_frames(path, require_labels).to_atoms()
    from ase.io import read

    try:
        images = read(path, index=":")
    except Exception as error:
        raise InputError(f"cannot read structures from {path}: {error}") from None
    if not images:
        raise InputError(f"{path} holds no structures")
    return images


def read_labelled(path: str | os.PathLike, minimum: int = 1):
    """Read labelled frames (energy, forces) from ``.h5``/``.hdf5`` or ``.extxyz``/``.xyz``; at least ``minimum``."""
    path = Path(path)
    if path.is_file() and path.suffix not in (".h5", ".hdf5", ".extxyz", ".xyz"):
        raise InputError(f"unknown dataset format {path.suffix!r}: use .h5/.hdf5 or .extxyz/.xyz")
    frames = read_frames(path, require_labels=True)
    if len(frames) < minimum:
        raise InputError(f"the dataset {path} holds {len(frames)} frame(s); at least {minimum} are needed")
    return frames
