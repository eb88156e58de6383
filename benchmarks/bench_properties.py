"""Time of each property kernel with the built-in committee, for a 32-atom and a 256-atom aluminium cell.

The committee (4 members, default architecture, cutoff 5 Angstrom) is trained for a few epochs on
EMT frames of 32-atom Al, enough for a physical potential energy surface; the times do not depend
on its accuracy beyond the number of relaxation steps. Every kernel runs with the committee mean
calculator (float32, CPU, one torch thread), except the last row: the equation of state once per
member, the cost of an error bar. Kernel settings are kept small (they are in the table) so the
whole benchmark takes a few minutes on one core.

The cells: fcc Al, 2x2x2 (32 atoms) and 4x4x4 (256 atoms) conventional cubic cells. Phonons use a
supercell at least twice the cutoff wide: 2x2x2 of the 32-atom cell (256 atoms), the 256-atom cell
itself. NEB: a vacancy hop in the cell (3 images, end points relaxed).

Run: ``.venv/bin/python benchmarks/bench_properties.py`` (prints a markdown table).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def committee():
    from aiida_mlip.potentials.calculator import CommitteeCalculator
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import train_committee
    from tests.potentials.emt_data import md_frames

    frames = Frames.from_atoms(md_frames(300, 24, seed=1) + md_frames(900, 24, seed=2))
    model = train_committee(frames, {"max_epochs": 6, "committee_size": 4}, device="cpu", log=None).model
    return CommitteeCalculator(model, device="cpu")


def vacancy_pair(atoms):
    perfect = atoms.copy()
    neighbour = int(np.argsort(perfect.get_distances(0, range(len(perfect)), mic=True))[1])
    initial = perfect[1:]
    final = initial.copy()
    final.positions[neighbour - 1] = perfect.positions[0]
    return initial, final


def main() -> None:
    from aiida_mlip.properties.committee import committee_property
    from aiida_mlip.properties.drift import energy_drift
    from aiida_mlip.properties.elastic import elastic_constants
    from aiida_mlip.properties.eos import equation_of_state
    from aiida_mlip.properties.neb import nudged_elastic_band
    from aiida_mlip.properties.phonons import phonons
    from aiida_mlip.properties.pressure import nvt_pressure

    start = time.perf_counter()
    calculator = committee()
    print(f"committee trained in {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.1f}")
    rows = [
        (
            "EOS",
            "7 volumes, +-6%, relax cell",
            lambda a, n: equation_of_state(a, calculator, {"points": 7}),
            "B0",
        ),
        (
            "elastic",
            "+-1% strain, relaxed ions",
            lambda a, n: elastic_constants(a, calculator, {"strains": [0.01]}),
            "C44",
        ),
        (
            "phonons",
            "supercell >= 2 cutoff, mesh 8^3",
            lambda a, n: phonons(
                a, calculator, {"supercell": [4 // n] * 3, "mesh": [8, 8, 8], "band_points": 21}
            ),
            "X_3",
        ),
        (
            "NVE drift",
            "dt 1, 2, 4 fs x 50 fs",
            lambda a, n: energy_drift(a, calculator, {"time_steps": [1, 2, 4], "duration": 50}),
            "drift_4fs",
        ),
        (
            "NVT pressure",
            "100 steps of 2 fs, 5 frames",
            lambda a, n: nvt_pressure(a, calculator, {"steps": 100, "equilibration": 0, "interval": 20}),
            "P_virial",
        ),
        (
            "NEB",
            "vacancy hop, 3 images",
            lambda a, n: nudged_elastic_band(*vacancy_pair(a), calculator, {"images": 3, "fmax": 0.05}),
            "barrier",
        ),
        (
            "EOS x 4 members",
            "error bar of B0",
            lambda a, n: committee_property(equation_of_state, a, calculator, settings={"points": 7}),
            "B0",
        ),
    ]
    table = [
        "| property | settings | 32 atoms (s) | 256 atoms (s) | value, 32 atoms |",
        "|---|---|---|---|---|",
    ]
    for name, settings, run, key in rows:
        times, value = [], None
        for repeat in (2, 4):
            atoms = bulk("Al", "fcc", a=4.04, cubic=True).repeat(repeat)
            tick = time.perf_counter()
            result = run(atoms, repeat)
            times.append(time.perf_counter() - tick)
            if value is None:
                value = result[key] if hasattr(result, "estimates") else result.scalars()[key]
        shown = str(value) if not isinstance(value, float) else f"{value:.4g}"
        table.append(f"| {name} | {settings} | {times[0]:.1f} | {times[1]:.1f} | {key} = {shown} |")
        print(table[-1], flush=True)
    print()
    print("\n".join(table))


if __name__ == "__main__":
    main()
