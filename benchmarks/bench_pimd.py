"""Path-integral walkers: the quantum spread they sample, and their beads in an active-learning iteration.

1. Harmonic hydrogen (16 independent H atoms in wells with hbar omega = 0.2 eV, 300 K): the mean
   square displacement <x^2> per direction and the centroid-virial kinetic energy per degree of
   freedom from :class:`~aiida_mlip.exploration.pimd.RingPolymerDynamics` for P = 1 ... 32 beads,
   against the classical and the exact quantum values, and the time per step.
2. H2 on a Morse potential (ASE's ``MorsePotential``; D_e = 4.75 eV, r_e = 0.741 A,
   a = 1.94 1/A, hbar omega = 0.54 eV; 8 molecules far apart, 1000 steps): the rms bond-length
   fluctuation at 300 K, classical (P = 1) against P = 8, 16, 32 beads; the harmonic ground state
   has sqrt(hbar / (2 mu omega)) = 0.088 A.
3. One active-learning iteration on one H2 molecule in a 6 A box with Morse labels: a committee
   trained on 16 rattled copies (0.05 A), two walkers from the same start (walker 0 classical, walker 1 with
   ``exploration.md.path_integral: {beads: 8, walkers: [1]}``), the selection's budget of 8 from
   their pool, Morse labels of the picks. Rows: which walker, which bead, the bond length, the
   committee's deviation and its error there.
4. The same through the AiiDA-free loop (``run_active_learning``), two iterations.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_pimd.py`` (about 2 minutes).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.morse import MorsePotential

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
torch.set_num_threads(1)

from aiida_mlip.exploration.pimd import HBAR, PathIntegralSettings, RingPolymerDynamics  # noqa: E402

TEMPERATURE = 300.0
BETA = 1 / (units.kB * TEMPERATURE)
MORSE = {"epsilon": 4.75, "r0": 0.741, "rho0": 1.94 * 0.741}


class Harmonic(Calculator):
    """Independent isotropic wells of spring constant ``k`` (eV/A^2) around ``centres``."""

    implemented_properties = ("energy", "forces")

    def __init__(self, k, centres):
        super().__init__()
        self.k, self.centres = k, centres

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        displacement = self.atoms.positions - self.centres
        self.results = {
            "energy": 0.5 * self.k * float(np.sum(displacement**2)),
            "forces": -self.k * displacement,
        }


def sample(atoms, calculator, beads, steps, observe, seed=0):
    """Mean of ``observe(dynamics)`` every 2 steps after 100 steps (0.5 fs, centroid tau 20 fs), s/step."""
    dynamics = RingPolymerDynamics(
        atoms,
        calculator,
        PathIntegralSettings(beads=beads),
        TEMPERATURE,
        0.5,
        20.0,
        np.random.default_rng(seed),
    )
    dynamics.run(100)
    values = []
    began = time.perf_counter()
    for _ in range(steps // 2):
        dynamics.run(2)
        values.append(observe(dynamics))
    return np.mean(values, axis=0), (time.perf_counter() - began) / steps


def harmonic_table() -> list[str]:
    mass, quantum = 1.008, 0.2
    omega = quantum / HBAR
    centres = np.arange(16)[:, None] * np.array([5.0, 0.0, 0.0])
    atoms = Atoms("H16", positions=centres.copy())
    calculator = Harmonic(mass * omega**2, centres)
    classical_x2 = 1 / (BETA * mass * omega**2)
    exact_x2 = HBAR / (2 * mass * omega) / np.tanh(BETA * quantum / 2)
    exact_kinetic = quantum / 4 / np.tanh(BETA * quantum / 2)
    lines = [
        f"Harmonic H, hbar omega = {quantum} eV, {TEMPERATURE:.0f} K: classical <x^2> = {classical_x2:.5f} A^2, "
        f"quantum {exact_x2:.5f} A^2; kinetic energy per degree of freedom classical "
        f"{1000 / (2 * BETA):.1f} meV, quantum {1000 * exact_kinetic:.1f} meV.",
        "",
        "| beads | <x^2> (A^2) | / quantum | kinetic energy per dof (meV, centroid virial) | / quantum | ms per step |",
        "|---|---|---|---|---|---|",
    ]
    for beads in (1, 4, 8, 16, 32):
        (x2, kinetic), seconds = sample(
            atoms,
            calculator,
            beads,
            600,
            lambda d: (np.mean((d.q - centres) ** 2), d.virial_kinetic_energy() / (3 * len(centres))),
        )
        lines.append(
            f"| {beads} | {x2:.5f} | {x2 / exact_x2:.2f} | {1000 * kinetic:.1f} | {kinetic / exact_kinetic:.2f} | "
            f"{1000 * seconds:.1f} |"
        )
    return lines


def molecules(count: int, spacing: float) -> Atoms:
    atoms = Atoms()
    for index in range(count):
        atoms += Atoms("H2", positions=[[index * spacing, 0, 0], [index * spacing, 0, MORSE["r0"]]])
    return atoms


def bond_lengths(positions: np.ndarray) -> np.ndarray:
    return np.linalg.norm(positions[..., 1::2, :] - positions[..., 0::2, :], axis=-1)


def morse_table() -> list[str]:
    atoms = molecules(8, 6.0)
    lines = [
        "",
        "H2 on a Morse potential (hbar omega = 0.54 eV), 8 molecules, 300 K: bond length r over all beads.",
        "",
        "| beads | mean r (A) | rms fluctuation of r (A) | ms per step |",
        "|---|---|---|---|",
    ]
    for beads in (1, 8, 16, 32):
        (mean, square), seconds = sample(
            atoms,
            MorsePotential(**MORSE),
            beads,
            1000,
            lambda d: (bond_lengths(d.q).mean(), (bond_lengths(d.q) ** 2).mean()),
            seed=1,
        )
        lines.append(f"| {beads} | {mean:.4f} | {np.sqrt(square - mean**2):.4f} | {1000 * seconds:.1f} |")
    return lines


def learning_iteration() -> list[str]:
    from bench_metadynamics import labelled_committee, select_and_label

    from aiida_mlip.exploration.md import explore
    from aiida_mlip.exploration.parameters import ExploreParameters
    from aiida_mlip.learning.initial import InitialSettings
    from aiida_mlip.selection.trust import TrustWindow

    atoms = molecules(1, 0.0)
    atoms.center(about=(3.0, 3.0, 3.0))
    atoms.cell, atoms.pbc = [6.0, 6.0, 6.0], True
    labeller = {"calculator": "ase.calculators.morse.MorsePotential", "kwargs": MORSE}
    initial = InitialSettings(copies_per_structure=16, rattle=0.05, strain=0.0)
    dataset, calculator = labelled_committee(atoms, labeller, initial, cutoff=3.0)
    window = TrustWindow(lo=0.05, hi=0.5)
    parameters = ExploreParameters.from_mapping(
        {
            "temperature": TEMPERATURE,
            "steps": 400,
            "timestep": 0.5,
            "check_interval": 10,
            "thermostat_time": 20.0,
            "walkers": 2,
            "trust": window.to_dict(),
            "break_threshold": 20.0,
            "path_integral": {"beads": 8, "walkers": [1]},
        }
    )
    began = time.perf_counter()
    walkers = explore([atoms], calculator, parameters).walkers
    explored = time.perf_counter() - began
    picked, errors = select_and_label(walkers, calculator, window, dataset, labeller)
    trained = bond_lengths(np.array([image.positions for image in dataset.to_atoms()]))
    lines = [
        "",
        f"One iteration, H2 in a 6 A box, Morse labels: training bonds {trained.min():.3f}-{trained.max():.3f} A. "
        f"Checked frames per class (accurate/candidate/failed): classical {walkers[0].counts}, 8 beads "
        f"{walkers[1].counts}; pool {len(walkers[0].candidates)} classical + {len(walkers[1].candidates)} bead frames; "
        f"explore {explored:.0f} s. The {len(picked)} picks, labelled by Morse:",
        "",
        "| walker | bead | step | bond (A) | max force deviation (eV/A) | Morse max force error (eV/A) |",
        "|---|---|---|---|---|---|",
    ]
    for snapshot, error in zip(picked, errors, strict=True):
        lines.append(
            f"| {'8 beads' if snapshot.info['walker'] == 1 else 'classical'} | {snapshot.info.get('bead', '-')} | "
            f"{snapshot.info['step']} | {bond_lengths(snapshot.positions)[0]:.3f} | "
            f"{snapshot.info['max_force_deviation']:.2f} | {error:.2f} |"
        )
    return lines


def loop_run() -> list[str]:
    """Two iterations of the AiiDA-free loop (``run_active_learning``) with the 8-bead walker."""
    from aiida_mlip.learning.loop import run_active_learning

    atoms = molecules(1, 0.0)
    atoms.center(about=(3.0, 3.0, 3.0))
    atoms.cell, atoms.pbc = [6.0, 6.0, 6.0], True
    md = {"steps": 200, "timestep": 0.5, "check_interval": 10, "thermostat_time": 20.0, "walkers": 2}
    md.update(break_threshold=20.0, path_integral={"beads": 8, "walkers": [1]})
    settings = {
        "initial": {"copies_per_structure": 16, "rattle": 0.05, "strain": 0.0},
        "exploration": {"md": md, "schedule": [{"temperatures": [TEMPERATURE]}]},
        "trust": {"lo": 0.05, "hi": 0.5},
        "selection": {"budget": 8},
        "convergence": {"max_iterations": 2},
        "training": {
            "committee_size": 4,
            "cutoff": 3.0,
            "n_radial": 5,
            "l_max": 2,
            "hidden": 16,
            "max_epochs": 100,
        },
    }
    lines = ["", "The AiiDA-free loop, walker 1 with 8 beads, Morse labels:", ""]
    labeller = {"calculator": "ase.calculators.morse.MorsePotential", "kwargs": MORSE}
    run_active_learning([atoms], labeller, settings, log=lambda line: lines.append(f"    {line}"))
    return lines


def main() -> None:
    for part in (harmonic_table, morse_table, learning_iteration, loop_run):
        print("\n".join(part()), flush=True)


if __name__ == "__main__":
    main()
