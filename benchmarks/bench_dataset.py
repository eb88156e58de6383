"""Dataset storage benchmark: store and load a 10,000-frame, 64-atom DatasetData.

Prints a table with the time to build, store and load the dataset, and whether the round trip is
bit-exact for positions, forces and energies. Target (issue #2): load < 2 s on a 2-core machine.

Run: ``python benchmarks/bench_dataset.py [--frames 10000] [--atoms 64]``. It uses a throw-away
SQLite profile in a temporary folder, so it touches no existing AiiDA profile.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def temporary_profile(folder: str):
    """Create and load a throw-away SQLite profile under ``folder``."""
    os.environ["AIIDA_PATH"] = folder
    from aiida import load_profile
    from aiida.manage.configuration import create_profile, get_config

    config = get_config(create=True)
    profile = create_profile(
        config,
        storage_backend="core.sqlite_dos",
        storage_config={"filepath": os.path.join(folder, "storage")},
        name="bench",
        email="bench@localhost",
    )
    config.set_default_profile(profile.name, overwrite=True)
    config.store()
    return load_profile(profile.name, allow_switch=True)


def random_frames(n_frames: int, n_atoms: int, seed: int = 0):
    """Frames with random full-precision float64 values (harder to round-trip than physical data)."""
    from aiida_mlip.potentials.frames import Frames

    rng = np.random.default_rng(seed)
    total = n_frames * n_atoms
    return Frames(
        numbers=rng.choice([13, 29, 8], size=total),
        positions=rng.random((total, 3)) * 12.0,
        offsets=np.arange(n_frames + 1) * n_atoms,
        cells=np.tile(np.eye(3) * 12.0, (n_frames, 1, 1)) + rng.normal(0, 0.01, (n_frames, 3, 3)),
        pbc=np.ones((n_frames, 3), bool),
        energy=rng.normal(-3.5 * n_atoms, 1.0, n_frames),
        forces=rng.normal(0.0, 1.0, (total, 3)),
        stress=rng.normal(0.0, 0.01, (n_frames, 6)),
        config_type=np.full(n_frames, "md_600K", dtype=object),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--atoms", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="loads to time; the best is reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        temporary_profile(folder)
        from aiida.orm import load_node

        from aiida_mlip.data.dataset import DatasetData

        start = time.perf_counter()
        frames = random_frames(args.frames, args.atoms)
        t_build = time.perf_counter() - start

        start = time.perf_counter()
        node = DatasetData(frames).store()
        t_store = time.perf_counter() - start

        loads = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            loaded = load_node(node.pk).get_frames()
            loads.append(time.perf_counter() - start)
        t_load = min(loads)

        start = time.perf_counter()
        atoms = loaded.to_atoms()
        t_atoms = time.perf_counter() - start

        exact = {
            name: bool(np.array_equal(getattr(loaded, name), getattr(frames, name)))
            for name in ("positions", "forces", "energy", "stress", "cells", "numbers")
        }
        size_mb = sum(f.stat().st_size for f in _files(folder)) / 1e6

    print(f"\nDatasetData: {args.frames} frames x {args.atoms} atoms ({args.frames * args.atoms} atoms)\n")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| build Frames | {t_build:.3f} |")
    print(f"| store node (HDF5 into repository) | {t_store:.3f} |")
    print(f"| load node -> Frames (best of {args.repeat}) | {t_load:.3f} |")
    print(f"| Frames -> {len(atoms)} ASE Atoms | {t_atoms:.3f} |")
    print(f"\nrepository size: {size_mb:.1f} MB")
    print("bit-exact round trip: " + ", ".join(f"{k}={v}" for k, v in exact.items()))
    target = "PASS" if t_load < 2.0 and all(exact.values()) else "FAIL"
    print(f"target (load < 2 s, bit-exact): {target}")


def _files(folder):
    import pathlib

    return [path for path in pathlib.Path(folder).rglob("*") if path.is_file()]


if __name__ == "__main__":
    main()
