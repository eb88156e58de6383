"""How well a run's own calibration predicts its final committee's errors on frames it never saw.

The demo's settings (EMT aluminium, fast protocol, ``aiida_mlip.demo.DEMO_OVERRIDES``, target force
error 0.1 eV/Angstrom) run through the AiiDA-free loop for each seed. The label pairs of every
calibration and the validation pairs of every committee are captured as the loop computes them, and
the final committee's pairs on the demo's 30 held-out EMT MD frames (``aiida_mlip.demo.held_out_set``).
Each rule refits the latest calibration from the captured pairs and is judged by the fraction of
held-out frames whose calibrated prediction is within a factor 2 of the observed max force error.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py [--seeds 0 1 2 3 4 5 6]

About 3 minutes per seed on one core. Output: a table (rules x seeds) on stdout and in
``benchmarks/results/calibration.md``.
"""

from __future__ import annotations

import argparse
import copy
import math
import warnings
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

import aiida_mlip.learning.calibration as calibration
import aiida_mlip.learning.loop as loop
from aiida_mlip.demo import DEMO_OVERRIDES, held_out_set
from aiida_mlip.learning.calibration import CalibrationPairs, fit_calibration
from aiida_mlip.potentials.calculator import CommitteeCalculator

RESULTS = Path(__file__).parent / "results" / "calibration.md"


def capture(seed: int) -> dict:
    """One loop run: the label pairs of each calibration, each committee's validation pairs, the held-out pairs."""
    captured = {"labels": [], "valid": [], "models": []}
    originals = loop.calibration_pairs, loop.validation_pairs, loop._train

    def labels(calculator, images):
        captured["labels"].append(originals[0](calculator, images))
        return captured["labels"][-1]

    def valid(metrics):
        captured["valid"].append(originals[1](metrics))
        return captured["valid"][-1]

    def train(*args, **kwargs):
        result, metrics = originals[2](*args, **kwargs)
        captured["models"].append(result.model)
        return result, metrics

    overrides = copy.deepcopy(DEMO_OVERRIDES)
    overrides.setdefault("trust", {})["target_force_error"] = 0.1
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    inputs = ActiveLearningWorkChain.get_protocol_inputs("fast", overrides)
    loop.calibration_pairs, loop.validation_pairs, loop._train = labels, valid, train
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
            loop.run_active_learning([atoms], EMT, inputs, seed=seed, log=None)
    finally:
        loop.calibration_pairs, loop.validation_pairs, loop._train = originals
    final = CommitteeCalculator(captured["models"][-1], device="cpu", spread_every=1)
    captured["held"] = originals[0](final, held_out_set())
    return captured


def within_factor_2(pairs: CalibrationPairs, held: CalibrationPairs, bounds) -> float:
    calibration.EXPONENT_BOUNDS = bounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_calibration(pairs)
    predicted = np.array([fit.predict(p, s) for p, s in zip(held.predicted, held.symbols, strict=True)])
    return float(np.mean(np.abs(np.log(held.observed / predicted)) <= math.log(2.0)))


RULES = {
    "every committee's, pooled; exponent <= 1.5 (before)": (lambda L, V, n: L + V[:n], (0.3, 1.5)),
    "the calibrated committee's own; exponent <= 1.5": (lambda L, V, n: L + [V[n - 1]], (0.3, 1.5)),
    "the calibrated committee's own; exponent <= 1 (shipped)": (lambda L, V, n: L + [V[n - 1]], (0.3, 1.0)),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(7)))
    args = parser.parse_args(argv)
    shipped = calibration.EXPONENT_BOUNDS
    rows = {name: [] for name in RULES}
    for seed in args.seeds:
        run = capture(seed)
        n = len(run["labels"])
        for name, (pick, bounds) in RULES.items():
            pairs = CalibrationPairs.concatenate(pick(run["labels"], run["valid"], n))
            rows[name].append(within_factor_2(pairs, run["held"], bounds))
        print(f"seed {seed}: " + ", ".join(f"{rows[name][-1]:.2f}" for name in RULES), flush=True)
    calibration.EXPONENT_BOUNDS = shipped
    lines = [
        "| validation pairs in each fit | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
        "|---|" + "---:|" * len(args.seeds),
    ]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |" for name, values in rows.items()]
    table = "\n".join(lines)
    print(table)
    RESULTS.write_text(
        "# held-out frames within a factor 2 of the run's own latest calibration\n\n"
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py --seeds {' '.join(map(str, args.seeds))}`\n\n"
        + table
        + "\n"
    )


if __name__ == "__main__":
    main()
