"""What random structure search shows a committee trained on bulk MD only: deviations at its minima.

The committee of the exploration tests (``tests/exploration/al_committee.py``: 4 members, cutoff
4.5 Angstrom, 48 EMT frames of 32-atom fcc aluminium from 300 K MD, about a minute on 2 cores)
relaxes (FIRE, positions only, ``--steps`` steps at most, fmax 0.05 eV/Angstrom) two sets of
8-atom aluminium cells of the same volume per atom (16.6 Angstrom^3):

- ``random``: ``--n`` random packings (also evaluated unrelaxed, ``steps: 0``) (``exploration.generate.random`` defaults: random cell, atoms
  at least 0.9 x the summed covalent radii apart, or ``--min-distance``), the work chain's ``random`` kind, relaxed once per
  ``--repulsion`` stiffness (eV/Angstrom^2, 0: no minimum-separation repulsion);
- ``rattled bulk``: ``--n`` copies of the fcc cell (2 x 1 x 1 conventional) with every atom
  displaced by a Gaussian of 0.1 Angstrom per component.

At each relaxed structure it reads the committee's max force deviation and counts those inside the
default trust window (``lo`` 0.15 < deviation <= ``hi`` 1.0 eV/Angstrom) and above ``hi``, the
shortest pair over the packings' ``min_distance`` (smallest of the set) and the largest EMT force
there (the reference's verdict on the committee's minimum, eV/Angstrom).

Run: ``OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/bench_random_search.py [--n 20]
[--repulsion 0 200 1000] [--min-distance D] [--work DIR]`` (the committee is trained once into ``DIR``, default a temporary folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiida_mlip.exploration.generator_settings import GenerateSettings  # noqa: E402
from aiida_mlip.exploration.random_search import random_structures, relax  # noqa: E402
from aiida_mlip.potentials import load_calculator  # noqa: E402
from aiida_mlip.selection.trust import DEFAULT_HI, DEFAULT_LO  # noqa: E402
from tests.exploration.al_committee import committee_files  # noqa: E402


def emt_max_force(atoms) -> float:
    """Largest EMT atomic force of ``atoms``, eV/Angstrom."""
    check = atoms.copy()
    check.calc = EMT()
    return float(np.linalg.norm(check.get_forces(), axis=1).max())


def shortest_pair(atoms, least: float) -> float:
    """The shortest pair distance of ``atoms`` (periodic) over ``least``."""
    distances = atoms.get_all_distances(mic=True)[~np.eye(len(atoms), dtype=bool)]
    return float(distances.min()) / least


def row(name: str, records: list[dict], structures: list, least: float) -> str:
    deviations = np.array([r["max_force_deviation"] for r in records])
    reference = np.array([emt_max_force(atoms) for atoms in structures])
    converged = sum(r["converged"] for r in records)
    exploded = sum(r["exploded"] for r in records)
    inside = ((deviations > DEFAULT_LO) & (deviations <= DEFAULT_HI)).sum()
    shortest = min(shortest_pair(atoms, least) for atoms in structures)
    return (
        f"| {name} | {len(records)} | {converged} | {exploded} | {shortest:.2f} | {np.median(deviations):.3f} | "
        f"{deviations.max():.3f} | {inside} | {(deviations > DEFAULT_HI).sum()} | "
        f"{np.median(reference):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="structures of each set")
    parser.add_argument("--steps", type=int, default=200, help="FIRE steps at most")
    parser.add_argument(
        "--repulsion",
        type=float,
        nargs="+",
        default=[0.0, 200.0, 1000.0],
        help="stiffnesses k, eV/Angstrom^2",
    )
    parser.add_argument("--min-distance", type=float, default=None, help="of the packings, Angstrom")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_random_search_"))
    began = time.perf_counter()
    calculator = load_calculator(committee_files(work)["model"], device="cpu", spread_every=1)
    print(f"committee ready in {time.perf_counter() - began:.0f} s")
    parent = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))  # 8 atoms, 16.6 A^3/atom

    block = GenerateSettings.from_mapping(
        {
            "random": {
                "structures": args.n,
                "steps": args.steps,
                "fmax": 0.05,
                "min_distance": args.min_distance,
            }
        }
    ).random
    by_stiffness = {}
    for k in args.repulsion:
        began = time.perf_counter()
        packings = random_structures(
            parent, block.model_copy(update={"repulsion": k}), np.random.default_rng(0), calculator
        )
        by_stiffness[k] = (packings, [atoms.info["relaxation"] for atoms in packings])
        print(f"random packings relaxed with repulsion {k} eV/A^2 in {time.perf_counter() - began:.0f} s")
    least = packings[0].info["min_distance"]

    unrelaxed_block = block.model_copy(update={"steps": 0})  # the same packings, only evaluated
    unrelaxed = random_structures(parent, unrelaxed_block, np.random.default_rng(0), calculator)
    unrelaxed_records = [atoms.info["relaxation"] for atoms in unrelaxed]

    rng = np.random.default_rng(1)
    rattled, rattled_records = [], []
    for _ in range(args.n):
        start = parent.copy()
        start.positions += rng.normal(0.0, 0.1, start.positions.shape)
        relaxed, record = relax(start, calculator, args.steps, 0.05, least=1.0)
        rattled.append(relaxed)
        rattled_records.append(record)

    print(
        f"\n8-atom Al, min_distance {least} A, committee trained on 300 K bulk MD; trust window lo {DEFAULT_LO}, hi {DEFAULT_HI} eV/A\n"
    )
    print(
        "| start | n | converged | exploded | shortest pair / min_distance | median max dev (eV/A) | largest (eV/A) "
        "| in [lo, hi] | above hi | median EMT max force at the minimum (eV/A) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(row("random packings, unrelaxed", unrelaxed_records, unrelaxed, least))
    for k, (packings, records) in by_stiffness.items():
        print(row(f"random packings, relaxed, repulsion {k:g} eV/A^2", records, packings, least))
    print(row("rattled bulk (0.1 A)", rattled_records, rattled, least))


if __name__ == "__main__":
    main()
