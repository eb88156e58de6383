"""MD throughput: the built-in committee against a MACE committee, by system size and by walker count.

Three tables of atom-steps per second, fcc aluminium, ``THREADS`` CPU threads (1 by default; the
``--threads`` option), committee of 4:

1. **Reference** (108 and 864 atoms, velocity Verlet, 600 K, 2 fs, spread every 10 steps): the
   built-in :class:`aiida_mlip.potentials.CommitteeCalculator` (trained for a few epochs on EMT
   frames so the trajectory is physical) against mace-torch's own ``MACECalculator`` over 4 small
   MACE models (2 interactions, 32x0e, max_ell 2, r_max 5 Angstrom, correlation 3, random weights:
   nothing is downloaded) with all members on every step, the cheapest MACE committee scheme
   (member 0 drives, all 4 every 10th step) and ASE's EMT.
2. **System size** (32, 256, 864, 4000 atoms; fewer steps for the big ones): both backends of this
   package through the same ``CommitteeCalculator`` with the committee spread on every step, as
   the exploration runs them. ``builtin``: the committee of table 1; ``mace``: a
   :class:`~aiida_mlip.potentials.backends.mace_model.MaceCommittee` of the default ``training.mace``
   block (16 channels, max_L 0, correlation 2, 2 interactions), built on the same frames, untrained
   (the cost does not depend on the weights); alternating, best of two runs each. Prints the break-even size of the two backends, the
   size where their throughputs cross (log-log interpolation), or that they do not cross here.
3. **Walkers** (W = 1, 8, 32 walkers of 32 atoms, NVT 600 K, checks every 10 steps; 40 steps per
   walker for the built-in committee, 10 for MACE): the exploration itself
   (:func:`aiida_mlip.exploration.explore`) with ``batched: false`` (one walker after the other) and
   ``batched: true`` (lockstep, one batched committee pass per MD step), alternating, best of two
   runs each; the throughput counts every walker's steps.

``OMP_WAIT_POLICY=PASSIVE`` is set (unless given) so that idle OpenMP threads sleep instead of
spinning; on a loaded 2-core machine spinning threads slow every torch model by up to 10x.

Run: ``nice -n 19 .venv/bin/python benchmarks/bench_md_throughput.py`` (needs ``pip install
mace-torch``, the ``bench`` extra; about 10 minutes on a loaded 2-core machine). The machine's load
average is printed at the start and the end: other processes slow every column alike.
"""

from __future__ import annotations

import argparse
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

COMMITTEE = 4
SPREAD_EVERY = 10
SIZES = {32: 2, 256: 4, 864: 6, 4000: 10}  # atoms: cubic repeats of the 4-atom fcc cell
WALKERS = (1, 8, 32)


def emt_frames():
    from aiida_mlip.potentials.frames import Frames
    from tests.potentials.emt_data import md_frames

    return Frames.from_atoms(md_frames(600, 24, seed=1) + md_frames(1000, 24, seed=2))


def builtin_committee(frames):
    from aiida_mlip.potentials.train import train_committee

    return train_committee(frames, {"max_epochs": 6, "committee_size": COMMITTEE}, log=None).model


def mace_committee(frames):
    """A MACE committee of the default ``training.mace`` block, normalised on ``frames``, untrained."""
    from aiida_mlip.potentials.backends.mace_model import build_committee
    from aiida_mlip.potentials.train import TrainConfig

    config = TrainConfig.from_mapping({"backend": "mace", "committee_size": COMMITTEE})
    return build_committee(frames, ["Al"], config)


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
    """Atom-steps per second of velocity-Verlet MD: at least ``min_steps`` and ``min_seconds`` (s)."""
    atoms = atoms.copy()
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    Stationary(atoms)
    atoms.calc = make_calculator()
    dynamics = VelocityVerlet(atoms, 2 * units.fs)
    dynamics.run(warmup)
    chunk = max(1, min(5, min_steps))
    steps, started = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - started < min_seconds:
        dynamics.run(chunk)
        steps += chunk
        if time.perf_counter() - started > 4 * min_seconds and steps >= chunk:
            break
    elapsed = time.perf_counter() - started
    return len(atoms) * steps / elapsed, steps


def reference_table(model):
    """Table 1: the built-in committee against mace-torch's calculator and EMT, 108 and 864 atoms."""
    from mace.calculators import MACECalculator

    from aiida_mlip.potentials.calculator import CommitteeCalculator
    from tests.potentials.emt_data import aluminium

    models = mace_models()
    candidates = {
        f"aiida-mlip committee x{COMMITTEE} (mean every step, spread every {SPREAD_EVERY})": lambda: (
            CommitteeCalculator(model, device="cpu", spread_every=SPREAD_EVERY)
        ),
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
            budget = 3.0 if repeat == 3 else 4.0
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


def break_even(sizes, first, second):
    """Size (atoms) where two throughput curves cross, by log-log interpolation; None if they do not."""
    ratios = [np.log(a / b) for a, b in zip(first, second, strict=True)]
    for i in range(len(sizes) - 1):
        (n0, r0), (n1, r1) = (sizes[i], ratios[i]), (sizes[i + 1], ratios[i + 1])
        if r0 == 0:
            return float(n0)
        if r0 * r1 < 0:
            return float(np.exp(np.log(n0) + (np.log(n1) - np.log(n0)) * r0 / (r0 - r1)))
    return None


def size_table(models, repeats=2):
    """Table 2: both backends, committee spread on every step, by system size.

    The backends alternate, ``repeats`` times each; the best throughput of each is kept.
    """
    from aiida_mlip.potentials.calculator import CommitteeCalculator
    from tests.potentials.emt_data import aluminium

    table = {}
    for size, repeat in SIZES.items():
        atoms = aluminium(repeat)
        assert len(atoms) == size
        for run in range(repeats):
            for name, model in models.items():
                min_steps = {32: 40, 256: 10, 864: 4, 4000: 2}[size]
                if name == "mace":
                    min_steps = max(2, min_steps // 4)
                rate, steps = throughput(
                    lambda model=model: CommitteeCalculator(model, device="cpu", spread_every=1),
                    atoms,
                    min_steps=min_steps,
                    min_seconds=1.0 if size == 4000 else 2.0,
                    warmup=1,
                )
                table[(name, size)] = max(rate, table.get((name, size), 0.0))
                print(
                    f"  {size} atoms  {name} (run {run + 1}): {rate:,.0f} atom-steps/s ({steps} steps)",
                    flush=True,
                )
    print()
    print(
        f"| backend (K = {COMMITTEE}, spread every step) | " + " | ".join(f"{n} atoms" for n in SIZES) + " |"
    )
    print("|---|" + "---:|" * len(SIZES))
    for name in models:
        print(f"| {name} | " + " | ".join(f"{table[(name, n)]:,.0f}" for n in SIZES) + " |")
    sizes = list(SIZES)
    builtin = [table[("builtin", n)] for n in sizes]
    mace = [table[("mace", n)] for n in sizes]
    crossing = break_even(sizes, builtin, mace)
    ratios = ", ".join(f"{b / m:.1f}x ({n})" for n, b, m in zip(sizes, builtin, mace, strict=True))
    print()
    print(f"builtin / mace throughput by size: {ratios}")
    if crossing is None:
        faster = "builtin" if builtin[0] > mace[0] else "mace"
        print(
            f"break-even size: none between {sizes[0]} and {sizes[-1]} atoms ({faster} faster at every size)"
        )
    else:
        print(f"break-even size: about {crossing:,.0f} atoms")


def walker_table(models, repeats=2):
    """Table 3: W walkers of 32 atoms through the exploration, one after the other or in lockstep.

    The two modes alternate, ``repeats`` times each; the best throughput of each is kept (the
    machine's other load only ever slows a run down).
    """
    from aiida_mlip.exploration import ExploreParameters, explore
    from aiida_mlip.potentials.calculator import CommitteeCalculator
    from tests.potentials.emt_data import aluminium

    table = {}
    for name, model in models.items():
        calculator = CommitteeCalculator(model, device="cpu", spread_every=1)
        steps = 40 if name == "builtin" else 10
        for walkers in WALKERS:
            for repeat in range(repeats):
                for batched in (False, True) if walkers > 1 else (False,):
                    parameters = ExploreParameters(
                        temperature=600,
                        steps=steps,
                        timestep=2.0,
                        check_interval=10,
                        walkers=walkers,
                        batched=batched,
                        trust={"lo": 50.0, "hi": 100.0},
                        break_threshold=1000.0,
                        max_energy_jump=100.0,
                        min_distance=0.1,
                    )
                    started = time.perf_counter()
                    result = explore([aluminium(2)], calculator, parameters)
                    elapsed = time.perf_counter() - started
                    atom_steps = 32 * sum(walker.steps_done for walker in result.walkers)
                    rate = atom_steps / elapsed
                    table[(name, walkers, batched)] = max(rate, table.get((name, walkers, batched), 0.0))
                    print(
                        f"  {name} W={walkers} batched={batched} (run {repeat + 1}): {rate:,.0f} atom-steps/s "
                        f"({elapsed:.1f} s, {atom_steps // 32} walker-steps)",
                        flush=True,
                    )
    print()
    print(
        "| backend | walkers (32 atoms each) | one after the other (atom-steps/s) | lockstep, batched (atom-steps/s) | speed-up |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in models:
        for walkers in WALKERS:
            alone = table[(name, walkers, False)]
            if walkers == 1:
                print(f"| {name} | 1 | {alone:,.0f} | (the same path) | 1.0x |")
            else:
                batched = table[(name, walkers, True)]
                print(f"| {name} | {walkers} | {alone:,.0f} | {batched:,.0f} | {batched / alone:.1f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--tables", default="reference,size,walkers", help="comma-separated: reference, size, walkers"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tables = set(args.tables.split(","))
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    frames = emt_frames()
    models = {"builtin": builtin_committee(frames), "mace": mace_committee(frames).float()}
    if "reference" in tables:
        print("\n## 1. Reference: the built-in committee, mace-torch's calculator, EMT\n", flush=True)
        reference_table(models["builtin"])
    if "size" in tables:
        print("\n## 2. Both backends by system size\n", flush=True)
        size_table(models)
    if "walkers" in tables:
        print("\n## 3. Walkers of 32 atoms: one after the other or in lockstep\n", flush=True)
        walker_table(models)
    print(
        f"\nload average at the end: {os.getloadavg()[0]:.1f}; {time.perf_counter() - started:.0f} s in all",
        flush=True,
    )


if __name__ == "__main__":
    main()
