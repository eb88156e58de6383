"""Columnar storage of atomic configurations and their DFT (or oracle) labels.

:class:`Frames` keeps every configuration of a set in a few flat numpy arrays: the atoms of all frames
are concatenated and ``offsets`` marks where each frame starts. This makes a 10,000-frame set one
read of a handful of arrays from HDF5, and the arrays are what the training loop batches from.

Units: positions and cell in Angstrom, energy in eV, forces in eV/Angstrom, stress in eV/Angstrom^3
(Voigt order xx, yy, zz, yz, xz, xy; ASE's sign convention).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, chemical_symbols

FORMAT_NAME = "aiida-mlip-dataset"
FORMAT_VERSION = 1
_UUID_BYTES = 36

__all__ = ("FORMAT_VERSION", "Frames")


def _symbols_to_numbers(symbols: Iterable[str]) -> np.ndarray:
    numbers = []
    for symbol in symbols:
        number = atomic_numbers.get(symbol)
        if number is None or number == 0:
            raise ValueError(f"unknown element symbol {symbol!r}")
        numbers.append(number)
    return np.asarray(numbers, dtype=np.int64)


def _check_finite(name: str, values: np.ndarray, offsets: np.ndarray | None = None) -> None:
    """Raise ``ValueError`` naming the first frame where ``values`` holds NaN or infinity."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    row = int(np.argwhere(bad.reshape(len(values), -1).any(axis=1))[0, 0])
    frame = row if offsets is None else int(np.searchsorted(offsets, row, side="right") - 1)
    raise ValueError(f"{name} of frame {frame} contains NaN or infinite values")


def _check_xyz_layout(path: str | os.PathLike) -> int:
    """Walk the frame layout of an (extended) XYZ file and return its number of frames.

    Each frame is a line with the atom count, a comment line, then one line per atom. ASE's reader
    reports a wrong count as a header it cannot parse, without saying where; this says which frame
    and which line.

    Raises
    ------
    ValueError
        Naming the file, the frame, the line and the problem.
    """
    with open(path, errors="replace") as handle:
        lines = handle.read().splitlines()
    frame, line = 0, 0
    while line < len(lines):
        text = lines[line].strip()
        if not text:
            if any(rest.strip() for rest in lines[line:]):
                raise ValueError(f"{path}: frame {frame}: line {line + 1} is blank, expected the atom count")
            break
        try:
            count = int(text)
        except ValueError:
            hint = f" (frame {frame - 1} holds more atoms than its count says)" if frame else ""
            raise ValueError(
                f"{path}: frame {frame}: line {line + 1} should hold the atom count, got {text[:40]!r}{hint}"
            ) from None
        if count < 0:
            raise ValueError(f"{path}: frame {frame}: line {line + 1} gives a negative atom count {count}")
        atom_lines = lines[line + 2 : line + 2 + count]
        if line + 1 >= len(lines) or len(atom_lines) < count:
            raise ValueError(
                f"{path}: frame {frame} declares {count} atoms but the file ends after {len(atom_lines)}"
            )
        widths = [len(atom.split()) for atom in atom_lines]
        for offset, width in enumerate(widths):
            if width != widths[0]:
                raise ValueError(
                    f"{path}: frame {frame} declares {count} atoms but line {line + 3 + offset} "
                    f"({atom_lines[offset].strip()[:40]!r}) is not an atom line like the ones before it: "
                    "the atom count is wrong"
                )
        frame, line = frame + 1, line + 2 + count
    return frame


@dataclass
class Frames:
    """A set of configurations, optionally labelled with energy, forces and stress.

    Attributes
    ----------
    numbers : (n_atoms_total,) int
        Atomic numbers of all atoms of all frames, concatenated.
    positions : (n_atoms_total, 3) float64
        Cartesian positions in Angstrom.
    offsets : (n_frames + 1,) int64
        Frame ``i`` holds atoms ``offsets[i]:offsets[i + 1]``.
    cells : (n_frames, 3, 3) float64
        Cell vectors as rows, Angstrom.
    pbc : (n_frames, 3) bool
    energy : (n_frames,) float64 or None
        Total energy in eV.
    forces : (n_atoms_total, 3) float64 or None
        Forces in eV/Angstrom.
    stress : (n_frames, 6) float64 or None
        Voigt stress in eV/Angstrom^3; NaN rows for frames without a stress label.
    source_uuid : (n_frames,) str
        UUID of the node (calculation) that produced each frame's label, '' when unknown.
    config_type : (n_frames,) str
        Free-form tag per frame ('md_300K', 'strained', 'vacancy', ...).
    """

    numbers: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray
    cells: np.ndarray
    pbc: np.ndarray
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    source_uuid: np.ndarray = field(default=None)  # type: ignore[assignment]
    config_type: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.numbers = np.ascontiguousarray(self.numbers, dtype=np.int64)
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float64)
        self.offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        self.cells = np.ascontiguousarray(self.cells, dtype=np.float64)
        self.pbc = np.ascontiguousarray(self.pbc, dtype=bool)
        n_frames = len(self.offsets) - 1
        if self.energy is not None:
            self.energy = np.ascontiguousarray(self.energy, dtype=np.float64)
        if self.forces is not None:
            self.forces = np.ascontiguousarray(self.forces, dtype=np.float64)
        if self.stress is not None:
            self.stress = np.ascontiguousarray(self.stress, dtype=np.float64)
        if self.source_uuid is None:
            self.source_uuid = np.full(n_frames, "", dtype=object)
        if self.config_type is None:
            self.config_type = np.full(n_frames, "", dtype=object)
        self.source_uuid = np.asarray(self.source_uuid, dtype=object)
        self.config_type = np.asarray(self.config_type, dtype=object)
        self.validate(require_labels=False)

    # ------------------------------------------------------------------ shape and validity
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_atoms(self) -> int:
        """Total number of atoms over all frames."""
        return int(self.offsets[-1])

    @property
    def natoms_per_frame(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def elements(self) -> list[str]:
        """Chemical symbols present, sorted by atomic number."""
        return [chemical_symbols[z] for z in np.unique(self.numbers)]

    @property
    def is_labelled(self) -> bool:
        return self.energy is not None and self.forces is not None

    @property
    def has_stress(self) -> np.ndarray:
        """(n_frames,) bool: which frames carry a stress label."""
        if self.stress is None:
            return np.zeros(len(self), dtype=bool)
        return np.isfinite(self.stress).all(axis=1)

    def validate(self, require_labels: bool = True) -> None:
        """Raise ``ValueError`` with a clear message if the arrays are inconsistent or not finite.

        Parameters
        ----------
        require_labels
            Also require an energy for every frame and forces for every atom.
        """
        n_frames = len(self.offsets) - 1
        if n_frames < 0 or self.offsets.ndim != 1 or (n_frames >= 0 and self.offsets[0] != 0):
            raise ValueError("offsets must be a 1-d array starting at 0")
        if np.any(np.diff(self.offsets) <= 0):
            frame = int(np.argmax(np.diff(self.offsets) <= 0))
            raise ValueError(f"frame {frame} has no atoms")
        n_atoms = int(self.offsets[-1]) if n_frames else 0
        expected = {
            "numbers": (self.numbers, (n_atoms,)),
            "positions": (self.positions, (n_atoms, 3)),
            "cells": (self.cells, (n_frames, 3, 3)),
            "pbc": (self.pbc, (n_frames, 3)),
            "source_uuid": (self.source_uuid, (n_frames,)),
            "config_type": (self.config_type, (n_frames,)),
        }
        if self.energy is not None:
            expected["energy"] = (self.energy, (n_frames,))
        if self.forces is not None:
            expected["forces"] = (self.forces, (n_atoms, 3))
        if self.stress is not None:
            expected["stress"] = (self.stress, (n_frames, 6))
        for name, (array, shape) in expected.items():
            if array.shape != shape:
                raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
        if n_atoms and (self.numbers.min() < 1 or self.numbers.max() >= len(chemical_symbols)):
            bad = self.numbers[(self.numbers < 1) | (self.numbers >= len(chemical_symbols))][0]
            raise ValueError(f"unknown atomic number {int(bad)}")
        _check_finite("positions", self.positions, self.offsets)
        _check_finite("cell", self.cells)
        if self.energy is not None:
            _check_finite("energy", self.energy)
        if self.forces is not None:
            _check_finite("forces", self.forces, self.offsets)
        if self.stress is not None:
            partial = np.isnan(self.stress).any(axis=1) & ~np.isnan(self.stress).all(axis=1)
            if partial.any() or np.isinf(self.stress).any():
                frame = int(np.argmax(partial | np.isinf(self.stress).any(axis=1)))
                raise ValueError(f"stress of frame {frame} contains NaN or infinite values")
        if n_frames and self.pbc.any():
            # the periodic cell vectors must be linearly independent (one batched SVD for all frames)
            ranks = np.linalg.matrix_rank(self.cells * self.pbc[:, :, None], tol=1e-6)
            degenerate = np.flatnonzero(ranks < self.pbc.sum(axis=1))
            if len(degenerate):
                index = int(degenerate[0])
                raise ValueError(
                    f"cell of frame {index} is degenerate along its periodic directions "
                    f"(pbc {self.pbc[index].tolist()}, cell {self.cells[index].tolist()})"
                )
        if require_labels:
            if self.energy is None:
                raise ValueError("the frames have no energy labels")
            if self.forces is None:
                raise ValueError("the frames have no force labels")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(
        cls,
        images: Sequence[Atoms],
        require_labels: bool = True,
        source_uuid: Sequence[str] | str | None = None,
        config_type: Sequence[str] | str | None = None,
    ) -> Frames:
        """Build frames from ASE ``Atoms``, taking labels from each one's calculator results.

        Energy, forces and stress are read from ``atoms.calc.results`` (as a ``SinglePointCalculator``
        left by ``ase.io.read`` or by a calculation holds them). ``atoms.info['config_type']`` and
        ``atoms.info['source_uuid']`` are used when the arguments do not give them.

        Raises
        ------
        ValueError
            If ``require_labels`` and a frame has no energy or no forces, or for NaN values.
        """
        if len(images) == 0:
            raise ValueError("no configurations given")
        natoms = np.fromiter((len(atoms) for atoms in images), dtype=np.int64, count=len(images))
        if (natoms == 0).any():
            raise ValueError(f"frame {int(np.argmax(natoms == 0))} has no atoms")
        offsets = np.concatenate([[0], np.cumsum(natoms)])
        energy, forces, stress = [], [], []
        any_stress = False
        for index, atoms in enumerate(images):
            results = atoms.calc.results if atoms.calc is not None else {}
            e, f, s = results.get("energy"), results.get("forces"), results.get("stress")
            if require_labels and e is None:
                raise ValueError(f"frame {index} has no energy label")
            if require_labels and f is None:
                raise ValueError(f"frame {index} has no forces label")
            if require_labels and not np.isfinite(float(e)):
                raise ValueError(f"energy of frame {index} is {float(e)}, not a finite number")
            energy.append(np.nan if e is None else float(e))
            if f is not None and np.shape(f) != (len(atoms), 3):
                raise ValueError(
                    f"forces of frame {index} have shape {np.shape(f)}, expected ({len(atoms)}, 3)"
                )
            forces.append(np.full((len(atoms), 3), np.nan) if f is None else np.asarray(f, dtype=np.float64))
            if s is not None:
                s = np.asarray(s, dtype=np.float64)
                if s.shape == (3, 3):
                    s = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
                if s.shape != (6,):
                    raise ValueError(f"stress of frame {index} has shape {s.shape}, expected (6,) or (3, 3)")
                any_stress = True
            stress.append(np.full(6, np.nan) if s is None else s)

        def per_frame(value, key):
            if value is None:
                return np.array([str(atoms.info.get(key, "")) for atoms in images], dtype=object)
            if isinstance(value, str):
                return np.full(len(images), value, dtype=object)
            return np.asarray(list(value), dtype=object)

        labelled = not np.isnan(energy).all()
        return cls(
            numbers=np.concatenate([atoms.numbers for atoms in images]),
            positions=np.concatenate([atoms.positions for atoms in images]),
            offsets=offsets,
            cells=np.stack([atoms.cell.array for atoms in images]),
            pbc=np.stack([atoms.pbc for atoms in images]),
            energy=np.asarray(energy) if labelled else None,
            forces=np.concatenate(forces) if labelled else None,
            stress=np.stack(stress) if any_stress else None,
            source_uuid=per_frame(source_uuid, "source_uuid"),
            config_type=per_frame(config_type, "config_type"),
        )

    @classmethod
    def from_arrays(cls, symbols: Sequence[Sequence[str]], **arrays) -> Frames:
        """Build frames from per-frame chemical symbols and the other arrays of the class."""
        numbers = np.concatenate([_symbols_to_numbers(frame) for frame in symbols])
        return cls(numbers=numbers, **arrays)

    @classmethod
    def concatenate(cls, parts: Sequence[Frames]) -> Frames:
        """Join several sets into one, in order. Stress rows are NaN where a part has none."""
        parts = [part for part in parts if len(part)]
        if not parts:
            raise ValueError("nothing to concatenate")
        labelled = [part.is_labelled for part in parts]
        if any(labelled) and not all(labelled):
            raise ValueError("cannot join labelled and unlabelled frames")
        offsets = [np.zeros(1, dtype=np.int64)]
        start = 0
        for part in parts:
            offsets.append(part.offsets[1:] + start)
            start += part.n_atoms
        any_stress = any(part.stress is not None for part in parts)
        return cls(
            numbers=np.concatenate([part.numbers for part in parts]),
            positions=np.concatenate([part.positions for part in parts]),
            offsets=np.concatenate(offsets),
            cells=np.concatenate([part.cells for part in parts]),
            pbc=np.concatenate([part.pbc for part in parts]),
            energy=np.concatenate([part.energy for part in parts]) if labelled[0] else None,
            forces=np.concatenate([part.forces for part in parts]) if labelled[0] else None,
            stress=(
                np.concatenate(
                    [
                        part.stress if part.stress is not None else np.full((len(part), 6), np.nan)
                        for part in parts
                    ]
                )
                if any_stress
                else None
            ),
            source_uuid=np.concatenate([part.source_uuid for part in parts]),
            config_type=np.concatenate([part.config_type for part in parts]),
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> Frames:
        """Return the frames at ``indices`` (in that order) as a new set."""
        indices = np.asarray(indices, dtype=np.int64)
        natoms = self.natoms_per_frame[indices]
        atom_index = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices])
        return Frames(
            numbers=self.numbers[atom_index],
            positions=self.positions[atom_index],
            offsets=np.concatenate([[0], np.cumsum(natoms)]),
            cells=self.cells[indices],
            pbc=self.pbc[indices],
            energy=None if self.energy is None else self.energy[indices],
            forces=None if self.forces is None else self.forces[atom_index],
            stress=None if self.stress is None else self.stress[indices],
            source_uuid=self.source_uuid[indices],
            config_type=self.config_type[indices],
        )

    # ------------------------------------------------------------------ conversion
    def to_atoms(self, index: int | None = None) -> Atoms | list[Atoms]:
        """Return frame ``index`` (or all frames) as ASE ``Atoms`` with a ``SinglePointCalculator``."""
        if index is None:
            return [self.to_atoms(i) for i in range(len(self))]
        start, stop = self.offsets[index], self.offsets[index + 1]
        atoms = Atoms(
            numbers=self.numbers[start:stop],
            positions=self.positions[start:stop],
            cell=self.cells[index],
            pbc=self.pbc[index],
        )
        if self.config_type[index]:
            atoms.info["config_type"] = str(self.config_type[index])
        if self.source_uuid[index]:
            atoms.info["source_uuid"] = str(self.source_uuid[index])
        results = {}
        if self.energy is not None:
            results["energy"] = float(self.energy[index])
            results["forces"] = self.forces[start:stop].copy()
        if self.stress is not None and np.isfinite(self.stress[index]).all():
            results["stress"] = self.stress[index].copy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    # ------------------------------------------------------------------ files
    def write_hdf5(self, path: str | os.PathLike) -> None:
        """Write the set to an HDF5 file; reading it back gives bit-identical arrays."""
        with h5py.File(path, "w") as handle:
            handle.attrs["format"] = FORMAT_NAME
            handle.attrs["format_version"] = FORMAT_VERSION
            handle.create_dataset("numbers", data=self.numbers.astype(np.uint8))
            handle.create_dataset("positions", data=self.positions)
            handle.create_dataset("offsets", data=self.offsets)
            handle.create_dataset("cells", data=self.cells)
            handle.create_dataset("pbc", data=self.pbc)
            for name in ("energy", "forces", "stress"):
                value = getattr(self, name)
                if value is not None:
                    handle.create_dataset(name, data=value)
            for name in ("source_uuid", "config_type"):
                values = [str(value).encode() for value in getattr(self, name)]
                width = max([len(value) for value in values] + [1])
                handle.create_dataset(name, data=np.array(values, dtype=f"S{width}"))

    @classmethod
    def read_hdf5(cls, path: str | os.PathLike) -> Frames:
        """Read a set written by :meth:`write_hdf5`.

        Raises
        ------
        ValueError
            For a file that is not an aiida-mlip dataset file or holds inconsistent arrays, naming
            the file.
        """
        try:
            handle = h5py.File(path, "r")
        except OSError as exception:
            raise ValueError(f"{path}: not a readable HDF5 dataset file: {exception}") from exception
        with handle:
            if handle.attrs.get("format") != FORMAT_NAME:
                raise ValueError(f"{path} is not an aiida-mlip dataset file")
            if int(handle.attrs["format_version"]) > FORMAT_VERSION:
                raise ValueError(
                    f"{path} has dataset format version {handle.attrs['format_version']}; "
                    f"this aiida-mlip reads up to {FORMAT_VERSION}"
                )
            arrays = {name: handle[name][()] for name in handle}
        try:
            for name in ("source_uuid", "config_type"):
                arrays[name] = np.char.decode(arrays[name], "utf-8").astype(object)
            return cls(**arrays)
        except (KeyError, TypeError, ValueError) as exception:
            raise ValueError(f"{path}: {exception}") from exception

    def write_extxyz(self, path: str | os.PathLike) -> None:
        """Write the set as extended XYZ (labels as the calculator's results).

        Extended XYZ is for exchange with other tools: ASE writes positions and forces with 8 decimals.
        :meth:`write_hdf5` is the exact format.
        """
        from ase.io import write

        write(path, self.to_atoms(), format="extxyz")

    @classmethod
    def read_extxyz(cls, path: str | os.PathLike, require_labels: bool = True) -> Frames:
        """Read an extended XYZ file into a set.

        Raises
        ------
        ValueError
            For a file that does not exist, is empty, is not extended XYZ, declares a wrong atom
            count, holds an unknown element, a frame without atoms, labels or a valid cell, or NaN;
            the message names the file, the frame and the problem.
        """
        from ase.io import read

        try:
            count = _check_xyz_layout(path)
        except (OSError, UnicodeError) as exception:
            raise ValueError(f"{path}: cannot read the file: {exception}") from exception
        if count == 0:
            raise ValueError(f"{path}: no configurations (the file holds no frames)")
        try:
            images = read(path, index=":", format="extxyz")
        except KeyError as exception:
            raise ValueError(f"{path}: unknown element symbol {exception}") from exception
        except Exception as exception:  # ASE raises XYZError, ValueError, IndexError for bad content
            raise ValueError(f"{path}: not a readable extended XYZ file: {exception}") from exception
        try:
            return cls.from_atoms(images, require_labels=require_labels)
        except ValueError as exception:
            raise ValueError(f"{path}: {exception}") from exception
