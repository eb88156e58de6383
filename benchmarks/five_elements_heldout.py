"""Held-out force errors per element of a five-element alloy potential (Cu, Ni, Pd, Ag, Au).

The reference is ASE's EMT. The held-out frames are EMT Langevin MD frames (600 and 1000 K, 2 fs) of
32-atom random fcc cells of the alloy (equal fractions, Vegard lattice constant) made from seeds
that neither ``bench_many_elements.py`` nor ``examples/structures/five_elements.extxyz`` (seeds 1
and 2) starts from, so a run on that file never saw them. Printed per element: the atoms counted,
the force RMSE of the committee mean, the RMS of the reference force components for scale (both
eV/Angstrom), their ratio, and the mean committee force deviation (eV/Angstrom).

Run: ``OMP_NUM_THREADS=1 python benchmarks/five_elements_heldout.py five.safetensors`` (a model file,
e.g. from ``aiida-mlip potential export <pk> five.safetensors``), or with a ``PotentialData`` pk of
the current AiiDA profile.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_many_elements import FIVE, held_out  # noqa: E402  (also sets one torch thread)

from aiida_mlip.potentials.calculator import load_calculator  # noqa: E402


def model_file(potential: str, folder: str) -> str:
    """The model file of ``potential``: a path as given, or a ``PotentialData`` pk exported to ``folder``."""
    if not potential.isdigit():
        return potential
    from aiida import load_profile, orm

    load_profile()
    path = Path(folder) / "potential.safetensors"
    orm.load_node(int(potential)).export(path)
    return str(path)


def per_element(calculator, frames) -> dict[str, dict[str, float]]:
    """Force RMSE of the committee mean, reference force RMS and mean deviation per element (eV/Angstrom)."""
    errors, references, deviations = {}, {}, {}
    for frame in frames:
        reference = frame.get_forces()
        atoms = frame.copy()
        atoms.calc = calculator
        predicted = atoms.get_forces()
        deviation = calculator.results["force_deviation"]
        for index, symbol in enumerate(frame.get_chemical_symbols()):
            errors.setdefault(symbol, []).append(predicted[index] - reference[index])
            references.setdefault(symbol, []).append(reference[index])
            deviations.setdefault(symbol, []).append(deviation[index])
    table = {}
    for symbol in [*FIVE, "all"]:
        pick = FIVE if symbol == "all" else (symbol,)
        error = np.concatenate([errors[s] for s in pick])
        reference = np.concatenate([references[s] for s in pick])
        table[symbol] = {
            "atoms": len(error),
            "rmse": float(np.sqrt(np.mean(np.square(error)))),
            "reference_rms": float(np.sqrt(np.mean(np.square(reference)))),
            "deviation": float(np.mean(np.concatenate([deviations[s] for s in pick]))),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("potential", help="model file (.safetensors) or PotentialData pk")
    parser.add_argument("--frames", type=int, default=24, help="held-out frames (a multiple of 4)")
    args = parser.parse_args()
    began = time.perf_counter()
    frames = held_out(args.frames)
    with tempfile.TemporaryDirectory() as folder:
        calculator = load_calculator(model_file(args.potential, folder), device="cpu")
    table = per_element(calculator, frames)
    print(
        f"{len(frames)} held-out EMT frames of 32 atoms (600 and 1000 K, four random cells), eV/Angstrom:\n"
    )
    print("| element | atoms | force RMSE, committee mean | reference force RMS | ratio | mean deviation |")
    print("|---|---|---|---|---|---|")
    for symbol, row in table.items():
        print(
            f"| {symbol} | {row['atoms']} | {row['rmse']:.3f} | {row['reference_rms']:.3f} | "
            f"{row['rmse'] / row['reference_rms']:.2f} | {row['deviation']:.3f} |"
        )
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
