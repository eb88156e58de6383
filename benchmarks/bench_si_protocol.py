"""Does the ``fast`` protocol converge on the README's 8-atom silicon cell? A cheap stand-in for pw.x.

A real pw.x run of ``aiida-mlip launch examples/structures/Si8.cif --labeller pw ... --protocol fast``
costs about 2.7 CPU-minutes per label (36 k-points at 44/175 Ry), two hours or more for a run. This
benchmark runs the same loop (:func:`aiida_mlip.learning.loop.run_active_learning` with the
``fast`` protocol's inputs, the same start cell) with a Tersoff potential for silicon as the
labeller (parameters Si(C) of J. Tersoff, Phys. Rev. B 38, 9902 (1988), in the form of ASE's
:class:`~ase.calculators.tersoff.Tersoff`), a few minutes per run, so the protocol's settings can
be compared over seeds. On the first two iterations the stand-in and pw.x gave the same accurate
fractions (0.073 and 0.138-0.20 against pw.x's 0.073 and 0.195).

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_si_protocol.py [--variants shipped rattle005] [--seeds 0 1 2 3]

Output: per variant and seed, the accurate fraction and labels of each iteration and how the run
ended; a summary table (runs converged, mean iterations, labels) in
``benchmarks/results/si_protocol.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from ase.build import bulk
from ase.calculators.tersoff import Tersoff, TersoffParameters

#: Tersoff (1988) Si(C), in LAMMPS order: m, gamma, lambda3, c, d, h (cos theta0), n, beta,
#: lambda2 (1/A), B (eV), R (A), D (A), lambda1 (1/A), A (eV).
SI_C = TersoffParameters(
    m=3.0,
    gamma=1.0,
    lambda3=0.0,
    c=100390.0,
    d=16.217,
    h=-0.59825,
    n=0.78734,
    beta=1.1e-6,
    lambda2=1.7322,
    B=471.18,
    R=2.85,
    D=0.15,
    lambda1=2.4799,
    A=1830.8,
)


class SiliconTersoff(Tersoff):
    """Tersoff Si(C) silicon, constructible without arguments (the loop's labeller form)."""

    def __init__(self, **kwargs):
        super().__init__({("Si", "Si", "Si"): SI_C}, **kwargs)


#: The initial set of the ``fast`` protocol before 2026-11-30 (and still of the others).
BEFORE = {"initial": {"rattle": 0.05, "strain": 0.03}}

#: Overrides of the ``fast`` protocol compared here (``shipped``: none).
VARIANTS = {
    "shipped": {},
    "rattle005": BEFORE,
    "rattle005_valid0": {**BEFORE, "training": {"valid_fraction": 0.0}},
    "rattle005_lmax2": {**BEFORE, "training": {"l_max": 2}},
    "pw_science_test": {  # the overrides of tests/workflows/test_pw_active_learning.py's science run
        "initial": {"rattle": 0.1, "strain": 0.02},
        "training": {"valid_fraction": 0.0, "l_max": 2, "max_epochs": 100, "patience": 30},
        "warm_start_parameters": {"lr": 0.002},
    },
}


def run(variant: str, seed: int) -> dict:
    from aiida_mlip.learning.loop import run_active_learning
    from aiida_mlip.selection.maxvol import RankDeficientWarning
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    inputs = ActiveLearningWorkChain.get_protocol_inputs("fast", VARIANTS[variant])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)  # the first iterations' small active sets
        records = run_active_learning(
            [bulk("Si", "diamond", a=5.43, cubic=True)], SiliconTersoff, inputs, seed=seed, log=None
        )
    iterations = [
        {"accurate": round(r["accurate_fraction"], 3), "labelled": r["n_labelled"], "failed": r["n_failed"]}
        for r in records[1:]
    ]
    return {
        "variant": variant,
        "seed": seed,
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "iterations": iterations,
        "ended": records[-1]["convergence"]["criterion"],
        "labels": sum(r["n_labelled"] for r in records),
    }


def summary(rows: list[dict]) -> str:
    lines = [
        "| variant | runs converged | iterations (each seed) | labels (each seed) | accurate fraction per iteration (seed 0) |",
        "|---|---:|---|---|---|",
    ]
    for variant in dict.fromkeys(row["variant"] for row in rows):
        mine = sorted((row for row in rows if row["variant"] == variant), key=lambda row: row["seed"])
        converged = sum(row["ended"] == "converged" for row in mine)
        first = mine[0]["iterations"]
        lines.append(
            f"| {variant} | {converged} of {len(mine)} | "
            + ", ".join(
                f"{len(row['iterations'])}{'' if row['ended'] == 'converged' else ' (410)'}" for row in mine
            )
            + " | "
            + ", ".join(str(row["labels"]) for row in mine)
            + " | "
            + ", ".join(f"{record['accurate']:.2f}" for record in first)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["shipped", "rattle005"], choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args()
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            rows.append(run(variant, seed))
            print(json.dumps(rows[-1]), flush=True)
    table = summary(rows)
    print(table)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "si_protocol.md").write_text(
        "# fast protocol on Si8 with a Tersoff stand-in for pw.x\n\n"
        f"Command: `python benchmarks/bench_si_protocol.py --variants {' '.join(args.variants)} "
        f"--seeds {' '.join(map(str, args.seeds))}`\n\n" + table
    )
    (output / "si_protocol.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
