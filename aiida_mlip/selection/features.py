"""Per-atom features of a set of configurations, stacked as the selection and the grade need them.

One place for what ``aiida-mlip-explore`` (the active set of the extrapolation grade),
``aiida-mlip-select`` (the pool and the training set's active set) and the AiiDA-free loop do with
a committee calculator's ``get_features``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ("active_set_from", "stack_features")


def stack_features(
    calculator, images: Sequence, kind: str = "hidden"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack the per-atom features of ``images`` into one array.

    Parameters
    ----------
    calculator
        The committee calculator (``get_features(atoms, kind=...) -> (n_atoms, m)``).
    images : sequence of ASE Atoms
    kind : {"hidden", "descriptor"}
        The committee's last hidden layer or the descriptor.

    Returns
    -------
    features : (n_atoms_total, m) float array
    numbers : (n_atoms_total,) int array
        Atomic number of each row.
    row_frame : (n_atoms_total,) int array
        Index in ``images`` of each row.
    """
    features, numbers, row_frame = [], [], []
    for index, atoms in enumerate(images):
        features.append(np.asarray(calculator.get_features(atoms, kind=kind), dtype=np.float64))
        numbers.append(np.asarray(atoms.numbers, dtype=np.int64))
        row_frame.append(np.full(len(atoms), index, dtype=np.int64))
    if not features:
        raise ValueError("no configurations to take features of")
    return np.concatenate(features), np.concatenate(numbers), np.concatenate(row_frame)


def active_set_from(calculator, images: Sequence, kind: str = "hidden"):
    """The MaxVol :class:`~aiida_mlip.selection.maxvol.ActiveSet` of ``images`` (e.g. the training set)."""
    from .maxvol import ActiveSet

    features, numbers, row_frame = stack_features(calculator, images, kind)
    return ActiveSet.build(features, numbers, frame_index=row_frame)
