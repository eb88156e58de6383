"""The quick-start demo that ``make demo`` runs: active learning of aluminium with the EMT oracle.

On the embedded default profile (SQLite + ZeroMQ, made by ``verdi presto`` if missing), it grows a
committee potential for fcc aluminium from one cubic cell, with ASE's EMT calculator as the
"DFT" labeller, until converged. Then it labels a separate held-out set (EMT MD at 300-900 K,
generated here independently of the training pool) and prints the final errors on it, the
iteration table, and where the plot and the exported potential are.

Run: ``python -m aiida_mlip.demo [--profile NAME] [--output demo-output]``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

#: The demo's settings over the ``fast`` protocol (units: K, fs, eV/Angstrom).
DEMO_OVERRIDES = {
    "initial": {"copies_per_structure": 24, "rattle": 0.15, "strain": 0.04},
    "exploration": {
        "md": {"steps": 400, "timestep": 2.0, "check_interval": 10, "walkers": 1, "break_threshold": 2.0},
        "schedule": [
            {"temperatures": [300, 600]},
            {"temperatures": [600, 900]},
            {"temperatures": [[300, 900]]},
        ],
    },
    "trust": {"lo": 0.15, "hi": 1.0},
    "selection": {"budget": 10},
    "convergence": {"accurate_fraction": 0.9, "patience": 1, "max_iterations": 8},
    "training": {
        "committee_size": 4,
        "n_radial": 6,
        "l_max": 2,
        "hidden": 32,
        "max_epochs": 60,
        "patience": 20,
        "cutoff": 5.0,
        "batch_size": 4,
        "lr": 0.005,
        "seed": 0,
    },
}


def held_out_set(count: int = 30, seed: int = 1234):
    """EMT-labelled frames of 32-atom Al from Langevin MD at 300, 600 and 900 K (not seen in training)."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    from aiida_mlip.exploration.md import thermalize_momenta

    rng = np.random.default_rng(seed)
    images = []
    per_temperature = count // 3
    for temperature in (300, 600, 900):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
        atoms.calc = EMT()
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        dynamics = Langevin(
            atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False
        )
        dynamics.run(200)
        for _ in range(per_temperature):
            dynamics.run(20)
            frame = atoms.copy()
            frame.calc = EMT()
            frame.get_forces()
            images.append(frame)
    return images


def test_errors(potential, images) -> dict:
    """Energy (eV/atom) and force (eV/Angstrom) RMSE of the committee mean on ``images``."""
    calculator = potential.get_calculator(device="cpu")
    energy_errors, force_errors = [], []
    for atoms in images:
        reference_energy = atoms.get_potential_energy()
        reference_forces = atoms.get_forces()
        trial = atoms.copy()
        trial.calc = calculator
        energy_errors.append((trial.get_potential_energy() - reference_energy) / len(atoms))
        force_errors.append((trial.get_forces() - reference_forces).ravel())
    return {
        "energy_rmse": float(np.sqrt(np.mean(np.square(energy_errors)))),
        "force_rmse": float(np.sqrt(np.mean(np.square(np.concatenate(force_errors))))),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="aiida-mlip quick-start demo: active learning of Al with EMT"
    )
    parser.add_argument("--profile", default=None, help="AiiDA profile (default: the default profile)")
    parser.add_argument(
        "--output", default="demo-output", type=pathlib.Path, help="folder for the plot and model"
    )
    parser.add_argument("--protocol", default="fast", choices=["fast", "balanced", "precise"])
    args = parser.parse_args(argv)

    from aiida import load_profile

    profile = load_profile(args.profile)
    from aiida.common.log import configure_logging
    from ase.build import bulk

    from aiida_mlip.codes import get_or_create_localhost, register_engine_codes
    from aiida_mlip.foreground import run_get_node
    from aiida_mlip.history import format_history
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    configure_logging(with_orm=True)  # print the work chains' reports as they happen
    print(
        f"profile {profile.name}: storage {profile.storage_backend}, broker {profile.process_control_backend}"
    )
    start = time.perf_counter()
    # the engine executables as codes on a computer of its own that polls its jobs every half second
    computer = get_or_create_localhost("aiida-mlip-localhost")
    codes = register_engine_codes(computer, log=lambda *_: None)
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        codes=codes,
        protocol=args.protocol,
        overrides=DEMO_OVERRIDES,
    )
    results, node = run_get_node(builder)
    elapsed = time.perf_counter() - start

    history = results["history"]["iterations"]
    print("\n" + format_history(history))
    args.output.mkdir(parents=True, exist_ok=True)
    if "history_plot" in results:
        (args.output / "history.png").write_bytes(results["history_plot"].get_content(mode="rb"))
    potential = results["potential"]
    potential.export(args.output / "aluminium.safetensors", overwrite=True)

    errors = test_errors(potential, held_out_set())
    status = "converged" if node.is_finished_ok else f"NOT converged ({node.exit_message})"
    print(
        f"\nActiveLearningWorkChain<{node.pk}> {status} after {len(history)} iteration(s) in {elapsed:.0f} s; "
        f"{results['dataset'].n_frames} labelled frames in dataset <{results['dataset'].pk}>"
    )
    print(
        f"held-out EMT test set (30 frames, MD at 300/600/900 K): energy RMSE {1000 * errors['energy_rmse']:.2f} "
        f"meV/atom, force RMSE {1000 * errors['force_rmse']:.1f} meV/A"
    )
    print(
        f"plot: {args.output / 'history.png'}; potential: {args.output / 'aluminium.safetensors'} "
        f"(aiida_mlip.potentials.load_calculator loads it without AiiDA)"
    )
    print(f"provenance: aiida-mlip lineage {potential.pk}; aiida-mlip status {node.pk}")
    return 0 if node.is_finished_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
