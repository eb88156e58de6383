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

Parameters (YAML/JSON mapping): ``strategy`` (one of
:data:`~aiida_mlip.selection.strategies.STRATEGIES`, default ``hybrid``), ``budget`` (required),
``seed``, ``features`` (``hidden`` or ``descriptor``) and any keyword option of the strategy
(``lo``, ``hi``, ``tol``, ``duplicate_tol``, ``regularisation``, ``kind``...).

Outputs: ``selected.h5`` (unlabelled Frames) and ``selected.extxyz``; ``selection.json`` with, for
each pick, the pool file and index in it and its score, plus the strategy's info; and, for the
D-optimal strategies, ``active_set.npz`` with the picked frames' rows swapped in.

Exit codes: 0 selection written (possibly fewer frames than the budget; ``selection.json`` says
why); 2 bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np

from aiida_mlip.engine.explore import InputError, read_parameters, read_structures

EXIT_OK = 0
EXIT_BAD_INPUT = 2
SCORE_COLUMNS = ("max_force_deviation", "energy_deviation", "gamma")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiida-mlip-select", description="Select configurations to label from a pool."
    )
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


def _features(calculator, images, kind: str):
    features, numbers, frames = [], [], []
    for index, atoms in enumerate(images):
        features.append(calculator.get_features(atoms, kind=kind))
        numbers.append(atoms.numbers)
        frames.append(np.full(len(atoms), index))
    return np.concatenate(features), np.concatenate(numbers), np.concatenate(frames)


def run(args: argparse.Namespace) -> int:
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.selection.maxvol import ActiveSet
    from aiida_mlip.selection.pool import SelectionPool
    from aiida_mlip.selection.strategies import STRATEGIES

    def log(line: str) -> None:
        print(line, flush=True)

    options = read_parameters(args.parameters)
    strategy = options.pop("strategy", "hybrid")
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}; choose one of {', '.join(sorted(STRATEGIES))}")
    if "budget" not in options:
        raise InputError("the parameters need a 'budget' (frames to select)")
    budget = options.pop("budget")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise InputError(f"budget must be a non-negative integer, got {budget!r}")
    seed = options.pop("seed", 0)
    kind = options.pop("features", "hidden")
    function = STRATEGIES[strategy]
    accepted = {
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InputError(
            f"strategy {strategy!r} takes no option(s) {', '.join(unknown)}; it takes {', '.join(sorted(accepted))}"
        )

    images, sources, scores = [], [], {}
    for pool_path in map(Path, args.pool):
        pool_images = read_structures(pool_path)
        for name, values in _read_scores(pool_path, len(pool_images)).items():
            scores.setdefault(name, []).append((len(images), values))
        sources += [(str(pool_path), index) for index in range(len(pool_images))]
        images += pool_images
    n_frames = len(images)
    score_arrays = {}
    for name, parts in scores.items():
        array = np.full(n_frames, np.nan)
        for start, values in parts:
            array[start : start + len(values)] = values
        score_arrays[name] = array
    log(
        f"aiida-mlip-select: {n_frames} frames in {len(args.pool)} pool file(s), strategy {strategy}, budget {budget}"
    )

    calculator = None
    if args.model:
        if not Path(args.model).is_file():
            raise InputError(f"model file {args.model} not found")
        from aiida_mlip.potentials import load_calculator

        try:
            calculator = load_calculator(args.model, device=args.device, spread_every=1)
        except (ValueError, OSError) as error:
            raise InputError(f"cannot load model {args.model}: {error}") from None
    start = time.perf_counter()
    pool_kwargs = {}
    if calculator is not None:
        features, numbers, row_frame = _features(calculator, images, kind)
        pool_kwargs = {"features": features, "numbers": numbers, "row_frame": row_frame}
        if "max_force_deviation" not in score_arrays or np.isnan(score_arrays["max_force_deviation"]).any():
            deviation = []
            for atoms in images:
                atoms = atoms.copy()
                atoms.calc = calculator
                atoms.get_forces()
                deviation.append(calculator.results["max_force_deviation"])
            score_arrays["max_force_deviation"] = np.asarray(deviation)
        log(
            f"features of {len(features)} atoms ({features.shape[1]} each) in {time.perf_counter() - start:.1f} s"
        )
    pool = SelectionPool(n_frames=n_frames, scores=score_arrays, **pool_kwargs)

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if args.training or args.active_set:
        if calculator is None:
            raise InputError("--training and --active-set need --model (features of the same potential)")
        try:
            if args.active_set:
                active_set = ActiveSet.load(args.active_set)
            else:
                training = read_structures(args.training)
                t_features, t_numbers, t_frames = _features(calculator, training, kind)
                active_set = ActiveSet.build(t_features, t_numbers, frame_index=t_frames)
                reference = SelectionPool(
                    n_frames=len(training), features=t_features, numbers=t_numbers, row_frame=t_frames
                ).frame_fingerprints()
                if "reference_fingerprints" in accepted:
                    options.setdefault("reference_fingerprints", reference)
        except (ValueError, OSError) as error:
            raise InputError(f"cannot use the training set / active set: {error}") from None
        if "active_set" in accepted:
            options.setdefault("active_set", active_set)
        for note in active_set.notes:
            log(f"active set: {note}")

    try:
        result = function(pool, budget, rng=seed, **options)
    except (ValueError, TypeError) as error:
        raise InputError(f"{strategy}: {error}") from None
    info = dict(result.info)
    updated = info.pop("active_set", None)
    if updated is not None:
        updated.save(output / "active_set.npz")
    picked = [images[i].copy() for i in result.indices]  # copies carry no calculator: unlabelled
    if picked:
        Frames.from_atoms(picked, require_labels=False).write_hdf5(output / "selected.h5")
        from ase.io import write

        write(output / "selected.extxyz", picked, format="extxyz")
    else:
        from aiida_mlip.exploration.records import frames_of

        frames_of([]).write_hdf5(output / "selected.h5")
        (output / "selected.extxyz").write_text("")
    record = {
        "format": "aiida-mlip-selection",
        "format_version": 1,
        "strategy": strategy,
        "budget": budget,
        "pool_frames": n_frames,
        "selected": [
            {"pool_index": int(i), "file": sources[i][0], "index_in_file": sources[i][1], "score": float(s)}
            for i, s in zip(result.indices, result.scores, strict=True)
        ],
        "info": info,
    }
    (output / "selection.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    log(
        f"selected {len(result.indices)} of {n_frames} frames ({info.get('stop_reason')}) in {time.perf_counter() - start:.1f} s"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InputError as error:
        print(f"aiida-mlip-select: error: {error}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
