"""``aiida-mlip-select``: pick a batch of configurations to label from a large pool, files in, files out.

Usage::

    aiida-mlip-select --pool candidates.h5 [--pool more.h5 ...] --parameters select.yaml \
        [--model model.safetensors] [--training training.h5 | --active-set active_set.npz] \
        [--output-dir .] [--device auto]

Inputs: one or more pool files (Frames ``.h5`` or extxyz); beside each, a ``<stem>.csv`` with
per-frame scores (as ``aiida-mlip-explore`` writes next to ``candidates.h5``) is read when present;
the model file, needed by the strategies that use per-atom features (and to compute the committee
deviation when no scores are given); the training set, whose features give the starting active
set and whose frames are never selected again (near-duplicates), or an active set file.

Parameters (YAML/JSON mapping): :class:`~aiida_mlip.selection.settings.SelectParameters`, i.e. the
``selection`` block (``strategy``, default ``random``; ``windowed``, default false; ``budget`` >= 1;
``seed``; ``features``; the strategy's options) and the ``trust`` window (``{"lo": ..., "hi": ...}``,
eV/Angstrom). The selection itself is :func:`aiida_mlip.selection.batch.select_batch`: with
``windowed``, the window first, then the top-up from above ``hi``; otherwise every frame of the pool
alike; frames with atoms closer than ``min_distance`` are never picked.

Outputs: ``selected.h5`` (unlabelled Frames) and ``selected.extxyz``; ``selection.json`` with, for
each pick, the pool file and index in it and its score, plus the strategy's info (``stop_reason``,
``origin`` counts); and, for the D-optimal strategies, ``active_set.npz`` with the picked frames'
rows swapped in.

Exit codes: 0 selection written (possibly fewer frames than the budget; ``selection.json`` says
why); 2 bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from aiida_mlip.engine.io import EXIT_OK, InputError, read_mapping, read_structures, report_bad_input

SCORE_COLUMNS = ("max_force_deviation", "energy_deviation", "gamma")
PROGRAM = "aiida-mlip-select"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Select configurations to label from a pool.")
    parser.add_argument(
        "--pool", action="append", required=True, help="pool file (Frames .h5 or extxyz); repeatable"
    )
    parser.add_argument("--parameters", required=True, help="YAML or JSON mapping: strategy, budget, options")
    parser.add_argument("--model", help="committee model file, for features and deviations")
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument(
        "--training", help="training set (Frames .h5 or extxyz): active set and exclusions"
    )
    reference.add_argument("--active-set", help="active set .npz")
    parser.add_argument("--output-dir", default=".")
    parser.add_argument("--device", default="auto")
    return parser


def _read_scores(path: Path, n_frames: int) -> dict[str, np.ndarray]:
    sidecar = path.with_suffix(".csv")
    if not sidecar.is_file():
        return {}
    with open(sidecar, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != n_frames:
        raise InputError(f"{sidecar} has {len(rows)} rows for the {n_frames} frames of {path}")
    return {
        name: np.array([float(row[name]) for row in rows])
        for name in SCORE_COLUMNS
        if rows and name in rows[0]
    }


def read_parameters(path: str):
    """The :class:`SelectParameters` of the ``--parameters`` file."""
    from aiida_mlip.selection.settings import SelectParameters

    try:
        return SelectParameters.from_mapping(read_mapping(path))
    except ValueError as error:
        raise InputError(str(error)) from None


def read_pool(paths: list[str]) -> tuple[list, list[tuple[str, int]], dict[str, np.ndarray]]:
    """The pool's images, each one's (file, index in file), and the scores of the sidecar tables (NaN where none)."""
    images, sources, parts = [], [], {}
    for pool_path in map(Path, paths):
        pool_images = read_structures(pool_path)
        for name, values in _read_scores(pool_path, len(pool_images)).items():
            parts.setdefault(name, []).append((len(images), values))
        sources += [(str(pool_path), index) for index in range(len(pool_images))]
        images += pool_images
    scores = {}
    for name, chunks in parts.items():
        scores[name] = np.full(len(images), np.nan)
        for start, values in chunks:
            scores[name][start : start + len(values)] = values
    return images, sources, scores


def load_model(path: str | None, device: str):
    """The committee calculator of ``--model``, or ``None``."""
    if not path:
        return None
    if not Path(path).is_file():
        raise InputError(f"model file {path} not found")
    from aiida_mlip.potentials import load_calculator
    from aiida_mlip.potentials.backends import BackendUnavailable

    try:
        return load_calculator(path, device=device, spread_every=1)
    except (ValueError, OSError, BackendUnavailable) as error:
        raise InputError(f"cannot load model {path}: {error}") from None


def write_outputs(output: Path, outcome, images, sources, parameters) -> None:
    """``selected.h5``, ``selected.extxyz``, ``selection.json`` and the active set."""
    from ase.io import write

    from aiida_mlip.exploration.records import frames_of
    from aiida_mlip.potentials.frames import Frames

    if outcome.active_set is not None:
        outcome.active_set.save(output / "active_set.npz")
    picked = [images[i].copy() for i in outcome.indices]  # copies carry no calculator: unlabelled
    if picked:
        Frames.from_atoms(picked, require_labels=False).write_hdf5(output / "selected.h5")
        write(output / "selected.extxyz", picked, format="extxyz")
    else:
        frames_of([]).write_hdf5(output / "selected.h5")
        (output / "selected.extxyz").write_text("")
    record = {
        "format": "aiida-mlip-selection",
        "format_version": 2,
        "strategy": parameters.strategy,
        "budget": parameters.budget,
        "trust": parameters.trust.to_dict(),
        "pool_frames": len(images),
        "selected": [
            {"pool_index": int(i), "file": sources[i][0], "index_in_file": sources[i][1], "score": float(s)}
            for i, s in zip(outcome.indices, outcome.scores, strict=True)
        ],
        "info": outcome.info,
    }
    (output / "selection.json").write_text(json.dumps(record, indent=2, default=float) + "\n")


def run(args: argparse.Namespace) -> int:
    from aiida_mlip.selection.batch import select_batch
    from aiida_mlip.selection.maxvol import ActiveSet

    def log(line: str) -> None:
        print(line, flush=True)

    parameters = read_parameters(args.parameters)
    images, sources, scores = read_pool(args.pool)
    log(
        f"{PROGRAM}: {len(images)} frames in {len(args.pool)} pool file(s), strategy {parameters.strategy}, "
        f"budget {parameters.budget}, trust window [{parameters.trust.lo}, {parameters.trust.hi}) eV/A"
    )
    calculator = load_model(args.model, args.device)
    if (args.training or args.active_set) and calculator is None:
        raise InputError("--training and --active-set need --model (features of the same potential)")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        training = read_structures(args.training) if args.training else None
        active_set = ActiveSet.load(args.active_set) if args.active_set else None
        outcome = select_batch(
            images,
            parameters.selection(),
            parameters.trust,
            calculator=calculator,
            scores=scores,
            training=training,
            active_set=active_set,
            log=log,
        )
    except (ValueError, OSError) as error:
        raise InputError(f"{parameters.strategy}: {error}") from None
    write_outputs(output, outcome, images, sources, parameters)
    log(
        f"selected {len(outcome.indices)} of {len(images)} frames ({outcome.info.get('stop_reason')}; "
        f"origin {outcome.info.get('origin')}) in {time.perf_counter() - start:.1f} s"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InputError as error:
        return report_bad_input(PROGRAM, error)


if __name__ == "__main__":
    sys.exit(main())
