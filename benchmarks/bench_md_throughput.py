"""MD throughput of the built-in committee against a MACE committee and ASE's EMT, side by side.

Velocity-Verlet MD of fcc aluminium (108 and 864 atoms, 600 K, 2 fs), 2 CPU threads, committee of 4,
spread every 10 steps. Prints a markdown table of atom-steps per second.

- ``aiida-mlip``: :class:`aiida_mlip.potentials.CommitteeCalculator` (trained for a few epochs on
  EMT frames so the trajectory is physical), committee mean on every step, spread every 10th.
- ``MACE x4, all members every step``: ``mace.calculators.MACECalculator`` over 4 small MACE models
  (2 interactions, 32x0e, max_ell 2, r_max 5 Angstrom, correlation 3), built from the constructor
  with random weights (no weights downloaded); the committee mean needs all 4 on every step.
- ``MACE x4, member 0 + all every 10``: the cheapest MACE committee scheme, MD driven by one member
  and all 4 evaluated every 10th step, for a like-for-like spread interval.
- ``EMT``: ASE's effective-medium theory (pure Python/numpy).

``OMP_WAIT_POLICY=PASSIVE`` is set (unless given) so that idle OpenMP threads sleep instead of
spinning; on a loaded 2-core machine spinning threads slow every torch model by up to 10x.

Run: ``.venv/bin/python benchmarks/bench_md_throughput.py`` (needs ``pip install mace-torch``, the
``bench`` extra). The machine's load average is printed: other processes slow every column alike.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: fair on a shared machine

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import units  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.md.velocitydistribution import Stationary, thermalize_momenta  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

THREADS = 2
COMMITTEE = 4
SPREAD_EVERY = 10
torch.set_num_threads(THREADS)


def ours():
    from aiida_mlip.potentials.calculator import CommitteeCalculator
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import train_committee
    from tests.potentials.emt_data import md_frames

    frames = Frames.from_atoms(md_frames(600, 24, seed=1) + md_frames(1000, 24, seed=2))
    model = train_committee(frames, {"max_epochs": 6, "committee_size": COMMITTEE}, log=None).model
    return lambda: CommitteeCalculator(model, device="cpu", spread_every=SPREAD_EVERY)


def mace_models():
    from e3nn import o3
    from mace import modules

    models = []
    for seed in range(COMMITTEE):
        torch.manual_seed(seed)
        interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        models.append(
            modules.ScaleShiftMACE(
                r_max=5.0,
                num_bessel=8,
                num_polynomial_cutoff=5,
                max_ell=2,
                interaction_cls=interaction,
                interaction_cls_first=interaction,
                num_interactions=2,
                num_elements=1,
                hidden_irreps=o3.Irreps("32x0e"),
                MLP_irreps=o3.Irreps("16x0e"),
                atomic_energies=np.array([-3.0]),
                avg_num_neighbors=40.0,
                atomic_numbers=[13],
                correlation=3,
                gate=torch.nn.functional.silu,
                atomic_inter_scale=0.05,
                atomic_inter_shift=0.0,
            ).float()
        )
    return models


class MaceInterval(Calculator):
    """MD on MACE member 0; all members (committee) on every ``every``-th call."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, single, committee, every):
        super().__init__()
        self.single, self.committee, self.every, self.calls = single, committee, every, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        calculator = self.committee if self.calls % self.every == 0 else self.single
        self.calls += 1
        calculator.calculate(self.atoms, ["energy", "forces"], system_changes)
        self.results = {key: calculator.results[key] for key in ("energy", "free_energy", "forces")}


def throughput(make_calculator, atoms, min_steps, min_seconds, warmup=3):
    atoms = atoms.copy()
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    Stationary(atoms)
    atoms.calc = make_calculator()
    dynamics = VelocityVerlet(atoms, 2 * units.fs)
    dynamics.run(warmup)
    steps, started = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - started < min_seconds:
        dynamics.run(5)
        steps += 5
        if time.perf_counter() - started > 4 * min_seconds and steps >= 5:
            break
    elapsed = time.perf_counter() - started
    return len(atoms) * steps / elapsed, steps


def main():
    from mace.calculators import MACECalculator

    from tests.potentials.emt_data import aluminium

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    make_ours = ours()
    models = mace_models()
    candidates = {
        f"aiida-mlip committee x{COMMITTEE} (mean every step, spread every {SPREAD_EVERY})": make_ours,
        f"MACE x{COMMITTEE}, all members every step": lambda: MACECalculator(models=models, device="cpu"),
        f"MACE x{COMMITTEE}, member 0 + all every {SPREAD_EVERY}": lambda: MaceInterval(
            MACECalculator(models=models[:1], device="cpu"),
            MACECalculator(models=models, device="cpu"),
            SPREAD_EVERY,
        ),
        "ASE EMT": EMT,
    }
    table = {}
    for repeat in (3, 6):
        atoms = aluminium(repeat)
        for name, make in candidates.items():
            budget = 6.0 if repeat == 3 else 10.0
            rate, steps = throughput(make, atoms, min_steps=20 if "aiida" in name else 5, min_seconds=budget)
            table[(name, len(atoms))] = rate
            print(f"  {len(atoms)} atoms  {name}: {rate:,.0f} atom-steps/s ({steps} steps)", flush=True)
    print()
    print("| calculator | 108 atoms (atom-steps/s) | 864 atoms (atom-steps/s) |")
    print("|---|---:|---:|")
    for name in candidates:
        print(f"| {name} | {table[(name, 108)]:,.0f} | {table[(name, 864)]:,.0f} |")
    first = next(iter(candidates))
    print()
    for name in list(candidates)[1:3]:
        ratios = [table[(first, n)] / table[(name, n)] for n in (108, 864)]
        print(
            f"speed-up of aiida-mlip over '{name}': {ratios[0]:.1f}x (108 atoms), {ratios[1]:.1f}x (864 atoms)"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
