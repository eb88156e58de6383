"""``aiida-mlip-label``: label configurations with any ASE calculator.

Files in:

* ``structures.h5`` (a :class:`~aiida_mlip.potentials.frames.Frames` HDF5 file; ``.extxyz``/``.xyz`` also read)
* ``labeller.json``::

      {"calculator": "ase.calculators.emt.EMT",     # import path of an ASE Calculator class
       "kwargs": {},                                # keyword arguments of its constructor
       "properties": ["energy", "forces", "stress"]}  # stress is skipped for non-periodic frames

Files out (in ``--output-dir``):

* ``labelled.h5``: the frames that were labelled, with energy (eV), forces (eV/Angstrom) and, where
  asked for and defined, stress (eV/Angstrom^3); ``config_type`` and ``source_uuid`` are kept.
* ``labelled_indices.json``: the index in the input of each labelled frame.
* ``failures.json``: ``[{"index": i, "error": "..."}]`` for every frame whose calculation raised or
  returned non-finite values. A failed frame does not stop the others.
* ``summary.json``: counts and wall time.

Exit codes: 0 when it ran (even with failed frames: they are reported, not fatal), 2 for bad input
(unreadable files, an import path that is not an ASE calculator), 3 when every frame failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time

import numpy as np

from aiida_mlip.engine.io import EXIT_BAD_INPUT, EXIT_OK, read_frames
from aiida_mlip.potentials.frames import Frames

EXIT_ALL_FAILED = 3
ALLOWED_PROPERTIES = ("energy", "forces", "stress")


def resolve_calculator(import_path: str) -> type:
    """Return the ASE calculator class named by ``"package.module.ClassName"``.

    Raises
    ------
    ValueError
        If the path does not import or does not name a subclass of ``ase.calculators.calculator.BaseCalculator``.
    """
    from ase.calculators.calculator import BaseCalculator

    module_name, _, class_name = str(import_path).rpartition(".")
    if not module_name:
        raise ValueError(f"{import_path!r} is not an import path of the form 'package.module.ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exception:
        raise ValueError(
            f"cannot import module {module_name!r} of calculator {import_path!r}: {exception}"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"module {module_name!r} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, BaseCalculator)):
        raise ValueError(f"{import_path!r} is not an ASE calculator class")
    return cls


def validate_labeller(settings: dict) -> dict:
    """Return the labeller settings with defaults filled in, raising ``ValueError`` for bad ones."""
    unknown = set(settings) - {"calculator", "kwargs", "properties"}
    if unknown:
        raise ValueError(f"unknown labeller keys {sorted(unknown)}; known: calculator, kwargs, properties")
    if "calculator" not in settings:
        raise ValueError("the labeller needs 'calculator': the import path of an ASE calculator class")
    resolve_calculator(settings["calculator"])
    kwargs = settings.get("kwargs", {}) or {}
    if not isinstance(kwargs, dict):
        raise ValueError("labeller 'kwargs' must be a mapping")
    properties = list(settings.get("properties", ["energy", "forces", "stress"]))
    bad = [name for name in properties if name not in ALLOWED_PROPERTIES]
    if bad or "energy" not in properties or "forces" not in properties:
        raise ValueError(
            f"labeller 'properties' must include energy and forces, from {ALLOWED_PROPERTIES}; got {properties}"
        )
    return {"calculator": settings["calculator"], "kwargs": kwargs, "properties": properties}


def label_frames(frames: Frames, settings: dict, log=print):
    """Label every frame with the calculator of ``settings``.

    Returns
    -------
    labelled : Frames or None
        The frames that were labelled (``None`` when none was).
    indices : list of int
        Their indices in ``frames``.
    failures : list of dict
        ``{"index", "error"}`` for each frame that failed.
    """
    settings = validate_labeller(settings)
    calculator_class = resolve_calculator(settings["calculator"])
    images, indices, failures = [], [], []
    for index, atoms in enumerate(frames.to_atoms()):
        atoms.calc = calculator_class(**settings["kwargs"])
        try:
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces()
            stress = atoms.get_stress() if "stress" in settings["properties"] and atoms.pbc.all() else None
            values = [energy, forces] + ([stress] if stress is not None else [])
            if not all(np.isfinite(value).all() for value in values):
                raise FloatingPointError("the calculator returned NaN or infinite values")
        except Exception as exception:  # any calculator error is a failed label, not a failed job
            failures.append({"index": index, "error": f"{type(exception).__name__}: {exception}"})
            log(f"frame {index}: FAILED ({failures[-1]['error']})", flush=True)
            continue
        results = {"energy": float(energy), "forces": np.array(forces)}
        if stress is not None:
            results["stress"] = np.array(stress)
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms.calc = SinglePointCalculator(atoms, **results)
        images.append(atoms)
        indices.append(index)
        log(f"frame {index}: E = {energy:.6f} eV, max |F| = {np.abs(forces).max():.4f} eV/A", flush=True)
    labelled = Frames.from_atoms(images) if images else None
    if labelled is not None:
        labelled.config_type[:] = frames.config_type[indices]
        labelled.source_uuid[:] = frames.source_uuid[indices]
    return labelled, indices, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="aiida-mlip-label", description="Label configurations with an ASE calculator."
    )
    parser.add_argument("--structures", default="structures.h5", type=pathlib.Path)
    parser.add_argument("--labeller", default="labeller.json", type=pathlib.Path)
    parser.add_argument("--output-dir", default=".", type=pathlib.Path)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        frames = read_frames(args.structures)
        settings = validate_labeller(json.loads(args.labeller.read_text()))
    except (OSError, ValueError, KeyError) as exception:
        print(f"aiida-mlip-label: bad input: {exception}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"labelling {len(frames)} frames with {settings['calculator']}", flush=True)
    labelled, indices, failures = label_frames(frames, settings)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if labelled is not None:
        labelled.write_hdf5(out / "labelled.h5")
    (out / "labelled_indices.json").write_text(json.dumps(indices))
    (out / "failures.json").write_text(json.dumps(failures, indent=1))
    summary = {
        "n_frames": len(frames),
        "n_labelled": len(indices),
        "n_failed": len(failures),
        "calculator": settings["calculator"],
        "wall_time_s": time.perf_counter() - start,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"labelled {len(indices)} of {len(frames)} frames, {len(failures)} failed", flush=True)
    return EXIT_ALL_FAILED if not indices else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
