"""``DatasetData``: a versioned set of labelled configurations, and the calcfunction that grows it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from aiida.engine import calcfunction

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.potentials.frames import Frames

__all__ = ("DatasetData", "merge_datasets")


class DatasetData(StructureSetData):
    """Labelled configurations (energy, forces, optional stress), versioned.

    On top of :class:`~aiida_mlip.data.structures.StructureSetData`'s attributes: ``n_stress``
    (frames with a stress label), ``version`` (1 for a new set, +1 for each :func:`merge_datasets`),
    ``parent_uuid`` (the previous version) and ``label_settings`` (how the labels were computed, e.g.
    DFT cutoffs and k-point density; labels made with different settings are never merged).

    Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (stress, Voigt order, ASE sign).

    Parameters
    ----------
    frames
        The configurations; every frame must carry an energy and forces.
    label_settings
        JSON-serialisable description of the labelling method.

    Raises
    ------
    ValueError
        For a frame without energy or forces, arrays of mismatched shapes, unknown elements or
        NaN/infinite values. Nothing is stored in that case.
    """

    FILENAME = "dataset.h5"
    REQUIRE_LABELS = True

    def __init__(self, frames: Frames | None = None, label_settings: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if frames is not None:
            self.set_frames(frames, label_settings=label_settings)

    def set_frames(self, frames: Frames, label_settings: dict | None = None) -> None:
        """Validate ``frames`` (labels required) and store them as the content of this node."""
        super().set_frames(frames)
        self.base.attributes.set("n_stress", int(frames.has_stress.sum()))
        self.base.attributes.set("version", self.base.attributes.get("version", 1))
        self.base.attributes.set("label_settings", label_settings or {})

    @property
    def version(self) -> int:
        return self.base.attributes.get("version", 1)

    @property
    def label_settings(self) -> dict:
        return self.base.attributes.get("label_settings", {})


def _check_label_settings(datasets: Sequence[DatasetData]) -> dict:
    """Return the common label settings of ``datasets``, refusing a mix of different ones."""
    settings = [dataset.label_settings for dataset in datasets if dataset.label_settings]
    for other in settings[1:]:
        if other != settings[0]:
            raise ValueError(
                f"cannot merge labels computed with different settings: {settings[0]} differs from {other}"
            )
    return settings[0] if settings else {}


@calcfunction
def merge_datasets(dataset: DatasetData | None = None, **labels: DatasetData) -> DatasetData:
    """Return a new version of ``dataset`` with the frames of every node in ``labels`` appended.

    Each new frame without a ``source_uuid`` gets the UUID of the calculation that created its
    label node (or of the label node itself when it has no creator), so every frame of a dataset can
    be traced to the calculation that labelled it. The provenance graph links the new version to the
    old one and to every label node.

    Parameters
    ----------
    dataset
        The previous version; omit it to start a dataset from labels alone.
    **labels
        ``DatasetData`` nodes with the new labelled frames (link labels are their keyword names).
    """
    inputs = ([dataset] if dataset is not None else []) + [labels[key] for key in sorted(labels)]
    if not inputs:
        raise ValueError("merge_datasets needs a dataset or at least one label set")
    label_settings = _check_label_settings(inputs)
    parts = [dataset.get_frames()] if dataset is not None else []
    for key in sorted(labels):
        node = labels[key]
        frames = node.get_frames()
        creator = node.creator
        source = creator.uuid if creator is not None else node.uuid
        missing = np.array([not uuid for uuid in frames.source_uuid])
        frames.source_uuid[missing] = source
        parts.append(frames)
    merged = DatasetData()
    merged.base.attributes.set("version", dataset.version + 1 if dataset is not None else 1)
    merged.set_frames(Frames.concatenate(parts), label_settings=label_settings)
    if dataset is not None:
        merged.base.attributes.set("parent_uuid", dataset.uuid)
    return merged
