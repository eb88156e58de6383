"""``aiida-mlip-explore``: uncertainty-watched MD with a committee potential, files in, files out.

Usage::

    aiida-mlip-explore --model model.safetensors --structures start.extxyz --parameters explore.yaml \
        [--active-set active_set.npz | --training training.h5] [--output-dir .] [--device auto] \
        [--trajectory-format extxyz|h5]

Inputs: the committee's model file; start structures (extxyz, or a Frames ``.h5`` file); a YAML or
JSON mapping of :class:`~aiida_mlip.exploration.parameters.ExploreParameters`; optionally an
active set (``.npz``, :meth:`~aiida_mlip.selection.maxvol.ActiveSet.save`) or the training set
(Frames ``.h5`` or extxyz) from which one is built, to watch the extrapolation grade as well.

Outputs (see :mod:`aiida_mlip.exploration.records`): ``trajectory.extxyz`` (or ``.h5``),
``frames.csv``, ``candidates.h5`` + ``candidates.csv`` + ``candidates.extxyz``, ``summary.json``
and, when built from a training set, ``active_set.npz``.

Exit codes: 0 the exploration ran (walkers that stopped early at the break threshold or exploded
are outcomes, recorded in ``summary.json``); 2 bad input (message on stderr); 3 every walker
exploded before its first frame (the start structures or the potential are broken).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aiida_mlip.engine.io import EXIT_OK, InputError, read_mapping, read_structures, report_bad_input

EXIT_ALL_EXPLODED = 3
PROGRAM = "aiida-mlip-explore"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiida-mlip-explore",
        description="Molecular dynamics with a committee potential, watched for uncertainty.",
    )
    parser.add_argument("--model", required=True, help="committee model file (model.safetensors)")
    parser.add_argument("--structures", required=True, help="start structures: extxyz or Frames .h5")
    parser.add_argument("--parameters", required=True, help="YAML or JSON mapping of exploration parameters")
    gamma = parser.add_mutually_exclusive_group()
    gamma.add_argument("--active-set", help="active set .npz, to watch the extrapolation grade")
    gamma.add_argument("--training", help="training set (Frames .h5 or extxyz) to build the active set from")
    parser.add_argument(
        "--features", default="hidden", choices=("hidden", "descriptor"), help="feature kind for gamma"
    )
    parser.add_argument("--output-dir", default=".", help="where the outputs go (default: here)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda...")
    parser.add_argument("--trajectory-format", default="extxyz", choices=("extxyz", "h5"))
    return parser


def run(args: argparse.Namespace) -> int:
    from aiida_mlip.exploration.md import explore, grader
    from aiida_mlip.exploration.parameters import ExploreParameters
    from aiida_mlip.exploration.records import write_exploration

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        parameters = ExploreParameters.from_mapping(read_mapping(args.parameters))
    except ValueError as error:
        raise InputError(f"invalid parameters: {error}") from None
    structures = read_structures(args.structures)
    if not Path(args.model).is_file():
        raise InputError(f"model file {args.model} not found")
    from aiida_mlip.potentials import load_calculator
    from aiida_mlip.potentials.backends import BackendUnavailable

    try:
        calculator = load_calculator(args.model, device=args.device, spread_every=1)
    except (ValueError, OSError, BackendUnavailable) as error:
        raise InputError(f"cannot load model {args.model}: {error}") from None
    unknown = sorted(
        {symbol for atoms in structures for symbol in atoms.get_chemical_symbols()} - set(calculator.elements)
    )
    if unknown:
        raise InputError(f"the structures hold elements the model does not know: {', '.join(unknown)}")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    grade = None
    if args.active_set or args.training:
        from aiida_mlip.selection.features import active_set_from
        from aiida_mlip.selection.maxvol import ActiveSet

        try:
            if args.active_set:
                active_set = ActiveSet.load(args.active_set)
            else:
                active_set = active_set_from(calculator, read_structures(args.training), args.features)
                active_set.save(output / "active_set.npz")
        except (ValueError, OSError) as error:
            raise InputError(f"cannot use the active set: {error}") from None
        for note in active_set.notes:
            log(f"active set: {note}")
        grade = grader(calculator, active_set, kind=args.features)
    lockstep = " in lockstep" if parameters.batched and parameters.walkers > 1 else ""
    log(
        f"aiida-mlip-explore: {parameters.walkers} walker(s){lockstep}, {parameters.ensemble.upper()}, {parameters.steps} steps of "
        f"{parameters.timestep} fs, T {parameters.temperature[0]}..{parameters.temperature[1]} K, "
        f"trust window [{parameters.trust.lo}, {parameters.trust.hi}) eV/A, break at {parameters.break_threshold} eV/A"
    )
    start = time.perf_counter()
    result = explore(structures, calculator, parameters, grade=grade, log=log)
    write_exploration(result, output, trajectory_format=args.trajectory_format)
    summary = result.summary()
    log(
        f"done in {time.perf_counter() - start:.1f} s: counts {summary['counts']}, candidates {summary['candidates']}, "
        f"stop reasons {summary['stop_reasons']}"
    )
    if result.all_exploded_before_first_frame:
        print(f"{PROGRAM}: every walker exploded before its first frame", file=sys.stderr, flush=True)
        return EXIT_ALL_EXPLODED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InputError as error:
        return report_bad_input(PROGRAM, error)


if __name__ == "__main__":
    sys.exit(main())
