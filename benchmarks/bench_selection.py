"""Speed of D-optimal selection: MaxVol, the grade of every candidate, and a greedy batch of 50.

Workload of one row of the table, for ``n`` environments of ``m`` features (one element):

1. MaxVol on a training matrix of ``n x m`` rows (the active set of a large training set);
2. the extrapolation grade of ``n`` candidate environments against it (one product, one max);
3. a greedy D-optimal batch of 50 configurations from those candidates, grouped 32 atoms per frame.

Training rows are standard normal; candidate frames are standard normal times a per-frame scale in
[0.8, 1.6], so some of them extrapolate, as an MD pool past the training temperature does.

Run::

    .venv/bin/python benchmarks/bench_selection.py            # the scaling table
    .venv/bin/python benchmarks/bench_selection.py --quick    # only n = 100,000, m = 128
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from aiida_mlip.selection.greedy_batch import greedy_batch
from aiida_mlip.selection.maxvol import ActiveSet, ElementActiveSet, maxvol

ATOMS_PER_FRAME = 32
BATCH = 50


def workload(n: int, m: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    training = rng.normal(size=(n, m))
    n_frames = n // ATOMS_PER_FRAME
    scale = np.repeat(rng.uniform(0.8, 1.6, size=n_frames), ATOMS_PER_FRAME)
    candidates = rng.normal(size=(n_frames * ATOMS_PER_FRAME, m)) * scale[:, None]
    numbers = np.full(len(candidates), 13)
    row_frame = np.repeat(np.arange(n_frames), ATOMS_PER_FRAME)

    start = time.perf_counter()
    result = maxvol(training)
    t_maxvol = time.perf_counter() - start

    active = ActiveSet(
        elements={
            13: ElementActiveSet(rows=training[result.indices], source=np.stack([result.indices] * 2, 1))
        },
        n_features=m,
    )
    start = time.perf_counter()
    grades = active.grade(candidates, numbers)
    t_gamma = time.perf_counter() - start

    start = time.perf_counter()
    batch = greedy_batch(active, candidates, numbers, row_frame, BATCH)
    t_batch = time.perf_counter() - start
    return {
        "n": n,
        "m": m,
        "maxvol": t_maxvol,
        "swaps": result.n_swaps,
        "gamma": t_gamma,
        "extrapolating": float((grades > 1).mean()),
        "batch": t_batch,
        "picked": len(batch.frames),
        "total": t_maxvol + t_gamma + t_batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only n = 100,000, m = 128")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the fastest is shown")
    args = parser.parse_args()
    sizes = [(100_000, 128)]
    if not args.quick:
        sizes = [(n, 128) for n in (12_500, 25_000, 50_000, 100_000, 200_000)] + [
            (100_000, m) for m in (32, 64, 256)
        ]
    try:
        import threadpoolctl

        threads = threadpoolctl.threadpool_info()[0].get("num_threads")
    except (ImportError, IndexError):
        threads = "?"
    print(f"cores available: {os.cpu_count()}, BLAS threads: {threads}, numpy {np.__version__}")
    print(
        f"{'n':>8} {'m':>4} {'MaxVol s':>9} {'swaps':>6} {'gamma s':>8} {'batch50 s':>10} {'picked':>6} {'total s':>8}"
    )
    for n, m in sizes:
        runs = [workload(n, m, seed=seed) for seed in range(args.repeat)]
        best = min(runs, key=lambda run: run["total"])
        print(
            f"{best['n']:>8} {best['m']:>4} {best['maxvol']:>9.3f} {best['swaps']:>6} {best['gamma']:>8.3f} "
            f"{best['batch']:>10.3f} {best['picked']:>6} {best['total']:>8.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
