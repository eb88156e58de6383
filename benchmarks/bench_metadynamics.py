"""Well-tempered metadynamics against plain MD: does a walker cross a vacancy hop in EMT aluminium?

A 108-atom fcc Al cell (a = 4.05 Angstrom) loses atom 0; atoms A and B, the two nearest neighbours of
the vacancy on either side of it along [110], are 5.73 Angstrom apart. When either hops into the
vacancy their distance falls to 2.86 Angstrom; the collective variable is that distance and a hop
counts once it is below ``--crossed`` (3.4 Angstrom). Walkers run Langevin MD (2 fs, friction 0.02)
on EMT at the same temperature from the same start with the same seeds, plain and with the
metadynamics bias of :mod:`aiida_mlip.exploration.metadynamics`; the table gives the step of the
first crossing per seed (``>N``: none in ``--steps``), the smallest distance reached and the hills laid.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_metadynamics.py     # the README table
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin

from aiida_mlip.exploration.md import thermalize_momenta
from aiida_mlip.exploration.metadynamics import MetadynamicsBias, MetadynamicsSettings, distance_cv

A = 4.05


def vacancy_cell():
    """The 107-atom cell and the indices of the two neighbours of the vacancy along [110]."""
    atoms = bulk("Al", "fcc", a=A, cubic=True).repeat(3)
    del atoms[0]
    length = atoms.cell[0, 0]

    def nearest(point):
        offsets = (atoms.positions - point + length / 2) % length - length / 2
        return int(np.argmin(np.linalg.norm(offsets, axis=1)))

    return atoms, (nearest([A / 2, A / 2, 0.0]), nearest([-A / 2, -A / 2, 0.0]))


def walk(args, seed: int, metadynamics: bool) -> dict:
    atoms, pair = vacancy_cell()
    calculator = EMT()
    if metadynamics:
        settings = MetadynamicsSettings.from_mapping(
            {
                "cv": {"atoms": list(pair)},
                "height": args.height,
                "width": args.width,
                "pace": args.pace,
                "bias_factor": args.bias_factor,
            }
        )
        calculator = MetadynamicsBias(calculator, settings, args.temperature)
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, args.temperature, rng=rng)
    dynamics = Langevin(
        atoms, 2 * units.fs, temperature_K=args.temperature, friction=0.02, rng=rng, fixcm=False
    )
    if metadynamics:
        dynamics.attach(calculator.deposit, interval=args.pace)
    crossed, smallest, step, site = None, np.inf, 0, np.inf
    while step < args.steps:
        dynamics.run(10)
        step += 10
        distance = distance_cv(atoms, pair)[0]
        smallest = min(smallest, distance)
        if distance < args.crossed:
            crossed = step
            dynamics.run(100)  # let it settle: a hop ends with A or B on the vacancy site
            site = min(_from_site(atoms, index) for index in pair)
            break
    hills = len(calculator.centres) if metadynamics else 0
    return {"crossed": crossed, "smallest": smallest, "hills": hills, "site": site}


def _from_site(atoms, index: int) -> float:
    """Distance (Angstrom, minimum image) of atom ``index`` from the vacancy site (the origin)."""
    length = atoms.cell[0, 0]
    return float(np.linalg.norm((atoms.positions[index] + length / 2) % length - length / 2))


def labelled_committee(atoms, labeller, initial, cutoff: float):
    """Rattled copies of ``atoms`` (``initial``: InitialSettings) labelled by ``labeller`` and a
    committee of 4 trained on them (100 epochs), as a calculator with the spread on every call."""
    from aiida_mlip.engine.label import label_frames
    from aiida_mlip.learning.initial import initial_structures
    from aiida_mlip.potentials.calculator import CommitteeCalculator
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import train_committee

    images = initial_structures([atoms], initial)
    dataset, _, _ = label_frames(
        Frames.from_atoms(images, require_labels=False), labeller, log=lambda *_, **__: None
    )
    training = {
        "committee_size": 4,
        "cutoff": cutoff,
        "n_radial": 5,
        "l_max": 2,
        "hidden": 16,
        "max_epochs": 100,
    }
    model = train_committee(dataset, training, device="cpu", log=None).model
    return dataset, CommitteeCalculator(model, device="cpu", spread_every=1)


def select_and_label(walkers, calculator, window, dataset, labeller, budget: int = 8):
    """The selection's picks from the walkers' pool (training set ``dataset``) and the committee's
    largest force error (eV/Angstrom) on each against ``labeller``'s label."""
    from aiida_mlip.engine.label import label_frames
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.selection.batch import select_batch
    from aiida_mlip.selection.settings import SelectionSettings

    pool = [snapshot for walker in walkers for snapshot, _ in walker.candidates]
    scores = {"max_force_deviation": np.array([s.info["max_force_deviation"] for s in pool])}
    outcome = select_batch(
        pool, SelectionSettings(budget=budget, seed=0), window, calculator, scores, dataset.to_atoms()
    )
    picked = [pool[index] for index in outcome.indices]
    labelled, _, _ = label_frames(
        Frames.from_atoms(picked, require_labels=False), labeller, log=lambda *_, **__: None
    )
    errors = [
        float(np.linalg.norm(calculator.get_forces(snapshot) - reference.get_forces(), axis=1).max())
        for snapshot, reference in zip(picked, labelled.to_atoms(), strict=True)
    ]
    return picked, errors


def learning_iteration(args) -> list[str]:
    """One active-learning iteration with a committee from the vacancy cell: a plain and a metadynamics
    walker (the same seed, ``exploration.md.metadynamics.walkers: [1]``) explore, the selection picks
    its budget from their pool, EMT labels the picks; the rows say which walker each pick came from,
    its A-B distance and the committee's deviation and error there."""
    from aiida_mlip.exploration.md import explore
    from aiida_mlip.exploration.parameters import ExploreParameters
    from aiida_mlip.learning.initial import InitialSettings
    from aiida_mlip.selection.trust import TrustWindow

    atoms, pair = vacancy_cell()
    labeller = {"calculator": "ase.calculators.emt.EMT"}
    initial = InitialSettings(copies_per_structure=12, rattle=0.05, strain=0.02)
    dataset, calculator = labelled_committee(atoms, labeller, initial, cutoff=4.5)
    window = TrustWindow(lo=0.05, hi=0.5)
    parameters = ExploreParameters.from_mapping(
        {
            "temperature": args.temperature,
            "steps": args.iteration_steps,
            "timestep": 2.0,
            "check_interval": 10,
            "walkers": 2,
            "seed": 0,
            "trust": window.to_dict(),
            "break_threshold": 5.0,
            "metadynamics": {
                "cv": {"atoms": list(pair)},
                "height": args.height,
                "width": args.width,
                "pace": args.pace,
                "bias_factor": args.bias_factor,
                "walkers": [1],
            },
        }
    )
    walkers = explore([atoms], calculator, parameters).walkers
    picked, errors = select_and_label(walkers, calculator, window, dataset, labeller)
    lines = [
        f"Pool: {sum(1 for w in walkers[:1] for _ in w.candidates)} candidate frames from the plain walker, "
        f"{len(walkers[1].candidates)} from the metadynamics walker; smallest A-B distance explored: plain "
        f"{min(distance_cv(t, pair)[0] for t in walkers[0].trajectory):.2f} A, metadynamics "
        f"{min(distance_cv(t, pair)[0] for t in walkers[1].trajectory):.2f} A. The {len(picked)} picks, labelled by EMT:",
        "",
        "| walker | step | A-B distance (A) | max force deviation (eV/A) | EMT max force error (eV/A) |",
        "|---|---|---|---|---|",
    ]
    for snapshot, error in zip(picked, errors, strict=True):
        lines.append(
            f"| {'metadynamics' if snapshot.info['walker'] == 1 else 'plain'} | {snapshot.info['step']} | "
            f"{distance_cv(snapshot, pair)[0]:.2f} | {snapshot.info['max_force_deviation']:.2f} | {error:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--crossed", type=float, default=3.4, help="Angstrom")
    parser.add_argument("--height", type=float, default=0.1, help="eV")
    parser.add_argument("--width", type=float, default=0.15, help="Angstrom")
    parser.add_argument("--pace", type=int, default=20, help="steps")
    parser.add_argument("--bias-factor", type=float, default=15.0)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--iteration-steps", type=int, default=600, help="MD steps of the iteration's walkers"
    )
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args()
    start = time.perf_counter()
    lines = [
        "| MD | first crossing (step), per seed | crossed | smallest A-B distance (A), per seed | hills | "
        "A or B from the vacancy site 100 steps after crossing (A) |",
        "|---|---|---|---|---|---|",
    ]
    for name, metadynamics in (("plain", False), ("well-tempered metadynamics", True)):
        rows = [walk(args, seed, metadynamics) for seed in args.seeds]
        crossings = ", ".join(str(r["crossed"]) if r["crossed"] else f">{args.steps}" for r in rows)
        lines.append(
            f"| {name} | {crossings} | {sum(r['crossed'] is not None for r in rows)}/{len(rows)} | "
            + ", ".join(f"{r['smallest']:.2f}" for r in rows)
            + f" | {', '.join(str(r['hills']) for r in rows)} | "
            + ", ".join(f"{r['site']:.2f}" if r["crossed"] else "-" for r in rows)
            + " |"
        )
        print(lines[-1], flush=True)
    iteration = learning_iteration(args)
    print("\n".join(iteration), flush=True)
    text = [
        "# Metadynamics against plain MD: a vacancy hop in EMT Al",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_metadynamics.py {' '.join(sys.argv[1:])}`; 107 atoms, "
        f"{args.temperature:g} K, 2 fs, at most {args.steps} steps, crossing below {args.crossed} A (5.73 A at the "
        f"start, 2.86 A after a hop); hills {args.height} eV x {args.width} A every {args.pace} steps, bias factor "
        f"{args.bias_factor:g}; seeds {args.seeds}; {time.perf_counter() - start:.0f} s in all.",
        "",
        *lines,
        "",
        "## One active-learning iteration with a metadynamics walker",
        "",
        "A committee of 4 trained on the vacancy cell and 12 rattled, strained copies (EMT); walker 0 plain, walker 1 "
        f"with metadynamics on the same A-B distance, {args.iteration_steps} steps each at {args.temperature:g} K; "
        "random selection of 8 among every frame with a max force deviation of at least 0.05 eV/A.",
        "",
        *iteration,
    ]
    report = "\n".join(text) + "\n"
    print(report)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metadynamics.md").write_text(report)


if __name__ == "__main__":
    main()
