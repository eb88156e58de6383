"""Many elements: feature size and MD cost for 1-7 elements, and a five-element EMT alloy learned.

Part 1 (``--table``): for 1, 2, 3, 5 and 7 of EMT's elements, a random fcc alloy of 108 atoms
(``exploration.generators.substitutions``, equal fractions, Vegard lattice constant) and a committee
of 4 with the default architecture (untrained weights: the cost does not depend on them). Printed:
the descriptor's feature size with the default species channels (one-hot up to 3 elements, then a
fixed compression to 3 channels) and with one one-hot channel per element, the last-layer features
the selection uses, and the wall time per velocity-Verlet step with the committee spread on every
step (1 thread).

Part 2 (``--learn``): active learning of a five-element alloy (Cu, Ni, Pd, Ag, Au; 32-atom random
fcc cells) through the AiiDA-free loop (:func:`aiida_mlip.learning.loop.run_active_learning`) with
EMT labels. Printed per iteration: labelled atomic environments per element and the committee
mean's force RMSE per element on held-out EMT MD frames of other random alloys (eV/Angstrom). The
loop returns records, not committees; the benchmark wraps the loop's training step to keep the
committee the loop adopts (as it does: status ``ok`` or ``no_improvement``) and a counting EMT
labeller to count what was labelled.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_many_elements.py`` (both parts, about 3 minutes).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.data import atomic_numbers
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
torch.set_num_threads(1)

from bench_data_efficiency import SETTINGS as DATA_EFFICIENCY  # noqa: E402

from aiida_mlip.exploration.generator_settings import SubstitutionSettings  # noqa: E402
from aiida_mlip.exploration.generators import substitutions  # noqa: E402
from aiida_mlip.potentials.calculator import CommitteeCalculator  # noqa: E402
from aiida_mlip.potentials.committee import CommitteePotential  # noqa: E402
from aiida_mlip.potentials.train import TrainConfig  # noqa: E402

#: EMT's elements in the order they are added, and their fcc lattice constants (Angstrom).
ELEMENTS = ("Cu", "Ni", "Pd", "Ag", "Au", "Pt", "Al")
LATTICE = {"Cu": 3.61, "Ni": 3.52, "Pd": 3.89, "Ag": 4.09, "Au": 4.08, "Pt": 3.92, "Al": 4.05}
FIVE = ELEMENTS[:5]


def random_alloy(elements, repeat: int, seed: int):
    """A random fcc solid solution of ``elements`` at equal fractions, Vegard's lattice constant."""
    a = float(np.mean([LATTICE[e] for e in elements]))
    parent = bulk(elements[0], "fcc", a=a, cubic=True).repeat(repeat)
    settings = SubstitutionSettings(composition={e: 1 / len(elements) for e in elements})
    return substitutions(parent, settings, np.random.default_rng(seed))[0]


def step_time(model, atoms, steps: int = 10, repeats: int = 5) -> float:
    """Seconds per velocity-Verlet step with the committee spread on every step (best of ``repeats``:
    the least disturbed by other processes on a shared machine)."""
    atoms = atoms.copy()
    atoms.calc = CommitteeCalculator(model, device="cpu", spread_every=1)
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dynamics.run(2)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        dynamics.run(steps)
        best = min(best, (time.perf_counter() - began) / steps)
    return best


def committee(elements, species_channels=None) -> CommitteePotential:
    """A committee of 4 with the default architecture (untrained weights)."""
    defaults = TrainConfig()
    return CommitteePotential(
        elements=sorted(elements),
        cutoff=defaults.cutoff,
        committee_size=4,
        hidden=defaults.hidden,
        n_radial=defaults.n_radial,
        l_max=defaults.l_max,
        species_channels=species_channels,
    )


def table() -> str:
    rows = [
        "| elements | atoms | features (default channels) | features (one-hot per element) "
        "| last-layer features (4 x hidden) | ms per MD step (committee of 4) |",
        "|---|---|---|---|---|---|",
    ]
    for n in (1, 2, 3, 5, 7):
        elements = list(ELEMENTS[:n])
        atoms = random_alloy(elements, 3, seed=n)
        model, onehot = committee(elements), committee(elements, species_channels=n)
        hidden = CommitteeCalculator(model, device="cpu").get_features(atoms, kind="hidden").shape[1]
        ms = 1000 * step_time(model, atoms)
        ms_onehot = 1000 * step_time(onehot, atoms)
        rows.append(
            f"| {n} ({', '.join(elements)}) | {len(atoms)} | {model.descriptor.n_features} | "
            f"{onehot.descriptor.n_features} | {hidden} | {ms:.1f} (one-hot: {ms_onehot:.1f}) |"
        )
    return "\n".join(rows)


# ------------------------------------------------------------------ the five-element run
LABELLED: dict[bytes, np.ndarray] = {}  # positions -> atomic numbers of every labelled frame, in order


class CountingEMT(EMT):
    """EMT that records the atomic numbers of every configuration it labels."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        if system_changes is None:
            super().calculate(atoms, properties)
        else:
            super().calculate(atoms, properties, system_changes)
        LABELLED.setdefault(self.atoms.positions.tobytes(), self.atoms.numbers.copy())


def held_out(count: int = 12):
    """EMT MD frames (600 and 1000 K) of random five-element alloys the run never starts from."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for seed, temperature in ((101, 600), (102, 1000), (103, 600), (104, 1000)):
        atoms = random_alloy(FIVE, 2, seed=seed)
        atoms.calc = EMT()
        rng = np.random.default_rng(seed)
        thermalize_momenta(atoms, temperature, rng=rng)
        dynamics = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
        dynamics.run(40)
        for _ in range(count // 4):
            dynamics.run(20)
            frame = atoms.copy()
            frame.calc = SinglePointCalculator(
                frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
            )
            frames.append(frame)
    return frames


def per_element_rmse(model, frames) -> dict[str, float]:
    """Force RMSE of the committee mean per element, eV/Angstrom."""
    calculator = CommitteeCalculator(model, device="cpu")
    errors: dict[str, list[np.ndarray]] = {}
    for frame in frames:
        reference = frame.get_forces()
        atoms = frame.copy()
        atoms.calc = calculator
        predicted = atoms.get_forces()
        for symbol, error in zip(frame.get_chemical_symbols(), predicted - reference, strict=True):
            errors.setdefault(symbol, []).append(error)
    return {s: float(np.sqrt(np.mean(np.square(errors[s])))) for s in FIVE}


#: bench_data_efficiency's settings (initial set, window, committee), this run's schedule and budget
SETTINGS = {
    **copy.deepcopy(DATA_EFFICIENCY),
    "initial": {**DATA_EFFICIENCY["initial"], "copies_per_structure": 6},
    "exploration": {
        "md": {"steps": 120, "timestep": 2.0, "check_interval": 5, "walkers": 2},
        "schedule": [
            {"temperatures": [[300, 700]]},
            {"temperatures": [[600, 1000]]},
            {"temperatures": [1000]},
        ],
    },
    "selection": {"budget": 12},
    "training": {**DATA_EFFICIENCY["training"], "max_epochs": 60, "patience": 15},
    "warm_start_parameters": {"lr": 0.003, "max_epochs": 30},
}


def learn(iterations: int) -> str:
    from aiida_mlip.learning import loop

    counting = importlib.import_module("benchmarks.bench_many_elements")  # the instance the labeller uses
    adopted = []
    train = loop._train

    def keep(*args, **kwargs):
        result, metrics = train(*args, **kwargs)
        if result.status in ("ok", "no_improvement"):
            adopted.append(result.model)
        return result, metrics

    loop._train = keep
    tests = held_out()
    starts = [random_alloy(FIVE, 2, seed=1), random_alloy(FIVE, 2, seed=2)]
    settings = {**SETTINGS, "convergence": {"accurate_fraction": 1.0, "max_iterations": iterations}}
    began = time.perf_counter()
    rows = [
        "| iteration | labelled frames (total) | labelled environments Cu / Ni / Pd / Ag / Au "
        "| held-out force RMSE Cu / Ni / Pd / Ag / Au (eV/A) | all |",
        "|---|---|---|---|---|",
    ]
    history = loop.run_active_learning(
        starts,
        {"calculator": "benchmarks.bench_many_elements.CountingEMT"},
        settings,
        test_sets={"alloy": tests},
        log=print,
    )
    loop._train = train
    # one adopted committee per record (the initial training and each retrained iteration), in order
    labelled = list(counting.LABELLED.values())
    counts_so_far = np.zeros(len(FIVE), dtype=int)
    frames_so_far = 0
    cursor = 0
    for record, model in zip(history, adopted, strict=False):
        new = record.get("n_labelled", 0)
        for numbers in labelled[cursor : cursor + new]:
            counts_so_far += [int(np.sum(numbers == atomic_numbers[e])) for e in FIVE]
        cursor += new
        frames_so_far += new
        rmse = per_element_rmse(model, tests)
        rows.append(
            f"| {record['iteration']} | {frames_so_far} | {' / '.join(str(c) for c in counts_so_far)} | "
            f"{' / '.join(f'{rmse[e]:.3f}' for e in FIVE)} | {record['test_rmse_forces']['alloy']:.3f} |"
        )
    rows.append("")
    rows.append(f"{time.perf_counter() - began:.0f} s; {len(tests)} held-out frames of 32 atoms.")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", action="store_true", help="only part 1")
    parser.add_argument("--learn", action="store_true", help="only part 2")
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    both = not (args.table or args.learn)
    if args.table or both:
        print(table(), flush=True)
    if args.learn or both:
        print(learn(args.iterations), flush=True)


if __name__ == "__main__":
    main()
