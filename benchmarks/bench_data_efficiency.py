"""Data efficiency of the selection strategies: force error against labels used, on the AiiDA-free loop.

For each system (EMT Al, EMT Cu, an EMT Cu-Au alloy), strategy and seed, the same active-learning
protocol runs through :func:`aiida_mlip.learning.loop.run_active_learning`: the same initial set
(a 32-atom cell and a 31-atom vacancy cell with rattled and strained copies), then ``ITERATIONS``
iterations of committee MD at rising temperatures (300->600, 600->900, 900->1200, 1200->1500 K) from
both cells, the same budget of labels per iteration, EMT labels, a warm-started committee. After
every training the force RMSE of the committee mean is measured on test sets the exploration has to
discover: hot MD (1500 K), vacancy cells (900 K), strained cells (+-3 and 6 %, rattled) and a (111)
surface slab (600 K), all labelled with EMT and never trained on.

Output (``--output``, default ``benchmarks/results``): ``data_efficiency.md`` (tables: test force
RMSE per iteration, mean +- standard deviation over seeds, with the labels used per iteration;
labels each strategy needs to reach random's final error), ``data_efficiency.json`` (every record)
and ``data_efficiency.png`` (learning curves). The trust-window part repeats the default strategy
with a few windows on aluminium (``--windows-strategy``, default random).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data_efficiency.py           # the full tables
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data_efficiency.py --quick   # Al, 1 seed, 2 iterations
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data_efficiency.py --generate  # generated slabs/defects

``--generate`` compares, on EMT Al with the same label budget, the start structures alone with the
start structures plus generated (111)/(100) slabs and divacancy cells (``exploration.generate``),
on test slabs and defects the generator never makes ((110), (211), a 108-atom divacancy cell, an
interstitial): ``data_efficiency_generate.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc110, fcc111, fcc211
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin

from aiida_mlip.exploration.md import thermalize_momenta
from aiida_mlip.potentials.frames import Frames

#: name in the tables -> (selection strategy, select with the trust window first). Without the window
#: every non-accurate, non-exploded frame of the pool is eligible alike.
STRATEGIES = {
    "random": ("random", False),
    "max_deviation": ("max_deviation", False),
    "window_top_k": ("max_deviation", True),
    "d_optimal": ("d_optimal", False),
    "hybrid": ("hybrid", True),
}
WINDOWS = ((0.05, 0.35), (0.05, 0.5), (0.1, 0.5), (0.15, 1.0))
SEEDS = (0, 1, 2)
ITERATIONS = 4
BUDGET = 8
RAMPS = ([300, 600], [600, 900], [900, 1200], [1200, 1500])

SETTINGS = {
    "initial": {"copies_per_structure": 5, "rattle": 0.05, "strain": 0.03, "seed": 0},
    "exploration": {
        "md": {"steps": 150, "timestep": 2.0, "check_interval": 5, "walkers": 2},
        "schedule": [{"temperatures": [ramp]} for ramp in RAMPS],
    },
    "trust": {"lo": 0.05, "hi": 0.5},
    "selection": {"budget": BUDGET},
    "convergence": {"accurate_fraction": 1.0, "max_iterations": ITERATIONS},
    "training": {
        "committee_size": 3,
        "cutoff": 4.5,
        "n_radial": 5,
        "l_max": 2,
        "hidden": 16,
        "max_epochs": 25,
        "patience": 8,
        "batch_size": 4,
        "lr": 0.01,
        "valid_fraction": 0.15,
    },
    "warm_start": True,
    "warm_start_parameters": {"lr": 0.003, "max_epochs": 15},
}


# ------------------------------------------------------------------ systems and test sets
def _cell(symbols: str) -> Atoms:
    if symbols == "CuAu":
        atoms = bulk("Cu", "fcc", a=3.87, cubic=True).repeat(2)  # Vegard's law between Cu and Au
        rng = np.random.default_rng(42)
        chosen = rng.choice(len(atoms), len(atoms) // 2, replace=False)
        numbers = atoms.numbers.copy()
        numbers[chosen] = 79
        atoms.numbers = numbers
        return atoms
    lattice = {"Al": 4.05, "Cu": 3.61}[symbols]
    return bulk(symbols, "fcc", a=lattice, cubic=True).repeat(2)


def start_structures(system: str) -> list[Atoms]:
    """The 32-atom cell and its 31-atom vacancy cell."""
    pristine = _cell(system)
    vacancy = pristine.copy()
    del vacancy[0]
    return [pristine, vacancy]


def _labelled(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    stress = atoms.get_stress() if atoms.pbc.all() else None
    atoms.calc = SinglePointCalculator(
        atoms, energy=energy, forces=forces, **({"stress": stress} if stress is not None else {})
    )
    return atoms


def _md_frames(atoms: Atoms, temperature: float, count: int, seed: int, interval: int = 25) -> list[Atoms]:
    atoms = atoms.copy()
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature, rng=rng)
    dynamics = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False)
    dynamics.run(50)
    frames = []
    for _ in range(count):
        dynamics.run(interval)
        frames.append(_labelled(atoms))
    return frames


def test_sets(system: str, per_kind: int = 8) -> dict[str, Frames]:
    """Hot MD, vacancy, strained and surface-slab frames, EMT-labelled (fixed seeds)."""
    pristine, vacancy = start_structures(system)
    rng = np.random.default_rng(7)
    strained = []
    for number in range(per_kind):
        atoms = pristine.copy()
        factor = (0.94, 0.97, 1.03, 1.06)[number % 4]
        atoms.set_cell(atoms.cell * factor, scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        strained.append(_labelled(atoms))
    symbol = "Cu" if system == "CuAu" else system
    slab = fcc111(symbol, size=(2, 2, 4), a=_cell(system).cell[0, 0] / 2, vacuum=6.0, periodic=True)
    if system == "CuAu":
        slab.numbers[np.random.default_rng(3).choice(len(slab), len(slab) // 2, replace=False)] = 79
    sets = {
        "hot_md": _md_frames(pristine, 1500.0, per_kind, seed=11),
        "vacancy": _md_frames(vacancy, 900.0, per_kind, seed=12),
        "strained": strained,
        "slab": _md_frames(slab, 600.0, per_kind, seed=13),
    }
    return {name: Frames.from_atoms(images) for name, images in sets.items()}


#: What ``--generate`` adds to the start structures at iteration 1: (111) and (100) slabs and
#: divacancy cells of the 32-atom cell (``exploration.generate``, aiida_mlip.exploration.generators).
GENERATE = {
    "surfaces": {
        "miller": [[1, 1, 1], [1, 0, 0]],
        "thickness": 6.0,
        "vacuum": 8.0,
        "min_width": 5.0,
        "parents": [0],
    },
    "vacancies": {"count": 2, "structures": 2, "parents": [0]},
}


def defect_test_sets(system: str, per_kind: int = 8) -> dict[str, Frames]:
    """Slabs and defects the generator never makes, EMT-labelled (fixed seeds): (110) and (211) slabs
    at 600 K, a 108-atom cell with a divacancy at 900 K and a 32-atom cell with an octahedral
    interstitial at 600 K."""
    a = _cell(system).cell[0, 0] / 2
    big = bulk(system, "fcc", a=a, cubic=True).repeat(3)
    del big[[0, 13]]
    interstitial = _cell(system)
    interstitial += Atoms(system, positions=[[a / 2, 0.0, 0.0]])  # octahedral site of the conventional cell
    slab211 = fcc211(system, (3, 2, 4), a=a, vacuum=5.0)
    slab211.pbc = True
    sets = {
        "slab110": _md_frames(
            fcc110(system, (2, 3, 5), a=a, vacuum=5.0, periodic=True), 600.0, per_kind, seed=21
        ),
        "slab211": _md_frames(slab211, 600.0, per_kind, seed=22),
        "divacancy108": _md_frames(big, 900.0, per_kind, seed=23),
        "interstitial": _md_frames(interstitial, 600.0, per_kind, seed=24),
    }
    return {name: Frames.from_atoms(images) for name, images in sets.items()}


def combined_rmse(record: dict, sizes: dict[str, int]) -> float:
    """Force RMSE over all test frames (eV/Angstrom), from the per-set RMSEs weighted by force components."""
    errors = record["test_rmse_forces"]
    total = sum(sizes[name] for name in errors)
    return math.sqrt(sum(sizes[name] * errors[name] ** 2 for name in errors) / total)


# ------------------------------------------------------------------ runs
def run_one(system, variant, seed, tests, settings, iterations, generate=None) -> dict:
    values = json.loads(json.dumps(settings))
    values["convergence"]["max_iterations"] = iterations
    if generate:
        values["exploration"]["generate"] = generate
    from aiida_mlip.learning.loop import run_active_learning

    start = time.perf_counter()
    strategy, windowed = STRATEGIES[variant]
    values["selection"].update(strategy=strategy, windowed=windowed)
    records = run_active_learning(
        start_structures(system),
        EMT,
        values,
        seed=seed,
        test_sets=tests,
        log=None,
    )
    sizes = {name: frames.n_atoms for name, frames in tests.items()}
    return {
        "system": system,
        "strategy": variant,
        "seed": seed,
        "window": [values["trust"]["lo"], values["trust"]["hi"]],
        "seconds": time.perf_counter() - start,
        "rmse": [combined_rmse(record, sizes) for record in records],
        "labels": [record["n_labels_total"] for record in records],
        "labelled": [record.get("n_labelled", 0) for record in records],
        "origin": [record.get("labels_origin", {}) for record in records],
        "accurate_fraction": [record.get("accurate_fraction") for record in records],
        "test_rmse": [record["test_rmse_forces"] for record in records],
        "records": records,
    }


def _mean_spread(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def labels_to_reach(run: dict, target: float) -> float:
    """Labels used when a run's test RMSE first reaches ``target`` (linear in labels between points); inf if never."""
    rmse, labels = run["rmse"], run["labels"]
    for index, value in enumerate(rmse):
        if value <= target:
            if index == 0:
                return float(labels[0])
            previous = rmse[index - 1]
            fraction = (previous - target) / (previous - value) if previous > value else 1.0
            return float(labels[index - 1] + fraction * (labels[index] - labels[index - 1]))
    return math.inf


def table(runs: list[dict], baseline: list[dict], title: str, accurate: bool = False) -> str:
    """Markdown: one row per (system, ``run["label"]``): test force RMSE per iteration (mean +- std over
    seeds), labels per iteration, and labels needed to reach the final error of ``baseline`` (random);
    with ``accurate``, also the mean accurate fraction of each exploration (failed frames included)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["system"], run["label"]), []).append(run)
    n_points = max(len(run["rmse"]) for run in runs)
    header = [
        "system",
        title,
        *[f"it {i}" for i in range(n_points)],
        "labels per iteration",
        "labels to reach random's final",
        *(["accurate fraction per iteration"] if accurate else []),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (system, label), members in groups.items():
        cells = [system, label]
        for index in range(n_points):
            values = [1000 * run["rmse"][index] for run in members if index < len(run["rmse"])]
            mean, spread = _mean_spread(values) if values else (math.nan, math.nan)
            cells.append(f"{mean:.1f} +- {spread:.1f}" if values else "-")
        counts = [run["labelled"] for run in members]
        per_iteration = [np.mean([c[i] for c in counts if i < len(c)]) for i in range(max(map(len, counts)))]
        cells.append(" / ".join(f"{value:.1f}".removesuffix(".0") for value in per_iteration))
        reference = [run for run in baseline if run["system"] == system]
        if reference:
            target = float(np.mean([run["rmse"][-1] for run in reference]))
            reach = [labels_to_reach(run, target) for run in members]
            finite = [value for value in reach if math.isfinite(value)]
            cells.append(
                f"{np.mean(finite):.0f} ({len(finite)}/{len(reach)} seeds)"
                if finite
                else f"not reached (0/{len(reach)})"
            )
        else:
            cells.append("-")
        if accurate:
            fractions = [[f for f in run["accurate_fraction"][1:] if f is not None] for run in members]
            means = [
                np.mean([f[i] for f in fractions if i < len(f)]) for i in range(max(map(len, fractions)))
            ]
            cells.append(" / ".join(f"{value:.2f}" for value in means))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(runs: list[dict]) -> list[str]:
    """Per system: final errors ranked, and whether the best beats random beyond the seed spread."""
    lines = []
    for system in dict.fromkeys(run["system"] for run in runs):
        finals = {}
        for run in runs:
            if run["system"] == system:
                finals.setdefault(run["label"], []).append(1000 * run["rmse"][-1])
        ranked = sorted(finals, key=lambda label: np.mean(finals[label]))
        best = ranked[0]
        text = ", ".join(
            f"{label} {np.mean(finals[label]):.1f} +- {_mean_spread(finals[label])[1]:.1f}"
            for label in ranked
        )
        line = f"- {system}: final test force RMSE (meV/A), best first: {text}."
        if "random" in finals and best != "random" and min(len(finals["random"]), len(finals[best])) < 2:
            line += " One seed: no spread to compare with."
        elif "random" in finals and best != "random":
            gap = np.mean(finals["random"]) - np.mean(finals[best])
            spread = _mean_spread(finals["random"])[1] + _mean_spread(finals[best])[1]
            line += (
                f" {best} beats random by {gap:.1f} meV/A, "
                + ("more than" if gap > spread else "within")
                + f" the sum of their seed spreads ({spread:.1f})."
            )
        lines.append(line)
    return lines


def plot(runs: list[dict], path: Path, legend: str = "strategy") -> None:
    """Learning curves (test force RMSE against labels used, mean and std over seeds), one panel per system,
    one curve per ``run["label"]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted({run["system"] for run in runs})
    figure, axes = plt.subplots(1, len(systems), figsize=(4.5 * len(systems), 3.8), squeeze=False)
    for axis, system in zip(axes[0], systems, strict=True):
        for label in dict.fromkeys(run["label"] for run in runs if run["system"] == system):
            members = [r for r in runs if r["system"] == system and r["label"] == label]
            if not members:
                continue
            n_points = min(len(r["rmse"]) for r in members)
            labels = np.mean([r["labels"][:n_points] for r in members], axis=0)
            values = 1000 * np.array([r["rmse"][:n_points] for r in members])
            axis.errorbar(
                labels,
                values.mean(0),
                yerr=values.std(0, ddof=1) if len(members) > 1 else None,
                marker="o",
                capsize=3,
                label=label,
            )
        axis.set(title=f"EMT {system}", xlabel="labels used", ylabel="test force RMSE (meV/Å)")
        axis.legend(fontsize=7, title=legend, title_fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def progress(run: dict, name: str) -> None:
    """One line per run: test force RMSE per iteration and labels per iteration."""
    errors = " ".join(f"{1000 * value:.0f}" for value in run["rmse"])
    print(
        f"{run['system']:5s} {name:14s} seed {run['seed']}: RMSE meV/A {errors}, "
        f"labelled {run['labelled']} in {run['seconds']:.0f} s",
        flush=True,
    )


def per_set_table(runs: list[dict]) -> str:
    """Markdown: final test force RMSE (meV/A) on each test set, mean +- std over seeds, one row per label."""
    names = list(runs[0]["test_rmse"][-1])
    lines = ["| start structures | " + " | ".join(names) + " | labels |", "|" + "---|" * (len(names) + 2)]
    for label in dict.fromkeys(run["label"] for run in runs):
        members = [run for run in runs if run["label"] == label]
        cells = []
        for name in names:
            mean, spread = _mean_spread([1000 * run["test_rmse"][-1][name] for run in members])
            cells.append(f"{mean:.1f} +- {spread:.1f}")
        labels = np.mean([run["labels"][-1] for run in members])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {labels:.0f} |")
    return "\n".join(lines)


def generation_comparison(args, output: Path) -> None:
    """``--generate``: the same Al protocol and label budget with and without generated (111)/(100) slabs and
    divacancies among the start structures, measured on slabs and defects the generator never makes."""
    start = time.perf_counter()
    tests = defect_test_sets("Al")
    runs = []
    later = {kind: {**block, "iterations": [3]} for kind, block in GENERATE.items()}
    variants = (
        ("bulk + vacancy cell", None),
        ("+ generated at iteration 1", GENERATE),
        ("+ generated at iteration 3", later),
    )
    for label, generate in variants:
        for seed in args.seeds:
            run = run_one("Al", "random", seed, tests, SETTINGS, args.iterations, generate=generate)
            run["label"] = label
            runs.append(run)
            progress(run, label[-14:])
    elapsed = time.perf_counter() - start
    text = [
        "# Generated start structures (EMT Al, AiiDA-free loop)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_data_efficiency.py {' '.join(sys.argv[1:])}`; "
        f"{len(args.seeds)} seed(s), {args.iterations} iterations, budget {BUDGET} (random selection), "
        f"{elapsed / 60:.1f} min in all. Both start from the 32-atom cell and its vacancy cell and label the "
        "same initial set; the others add, at iteration 1 or 3, the generator's (111) and (100) slabs (6 A, "
        "8 A vacuum) and two divacancy cells of the 32-atom cell (`exploration.generate`: "
        f"`{json.dumps(GENERATE)}`). Test sets, never generated: (110) and (211) slabs at 600 K, a "
        "108-atom divacancy cell at 900 K, an octahedral interstitial at 600 K (8 EMT frames each).",
        "",
        "Test force RMSE over all four sets (meV/A) per iteration:",
        "",
        table(runs, [run for run in runs if run["label"] == runs[0]["label"]], "start structures"),
        "",
        "Final test force RMSE per set (meV/A):",
        "",
        per_set_table(runs),
    ]
    report = "\n".join(text) + "\n"
    print(report)
    (output / "data_efficiency_generate.md").write_text(report)
    (output / "data_efficiency_generate.json").write_text(json.dumps(runs, indent=1, default=float))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="Al only, seed 0, 2 iterations, random and hybrid"
    )
    parser.add_argument("--systems", nargs="+", default=["Al", "Cu", "CuAu"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--no-windows", action="store_true", help="skip the trust-window comparison")
    parser.add_argument(
        "--windows-strategy",
        default="random",
        choices=list(STRATEGIES),
        help="the strategy the trust-window comparison runs (on Al; default: random, the shipped default)",
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="only the comparison with and without generated slabs and divacancies (Al, random selection)",
    )
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args()
    if args.quick:
        args.systems, args.strategies, args.seeds, args.iterations, args.no_windows = (
            ["Al"],
            ["random", "hybrid"],
            [0],
            2,
            True,
        )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.generate:
        generation_comparison(args, output)
        return
    start = time.perf_counter()

    runs = []
    for system in args.systems:
        tests = test_sets(system)
        for strategy in args.strategies:
            for seed in args.seeds:
                run = run_one(system, strategy, seed, tests, SETTINGS, args.iterations)
                run["label"] = strategy
                runs.append(run)
                progress(run, strategy)
    window_runs, extra_runs = [], []
    if not args.no_windows:
        tests = test_sets("Al")
        default = (SETTINGS["trust"]["lo"], SETTINGS["trust"]["hi"])
        for run in runs:
            if run["system"] == "Al" and run["strategy"] == args.windows_strategy:
                window_runs.append({**run, "label": f"{default[0]:g}-{default[1]:g}"})
        for lo, hi in WINDOWS:
            if (lo, hi) == default:
                continue  # the strategy runs above
            settings = json.loads(json.dumps(SETTINGS))
            settings["trust"] = {"lo": lo, "hi": hi}
            for seed in args.seeds:
                run = run_one("Al", args.windows_strategy, seed, tests, settings, args.iterations)
                run["label"] = f"{lo:g}-{hi:g}"
                window_runs.append(run)
                extra_runs.append(run)
                progress(run, f"{args.windows_strategy} window {lo:g}-{hi:g}")
    elapsed = time.perf_counter() - start

    text = [
        "# Data efficiency (EMT, AiiDA-free loop)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_data_efficiency.py {' '.join(sys.argv[1:])}`; "
        f"{len(args.seeds)} seed(s), {args.iterations} iterations, budget {BUDGET}, start cells 32 + 31 atoms, "
        f"trust window {SETTINGS['trust']['lo']}-{SETTINGS['trust']['hi']} eV/A unless stated; {elapsed / 60:.1f} min in all.",
        "Iteration 0 is the committee trained on the initial set. RMSE: test force RMSE of the committee mean over "
        "hot MD, vacancy, strained and (111)-slab frames (mean +- standard deviation over seeds).",
        "",
        "## Strategies",
        "",
        table(runs, [run for run in runs if run["strategy"] == "random"], "strategy"),
        "",
        *verdict(runs),
    ]
    if window_runs:
        baseline = [run for run in runs if run["system"] == "Al" and run["strategy"] == "random"]
        text += [
            "",
            f"## Trust windows ({args.windows_strategy}, Al)",
            "",
            table(window_runs, baseline, "window lo-hi (eV/A)", accurate=True),
            "",
            *verdict(window_runs),
        ]
    report = "\n".join(text) + "\n"
    print(report)
    (output / "data_efficiency.md").write_text(report)
    (output / "data_efficiency.json").write_text(json.dumps(runs + extra_runs, indent=1, default=float))
    plot(runs, output / "data_efficiency.png")
    if window_runs:
        plot(
            window_runs,
            output / "data_efficiency_windows.png",
            legend=f"{args.windows_strategy}, window (eV/A)",
        )


if __name__ == "__main__":
    main()
