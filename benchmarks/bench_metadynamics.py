"""Well-tempered metadynamics against plain MD: does a walker cross a vacancy hop in EMT aluminium?

A 108-atom fcc Al cell (a = 4.05 Angstrom) loses atom 0; atoms A and B, the two nearest neighbours of
the vacancy on either side of it along [110], are 5.73 Angstrom apart. When either hops into the
vacancy their distance falls to 2.86 Angstrom; the collective variable is that distance and a hop
counts once it is below ``--crossed`` (3.4 Angstrom). Walkers run Langevin MD (2 fs, friction 0.02)
on EMT at the same temperature from the same start with the same seeds, plain and with the
metadynamics bias of :mod:`aiida_mlip.exploration.metadynamics`; the table gives the step of the
first crossing per seed (``>N``: none in ``--steps``), the smallest distance reached and the hills laid.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_metadynamics.py     # the README table
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin

from aiida_mlip.exploration.md import thermalize_momenta
from aiida_mlip.exploration.metadynamics import MetadynamicsBias, MetadynamicsSettings, distance_cv

A = 4.05


def vacancy_cell():
    """The 107-atom cell and the indices of the two neighbours of the vacancy along [110]."""
    atoms = bulk("Al", "fcc", a=A, cubic=True).repeat(3)
    del atoms[0]
    length = atoms.cell[0, 0]

    def nearest(point):
        offsets = (atoms.positions - point + length / 2) % length - length / 2
        return int(np.argmin(np.linalg.norm(offsets, axis=1)))

    return atoms, (nearest([A / 2, A / 2, 0.0]), nearest([-A / 2, -A / 2, 0.0]))


def walk(args, seed: int, metadynamics: bool) -> dict:
    atoms, pair = vacancy_cell()
    calculator = EMT()
    if metadynamics:
        settings = MetadynamicsSettings.from_mapping(
            {
                "cv": {"atoms": list(pair)},
                "height": args.height,
                "width": args.width,
                "pace": args.pace,
                "bias_factor": args.bias_factor,
            }
        )
        calculator = MetadynamicsBias(calculator, settings, args.temperature)
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, args.temperature, rng=rng)
    dynamics = Langevin(
        atoms, 2 * units.fs, temperature_K=args.temperature, friction=0.02, rng=rng, fixcm=False
    )
    if metadynamics:
        dynamics.attach(calculator.deposit, interval=args.pace)
    crossed, smallest, step = None, np.inf, 0
    while step < args.steps:
        dynamics.run(10)
        step += 10
        distance = distance_cv(atoms, pair)[0]
        smallest = min(smallest, distance)
        if distance < args.crossed:
            crossed = step
            break
    hills = len(calculator.centres) if metadynamics else 0
    return {"crossed": crossed, "smallest": smallest, "hills": hills}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--crossed", type=float, default=3.4, help="Angstrom")
    parser.add_argument("--height", type=float, default=0.1, help="eV")
    parser.add_argument("--width", type=float, default=0.15, help="Angstrom")
    parser.add_argument("--pace", type=int, default=20, help="steps")
    parser.add_argument("--bias-factor", type=float, default=15.0)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args()
    start = time.perf_counter()
    lines = [
        "| MD | first crossing (step), per seed | crossed | smallest A-B distance (A), per seed | hills |",
        "|---|---|---|---|---|",
    ]
    for name, metadynamics in (("plain", False), ("well-tempered metadynamics", True)):
        rows = [walk(args, seed, metadynamics) for seed in args.seeds]
        crossings = ", ".join(str(r["crossed"]) if r["crossed"] else f">{args.steps}" for r in rows)
        lines.append(
            f"| {name} | {crossings} | {sum(r['crossed'] is not None for r in rows)}/{len(rows)} | "
            + ", ".join(f"{r['smallest']:.2f}" for r in rows)
            + f" | {', '.join(str(r['hills']) for r in rows)} |"
        )
        print(lines[-1], flush=True)
    text = [
        "# Metadynamics against plain MD: a vacancy hop in EMT Al",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_metadynamics.py {' '.join(sys.argv[1:])}`; 107 atoms, "
        f"{args.temperature:g} K, 2 fs, at most {args.steps} steps, crossing below {args.crossed} A (5.73 A at the "
        f"start, 2.86 A after a hop); hills {args.height} eV x {args.width} A every {args.pace} steps, bias factor "
        f"{args.bias_factor:g}; seeds {args.seeds}; {time.perf_counter() - start:.0f} s in all.",
        "",
        *lines,
    ]
    report = "\n".join(text) + "\n"
    print(report)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metadynamics.md").write_text(report)


if __name__ == "__main__":
    main()
