"""Judge a finished silicon run on pw.x frames it never saw: force RMSE per kind of frame.

The held-out frames are made from the run's own start structure (the 8-atom diamond cell):
rattled (0.03, 0.08 and 0.15 Angstrom standard deviation), strained (isotropic -6, -3, +3 and +6 %,
rattled by 0.03 Angstrom) and a vacancy cell (7 atoms, rattled by 0.03 Angstrom). Each is labelled
with pw.x directly through ASE's Espresso calculator, with the pw.x input of the run's own labelling
jobs: the ``parameters`` (cutoffs, smearing, convergence) and pseudopotential of a ``PwCalculation``
the run called, and the k-point mesh from the same ``kpoints_distance`` (1/Angstrom, 2 pi included,
rounded up as aiida-quantumespresso does). The final committee (the run's ``potential`` output,
exported to a model file) predicts forces on the same frames; the table gives, per kind, the force
RMSE of the committee mean (meV/Angstrom), the RMS of the reference forces, and the mean of the
committee's per-frame max force deviation (meV/Angstrom).

Run (in the profile of the run, pw.x on the PATH)::

    OMP_NUM_THREADS=1 python benchmarks/si_heldout.py <work chain pk> [--output benchmarks/results]

The pw.x labels are kept in ``<output>/si_heldout_frames.extxyz`` and reused when the file exists
(the frames depend only on the run's start structure and pw.x input, not on its potential), so
``--label-only`` can label them while the run is still going, and ``--potential <pk>`` judges any
committee of the run (e.g. each iteration's) in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

LABELS_FILE = "si_heldout_frames.extxyz"

RATTLES = (0.03, 0.08, 0.15)  # Angstrom
STRAINS = (-0.06, -0.03, 0.03, 0.06)
FRAMES_PER_RATTLE = 2


def held_out_frames(pristine, seed: int = 2024) -> dict[str, list]:
    """Kind -> unlabelled ASE Atoms made from ``pristine`` (rattled, strained, vacancy)."""
    rng = np.random.default_rng(seed)
    kinds: dict[str, list] = {}
    for sigma in RATTLES:
        frames = []
        for _ in range(FRAMES_PER_RATTLE):
            atoms = pristine.copy()
            atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
            frames.append(atoms)
        kinds[f"rattle {sigma:g} A"] = frames
    for strain in STRAINS:
        atoms = pristine.copy()
        atoms.set_cell(atoms.cell * (1 + strain), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        kinds[f"strain {100 * strain:+g} %"] = [atoms]
    vacancy = pristine.copy()
    del vacancy[0]
    vacancy.positions += rng.normal(0.0, 0.03, vacancy.positions.shape)
    kinds["vacancy (7 atoms)"] = [vacancy]
    return kinds


def kpoint_mesh(atoms, distance: float) -> list[int]:
    """Mesh for ``distance`` (1/Angstrom, reciprocal vectors with 2 pi), rounded up, at least 1."""
    reciprocal = 2 * np.pi * np.linalg.inv(atoms.cell.array).T
    return [max(int(math.ceil(round(float(np.linalg.norm(b)) / distance, 5))), 1) for b in reciprocal]


def run_inputs(pk: int):
    """The run's start structure, final potential, and one PwCalculation's parameters, pseudo and mesh."""
    from aiida import orm

    node = orm.load_node(pk)
    pw_calcs = [
        calc
        for calc in node.called_descendants
        if isinstance(calc, orm.CalcJobNode) and calc.process_type.endswith("quantumespresso.pw")
    ]
    pw_calcs = [calc for calc in pw_calcs if calc.is_finished_ok] or pw_calcs
    if not pw_calcs:
        raise SystemExit(f"run {pk} called no PwCalculation")
    calc = pw_calcs[0]
    parameters = calc.inputs.parameters.get_dict()
    (pseudo,) = calc.inputs.pseudos.values()
    mesh = calc.inputs.kpoints.get_kpoints_mesh()[0]
    structure = calc.inputs.structure.get_ase()
    distance = None
    if "dataset" in node.outputs:
        dataset = node.outputs.dataset
    else:  # a run still going: its latest dataset version so far
        from aiida_mlip.data.dataset import DatasetData

        made = [
            out
            for calc in node.called_descendants
            if isinstance(calc, orm.CalcFunctionNode)
            for out in calc.base.links.get_outgoing().all_nodes()
            if isinstance(out, DatasetData)
        ]
        if not made:
            raise SystemExit(f"run {pk} has no dataset yet")
        dataset = max(made, key=lambda data: data.ctime)
    settings = dataset.base.attributes.get("label_settings", None) or {}
    distance = settings.get("kpoints_distance")
    start = node.inputs.structures.get_atoms()[0] if "structures" in node.inputs else None
    return node, start, parameters, pseudo, mesh, structure, distance


def label_frames(start, parameters, pseudo, distance, pw: str, cache: Path) -> dict[str, list]:
    """Kind -> held-out frames labelled by pw.x, read from ``cache`` when it holds them, else written."""
    from ase.calculators.espresso import Espresso, EspressoProfile
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    kinds = held_out_frames(start)
    if cache.is_file():
        frames = read(cache, index=":")
        if len(frames) == sum(len(group) for group in kinds.values()):
            labelled: dict[str, list] = {}
            for atoms in frames:
                labelled.setdefault(atoms.info["kind"], []).append(atoms)
            return labelled
        print(f"{cache} does not hold this run's {sum(map(len, kinds.values()))} frames: labelling again")
    work = Path(tempfile.mkdtemp(prefix="si_heldout_"))
    pseudo_dir = work / "pseudo"
    pseudo_dir.mkdir()
    (pseudo_dir / pseudo.filename).write_bytes(pseudo.get_content(mode="rb"))
    input_data = {section.lower(): dict(values) for section, values in parameters.items()}
    input_data.setdefault("control", {}).update(tprnfor=True, tstress=True)
    profile = EspressoProfile(command=pw, pseudo_dir=str(pseudo_dir))
    labelled, done = {}, []
    for kind, frames in kinds.items():
        for index, atoms in enumerate(frames):
            began = time.perf_counter()
            directory = work / f"{kind.replace(' ', '_').replace('%', 'pct')}_{index}"
            atoms.calc = Espresso(
                profile=profile,
                directory=str(directory),
                input_data=input_data,
                pseudopotentials={"Si": pseudo.filename},
                kpts=kpoint_mesh(atoms, distance),
            )
            forces, energy = atoms.get_forces(), atoms.get_potential_energy()
            frame = atoms.copy()
            frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
            frame.info["kind"] = kind
            labelled.setdefault(kind, []).append(frame)
            done.append(frame)
            print(f"labelled {kind} #{index} with pw.x in {time.perf_counter() - began:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write(cache, done)
    return labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "pk", type=int, help="pk of the ActiveLearningWorkChain (finished, unless --label-only)"
    )
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--pw", default="pw.x")
    parser.add_argument(
        "--potential", type=int, help="pk of a PotentialData to judge (default: the run's output)"
    )
    parser.add_argument("--label-only", action="store_true", help="label the held-out frames, judge nothing")
    args = parser.parse_args()

    from aiida import load_profile, orm

    load_profile()
    from aiida_mlip.potentials.calculator import load_calculator

    node, start, parameters, pseudo, mesh, labelled, distance = run_inputs(args.pk)
    if distance is None:
        raise SystemExit("the run's dataset has no label_settings.kpoints_distance")
    if kpoint_mesh(labelled, distance) != list(mesh):
        raise SystemExit(f"k-point rule mismatch: {kpoint_mesh(labelled, distance)} != {list(mesh)}")
    output = Path(args.output)
    began = time.perf_counter()
    kinds = label_frames(start, parameters, pseudo, distance, args.pw, output / LABELS_FILE)
    labelling_minutes = (time.perf_counter() - began) / 60
    if args.label_only:
        print(f"labelled {sum(map(len, kinds.values()))} held-out frames in {labelling_minutes:.1f} min")
        return
    potential = orm.load_node(args.potential) if args.potential else node.outputs.potential
    work = Path(tempfile.mkdtemp(prefix="si_heldout_"))
    model_path = work / "committee.safetensors"
    potential.export(model_path)
    committee = load_calculator(model_path, device="cpu")

    rows = []
    for kind, frames in kinds.items():
        errors, references, deviations = [], [], []
        for atoms in frames:
            reference = atoms.get_forces()
            probe = atoms.copy()
            probe.calc = committee
            predicted = probe.get_forces()
            deviations.append(float(committee.results["max_force_deviation"]))
            errors.append(predicted - reference)
            references.append(reference)
        errors, references = np.concatenate(errors), np.concatenate(references)
        rows.append(
            {
                "kind": kind,
                "frames": len(frames),
                "force_rmse": float(np.sqrt(np.mean(errors**2))),
                "reference_rms": float(np.sqrt(np.mean(references**2))),
                "mean_max_deviation": float(np.mean(deviations)),
            }
        )
        print(f"{kind}: force RMSE {1000 * rows[-1]['force_rmse']:.1f} meV/A", flush=True)

    lines = [
        f"# Si run {args.pk}: committee <{potential.pk}> on pw.x frames it never saw",
        "",
        f"pw.x input of the run's labelling jobs (k-point distance {distance} 1/A, pseudo {pseudo.filename}); "
        f"labels cached in {LABELS_FILE}. Command: `python benchmarks/si_heldout.py {args.pk}`.",
        "",
        "| kind | frames | force RMSE (meV/A) | reference force RMS (meV/A) | mean committee max deviation (meV/A) |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {row['kind']} | {row['frames']} | {1000 * row['force_rmse']:.1f} | {1000 * row['reference_rms']:.1f} "
            f"| {1000 * row['mean_max_deviation']:.1f} |"
            for row in rows
        ],
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    output.mkdir(parents=True, exist_ok=True)
    (output / "si_heldout.md").write_text(report)
    (output / "si_heldout.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
