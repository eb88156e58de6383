"""Where the frames of an exploration fall against the trust window: what the default window rests on.

A committee trained on 48 EMT frames of 32-atom fcc aluminium at 300 K (the tests' ``al_committee``:
4 members, cutoff 4.5 Angstrom, 50 epochs, about a minute on 2 cores) explores 2 walkers x 400 NVT
steps of 2 fs at rising temperature ramps (300->600, 600->900, 900->1200 K), with the walkers'
break threshold at 1.0 and 2.0 eV/Angstrom. For every checked frame the committee's max force
deviation is recorded; the table gives its percentiles and the fraction of checked frames inside a
few candidate windows ``[lo, hi)`` (eV/Angstrom). A default window should hold a good share of the
frames of a typical pool (the selection takes the window first and tops up from above ``hi``).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_trust_window.py [--work DIR]`` (the
committee is trained once into ``DIR``, default a temporary folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiida_mlip.exploration import ExploreParameters, explore  # noqa: E402
from aiida_mlip.potentials import load_calculator  # noqa: E402
from aiida_mlip.selection.trust import TrustWindow  # noqa: E402
from tests.exploration.al_committee import aluminium, committee_files  # noqa: E402

RAMPS = ([300, 600], [600, 900], [900, 1200])
BREAKS = (1.0, 2.0)
WINDOWS = ((0.05, 0.35), (0.05, 0.5), (0.1, 0.5), (0.1, 1.0))


def deviations(calculator, ramp, break_threshold, seed=1) -> tuple[np.ndarray, list[int]]:
    """Max force deviation (eV/Angstrom) of every checked, finite frame, and checks per walker."""
    parameters = ExploreParameters(
        temperature=ramp,
        steps=400,
        timestep=2.0,
        check_interval=10,
        write_interval=50,
        trust=TrustWindow(),
        break_threshold=break_threshold,
        walkers=2,
        seed=seed,
    )
    result = explore([aluminium()], calculator, parameters, log=None)
    values = np.array([check.max_force_deviation for walker in result.walkers for check in walker.checks])
    return values[np.isfinite(values)], [len(walker.checks) for walker in result.walkers]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for the trained committee")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_trust_window_"))
    calculator = load_calculator(committee_files(work)["model"], device="cpu", spread_every=1)
    header = " | ".join(f"[{lo}, {hi})" for lo, hi in WINDOWS)
    print(f"| T ramp (K) | break (eV/A) | checks per walker | p25 / p50 / p75 (eV/A) | < 0.05 | {header} |")
    print("|---" * (5 + len(WINDOWS)) + "|")
    for ramp in RAMPS:
        for break_threshold in BREAKS:
            values, checks = deviations(calculator, ramp, break_threshold)
            p25, p50, p75 = np.percentile(values, [25, 50, 75])
            shares = " | ".join(f"{np.mean((values >= lo) & (values < hi)):.2f}" for lo, hi in WINDOWS)
            print(
                f"| {ramp[0]}->{ramp[1]} | {break_threshold} | {checks} | {p25:.3f} / {p50:.3f} / {p75:.3f} "
                f"| {np.mean(values < 0.05):.2f} | {shares} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
