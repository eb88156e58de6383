"""Uncertainty-biased MD against plain MD: MD steps until the first frame above the trust threshold.

A committee is trained on EMT aluminium at 300 K only (32-atom cells, 40 frames). Walkers then run
NVT (Langevin, 2 fs) at the same temperature from the same cell with the same seeds, plain and with
the uncertainty bias of :mod:`aiida_mlip.exploration.bias` (``exploration.md.bias``: strength,
cap), and each stops at the first checked frame (every ``--check`` steps) whose max force deviation
reaches the threshold (``break_threshold``). The table gives the steps each seed took (``>N``: not
reached in ``--steps``), their mean (unreached counted as ``--steps``, a lower bound) and the EMT
force error of the committee on the stopping frame, to show it is a frame worth labelling.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_biased_md.py            # the README table
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from bench_data_efficiency import _md_frames  # EMT-labelled Langevin snapshots

from aiida_mlip.exploration.md import run_walker
from aiida_mlip.exploration.parameters import ExploreParameters
from aiida_mlip.potentials.calculator import CommitteeCalculator
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.train import train_committee

TRAINING = {
    "committee_size": 4,
    "cutoff": 4.5,
    "n_radial": 5,
    "l_max": 2,
    "hidden": 24,
    "max_epochs": 60,
    "patience": 20,
    "batch_size": 4,
    "lr": 0.01,
    "seed": 0,
}


def aluminium():
    return bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)


def training_frames(temperature: float = 300.0, walkers: int = 4, per_walker: int = 10) -> Frames:
    """EMT-labelled snapshots of Langevin MD at ``temperature`` (K) from the 32-atom cell."""
    images = []
    for walker in range(walkers):
        images += _md_frames(aluminium(), temperature, per_walker, seed=100 + walker, interval=20)
    return Frames.from_atoms(images)


def emt_force_error(atoms) -> float:
    """Largest per-atom force error of the committee mean against EMT on a frame, eV/Angstrom."""
    model = np.array(atoms.info["committee_forces"])
    reference = atoms.copy()
    reference.calc = EMT()
    return float(np.linalg.norm(model - reference.get_forces(), axis=1).max())


def walk(calculator, args, seed: int, bias: dict | None) -> dict:
    values = {
        "ensemble": "nvt",
        "temperature": args.temperature,
        "steps": args.steps,
        "timestep": 2.0,
        "check_interval": args.check,
        "trust": {"lo": args.threshold / 4, "hi": args.threshold},
        "break_threshold": args.threshold,
        "seed": seed,
    }
    if bias is not None:
        values["bias"] = bias
    result = run_walker(aluminium(), calculator, ExploreParameters.from_mapping(values))
    reached = result.stop_reason == "break_threshold"
    row = {"steps": result.steps_done, "reached": reached, "stop": result.stop_reason}
    if reached:
        last = result.trajectory[-1]
        last.info["committee_forces"] = calculator.get_forces(last)
        row["emt_error"] = emt_force_error(last)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=300.0, help="K, plain and biased alike")
    parser.add_argument("--threshold", type=float, default=0.3, help="max force deviation, eV/Angstrom")
    parser.add_argument("--steps", type=int, default=3000, help="most MD steps per walker")
    parser.add_argument("--check", type=int, default=5, help="steps between uncertainty checks")
    parser.add_argument("--strengths", nargs="+", type=float, default=[10.0, 30.0])
    parser.add_argument("--cap", type=float, default=1.0, help="eV")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args()
    start = time.perf_counter()
    trained = train_committee(training_frames(), TRAINING, device="cpu", log=None)
    calculator = CommitteeCalculator(trained.model, device="cpu", spread_every=1)
    training_seconds = time.perf_counter() - start

    variants = [("plain", None)] + [
        (f"biased, strength {strength:g}", {"strength": strength, "cap": args.cap})
        for strength in args.strengths
    ]
    lines = [
        "| MD | steps to the first frame above the threshold, per seed | mean steps | reached | "
        "EMT max force error on that frame (eV/A) |",
        "|---|---|---|---|---|",
    ]
    for name, bias in variants:
        rows = [walk(calculator, args, seed, bias) for seed in args.seeds]
        steps = [row["steps"] if row["reached"] else args.steps for row in rows]
        cells = ", ".join(str(row["steps"]) if row["reached"] else f">{args.steps}" for row in rows)
        errors = [row["emt_error"] for row in rows if row["reached"]]
        unreached = any(not row["reached"] for row in rows)
        lines.append(
            f"| {name} | {cells} | {'>=' if unreached else ''}{np.mean(steps):.0f} | "
            f"{sum(row['reached'] for row in rows)}/{len(rows)} | "
            + (f"{np.mean(errors):.2f}" if errors else "-")
            + " |"
        )
        print(lines[-1], flush=True)
    elapsed = time.perf_counter() - start
    text = [
        "# Uncertainty-biased MD against plain MD (EMT Al)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_biased_md.py {' '.join(sys.argv[1:])}`; committee of "
        f"{TRAINING['committee_size']} trained on 40 EMT frames of 32-atom Al at 300 K ({training_seconds:.0f} s); "
        f"NVT at {args.temperature:g} K, 2 fs, check every {args.check} steps, threshold {args.threshold} eV/A on the "
        f"max force deviation, cap {args.cap} eV, seeds {args.seeds}; {elapsed:.0f} s in all.",
        "",
        *lines,
    ]
    report = "\n".join(text) + "\n"
    print(report)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "biased_md.md").write_text(report)


if __name__ == "__main__":
    main()
