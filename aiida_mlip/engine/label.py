"""``aiida-mlip-label``: label configurations with any ASE calculator.

Files in:

* ``structures.h5`` (a :class:`~aiida_mlip.potentials.frames.Frames` HDF5 file; ``.extxyz``/``.xyz`` also read)
* ``labeller.json``::

      {"calculator": "ase.calculators.emt.EMT",     # import path of an ASE Calculator class
       "kwargs": {},                                # keyword arguments of its constructor
       "properties": ["energy", "forces", "stress"],  # stress is skipped for non-periodic frames
       "trial": true}                               # pre-check: one isolated atom per element

The module named by ``calculator`` is imported and run: on the machine that submits (the
pre-checks below) and on the compute node (this executable). Name only calculators you trust.

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
import functools
import importlib
import json
import pathlib
import sys
import time
from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

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
    unknown = set(settings) - {"calculator", "kwargs", "properties", "trial"}
    if unknown:
        raise ValueError(
            f"unknown labeller keys {sorted(unknown)}; known: calculator, kwargs, properties, trial"
        )
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
    trial = settings.get("trial", True)
    if not isinstance(trial, bool):
        raise ValueError(f"labeller 'trial' must be true or false, got {trial!r}")
    return {"calculator": settings["calculator"], "kwargs": kwargs, "properties": properties, "trial": trial}


def make_calculator(settings: dict):
    """An instance of the labeller's calculator: ``calculator`` (import path) called with ``kwargs``.

    Raises
    ------
    ValueError
        Settings that :func:`validate_labeller` refuses.
    """
    settings = validate_labeller(settings)
    return resolve_calculator(settings["calculator"])(**settings["kwargs"])


def closest_atoms(atoms: Atoms, below: float) -> tuple[int, int, float] | None:
    """Return ``(i, j, distance)`` of the closest pair of atoms nearer than ``below`` Angstrom.

    Periodic images count (an atom close to its own image gives ``i == j``). ``None`` when every
    distance is at least ``below``.
    """
    first, second, distance = neighbor_list("ijd", atoms, below, self_interaction=False)
    if len(distance) == 0:
        return None
    closest = int(np.argmin(distance))
    return int(first[closest]), int(second[closest]), float(distance[closest])


def overlap_message(images: Sequence[Atoms], below: float, labeller: str) -> str | None:
    """Return a message naming the first frame with two atoms nearer than ``below`` Angstrom, or ``None``."""
    for index, atoms in enumerate(images):
        pair = closest_atoms(atoms, below)
        if pair is not None:
            i, j, distance = pair
            return (
                f"frame {index}: atoms {i} and {j} are {distance:.3f} Angstrom apart (periodic images "
                f"included), below {below} Angstrom: the structure is unphysical, {labeller} would not be run"
            )
    return None


@functools.lru_cache(maxsize=256)
def _trial(calculator: str, kwargs_json: str, symbol: str) -> str | None:
    """Energy and forces of one isolated atom of ``symbol``; the error as text, or ``None``."""
    atoms = Atoms(symbol, positions=[[0.0, 0.0, 0.0]], cell=[10.0, 10.0, 10.0], pbc=False)
    try:
        atoms.calc = resolve_calculator(calculator)(**json.loads(kwargs_json))
        values = [atoms.get_potential_energy(), atoms.get_forces()]
        if not all(np.isfinite(value).all() for value in values):
            return "it returned NaN or infinite values"
    except Exception as exception:  # any failure of the trial is a reason to refuse
        return f"{type(exception).__name__}: {exception}"
    return None


def check_elements(settings: dict, elements: Iterable[str]) -> None:
    """Refuse a labeller that cannot label one of ``elements`` (chemical symbols).

    A calculator class that declares ``supported_elements`` is checked against that list; otherwise,
    unless the settings say ``"trial": false``, it is called once on a single isolated atom of each
    element (energy and forces), on this machine. Results are cached per calculator, arguments and
    element, so a cheap calculator (EMT) costs milliseconds; switch the trial off for an expensive one.

    Raises
    ------
    ValueError
        ``calculator X cannot label Si: NotImplementedError: No EMT-potential for Si``.
    """
    settings = validate_labeller(settings)
    calculator = settings["calculator"]
    declared = getattr(resolve_calculator(calculator), "supported_elements", None)
    if declared is not None:
        missing = sorted(set(elements) - set(declared))
        if missing:
            raise ValueError(
                f"calculator {calculator} cannot label {missing}: it supports {sorted(declared)}"
            )
        return
    if not settings["trial"]:
        return
    kwargs_json = json.dumps(settings["kwargs"], sort_keys=True)
    for symbol in sorted(set(elements)):
        error = _trial(calculator, kwargs_json, symbol)
        if error is not None:
            raise ValueError(
                f"calculator {calculator} cannot label {symbol} (trial on one isolated atom): {error}"
            )


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
    images, indices, failures = [], [], []
    for index, atoms in enumerate(frames.to_atoms()):
        atoms.calc = make_calculator(settings)
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
