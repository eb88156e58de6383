"""The files an exploration leaves: trajectory, per-frame table, candidates, summary.

- ``trajectory.extxyz`` (or ``trajectory.h5``, a :class:`~aiida_mlip.potentials.frames.Frames` file
  whose ``config_type`` is ``walker<i>_step<s>``): the written frames of all walkers, in order.
- ``frames.csv``: one row per checked frame, columns :attr:`FrameCheck.COLUMNS`
  (units in the column names; force deviations in eV/Angstrom).
- ``candidates.h5``: the selection pool, unlabelled ``Frames`` (possibly empty): the frames inside
  the trust window and those above it that did not explode (their ``frame_class`` is ``failed``),
  with ``candidates.csv`` beside it holding their scores row by row (and, on a metadynamics
  walker, the ``collective_variable`` in Angstrom, NaN elsewhere; on a path-integral walker, the
  ``bead`` the frame is, -1 elsewhere), and ``candidates.extxyz``.
- ``summary.json``: :meth:`ExplorationResult.summary`.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from ase.io import write

from aiida_mlip.potentials.frames import Frames

from .md import ExplorationResult
from .watch import FrameCheck

__all__ = ("CANDIDATE_COLUMNS", "frames_of", "write_exploration")

CANDIDATE_COLUMNS = (
    "candidate_index",
    "walker",
    "step",
    "time_fs",
    "target_temperature_K",
    "max_force_deviation",
    "energy_deviation",
    "gamma",
    "collective_variable",
    "bead",
)


def frames_of(images) -> Frames:
    """The images as unlabelled Frames tagged ``walker<i>_step<s>`` (an empty set for no images)."""
    if not images:
        return Frames(
            numbers=np.zeros(0, dtype=np.int64),
            positions=np.zeros((0, 3)),
            offsets=np.zeros(1, dtype=np.int64),
            cells=np.zeros((0, 3, 3)),
            pbc=np.zeros((0, 3), dtype=bool),
        )
    tags = [f"walker{atoms.info['walker']}_step{atoms.info['step']}" for atoms in images]
    return Frames.from_atoms(images, require_labels=False, config_type=tags)


def write_exploration(
    result: ExplorationResult, directory: str | os.PathLike, trajectory_format: str = "extxyz"
) -> dict[str, Path]:
    """Write all outputs of ``result`` into ``directory``; returns their paths by name."""
    if trajectory_format not in ("extxyz", "h5"):
        raise ValueError(f"trajectory_format must be 'extxyz' or 'h5', got {trajectory_format!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "trajectory": directory / f"trajectory.{trajectory_format}",
        "frames": directory / "frames.csv",
        "candidates": directory / "candidates.h5",
        "candidates_table": directory / "candidates.csv",
        "candidates_extxyz": directory / "candidates.extxyz",
        "summary": directory / "summary.json",
    }
    # trajectory and candidates are numbered over all walkers, in walker order
    trajectory, candidates, candidate_checks = [], [], []
    with open(paths["frames"], "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(FrameCheck.COLUMNS)
        for walker in result.walkers:
            trajectory_offset, candidate_offset = len(trajectory), len(candidates)
            for check in walker.checks:
                row = check.row()
                if check.trajectory_index >= 0:
                    row[-2] = check.trajectory_index + trajectory_offset
                if check.candidate_index >= 0:
                    row[-1] = check.candidate_index + candidate_offset
                table.writerow(row)
            trajectory.extend(walker.trajectory)
            for atoms, check in walker.candidates:
                candidates.append(atoms)
                candidate_checks.append((len(candidates) - 1, check))
    if trajectory_format == "extxyz" and trajectory:
        write(paths["trajectory"], trajectory, format="extxyz")
    elif trajectory_format == "extxyz":
        paths["trajectory"].write_text("")
    else:
        frames_of(trajectory).write_hdf5(paths["trajectory"])
    frames_of(candidates).write_hdf5(paths["candidates"])
    if candidates:
        write(paths["candidates_extxyz"], candidates, format="extxyz")
    else:
        paths["candidates_extxyz"].write_text("")
    with open(paths["candidates_table"], "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(CANDIDATE_COLUMNS)
        for index, check in candidate_checks:
            table.writerow(
                [
                    index,
                    check.walker,
                    check.step,
                    f"{check.time:.3f}",
                    f"{check.target_temperature:.3f}",
                    f"{check.max_force_deviation:.6f}",
                    f"{check.energy_deviation:.6f}",
                    f"{check.gamma:.6f}",
                    f"{check.collective_variable:.6f}",
                    check.bead,
                ]
            )
    summary = result.summary()
    summary["files"] = {name: path.name for name, path in paths.items()}
    paths["summary"].write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    return paths


def _json_default(value):
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
