"""``StructureSetData``: a set of atomic configurations stored as one HDF5 file."""

from __future__ import annotations

import collections
import io
import os
import tempfile
from collections.abc import Sequence

from aiida.orm import Data
from ase import Atoms

from aiida_mlip.potentials.frames import FORMAT_VERSION, Frames

__all__ = ("StructureSetData",)


class StructureSetData(Data):
    """Configurations (positions, cell, pbc, atomic numbers, config type), optionally labelled.

    The frames live in the repository as ``frames.h5`` (:meth:`Frames.write_hdf5`: flat float64
    arrays, so a round trip is bit-exact). Attributes make sets queryable without opening the file:
    ``n_frames``, ``n_atoms`` (over all frames), ``elements`` (chemical symbols), ``n_elements``,
    ``config_types`` (tag -> count). This class is what exploration hands to labelling (candidates
    without labels); :class:`~aiida_mlip.data.dataset.DatasetData` adds the labels.

    Units: Angstrom (and, for labels, eV, eV/Angstrom, eV/Angstrom^3).

    Raises
    ------
    ValueError
        For arrays of mismatched shapes, unknown elements or NaN/infinite values (and, for
        ``DatasetData``, frames without energy or forces). Nothing is stored in that case.
    """

    FILENAME = "frames.h5"
    SCORES_FILENAME = "scores.csv"
    REQUIRE_LABELS = False

    def __init__(self, frames: Frames | None = None, **kwargs):
        super().__init__(**kwargs)
        if frames is not None:
            self.set_frames(frames)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(cls, images: Sequence[Atoms], **kwargs):
        """Build a set from ASE ``Atoms`` (labels are read from their calculators' results)."""
        frames = Frames.from_atoms(images, require_labels=cls.REQUIRE_LABELS)
        return cls(frames=frames, **kwargs)

    @classmethod
    def from_extxyz(cls, path: str | os.PathLike, **kwargs):
        """Read an extended XYZ file into a set (errors name the file, the frame and the problem)."""
        frames = Frames.read_extxyz(path, require_labels=cls.REQUIRE_LABELS)
        return cls(frames=frames, **kwargs)

    def set_frames(self, frames: Frames) -> None:
        """Validate ``frames`` and store them as the content of this (unstored) node."""
        frames.validate(require_labels=self.REQUIRE_LABELS)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, self.FILENAME)
            frames.write_hdf5(path)
            self.base.repository.put_object_from_file(path, self.FILENAME)
        counts = collections.Counter(str(tag) for tag in frames.config_type)
        attributes = {
            "n_frames": len(frames),
            "n_atoms": frames.n_atoms,
            "elements": frames.elements,
            "n_elements": len(frames.elements),
            "config_types": dict(sorted(counts.items())),
            "format_version": FORMAT_VERSION,
        }
        for key, value in attributes.items():
            self.base.attributes.set(key, value)

    def set_scores_file(self, path: str | os.PathLike) -> None:
        """Attach a CSV table with one row per frame (e.g. the uncertainty scores exploration gave them)."""
        import csv

        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        if len(rows) - 1 != self.n_frames:
            raise ValueError(f"{path} has {len(rows) - 1} rows for {self.n_frames} frames")
        self.base.repository.put_object_from_file(os.fspath(path), self.SCORES_FILENAME)
        self.base.attributes.set("score_columns", rows[0])

    def get_scores(self) -> dict:
        """Return the per-frame score columns (numeric ones as float arrays), or ``{}`` without a table."""
        import csv

        import numpy as np

        if self.SCORES_FILENAME not in self.base.repository.list_object_names():
            return {}
        text = self.base.repository.get_object_content(self.SCORES_FILENAME)
        rows = list(csv.DictReader(io.StringIO(text)))
        columns = {}
        for name in self.base.attributes.get("score_columns", []):
            values = [row[name] for row in rows]
            try:
                columns[name] = np.array([float(v) if v not in ("", None) else np.nan for v in values])
            except ValueError:
                columns[name] = np.array(values, dtype=object)
        return columns

    # ------------------------------------------------------------------ attributes
    @property
    def n_frames(self) -> int:
        return self.base.attributes.get("n_frames")

    @property
    def n_atoms(self) -> int:
        return self.base.attributes.get("n_atoms")

    @property
    def elements(self) -> list[str]:
        return self.base.attributes.get("elements")

    def __len__(self) -> int:
        return self.n_frames

    # ------------------------------------------------------------------ content
    def get_frames(self) -> Frames:
        """Return the configurations as a :class:`~aiida_mlip.potentials.frames.Frames`."""
        content = self.base.repository.get_object_content(self.FILENAME, mode="rb")
        return Frames.read_hdf5(io.BytesIO(content))

    def get_atoms(self) -> list[Atoms]:
        """Return the configurations as ASE ``Atoms`` (labelled ones with a ``SinglePointCalculator``)."""
        return self.get_frames().to_atoms()

    def export_extxyz(self, path: str | os.PathLike) -> None:
        """Write the configurations (and labels) to an extended XYZ file."""
        self.get_frames().write_extxyz(path)

    def export_hdf5(self, path: str | os.PathLike) -> None:
        """Write the HDF5 file (the format the engine executables read)."""
        with open(path, "wb") as handle:
            handle.write(self.base.repository.get_object_content(self.FILENAME, mode="rb"))
