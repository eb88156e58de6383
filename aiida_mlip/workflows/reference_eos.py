"""The equation of state of a reference labelled through ``LabellingWorkChain`` (pw.x), for ``ValidationWorkChain``.

The reference's volume points are the EOS kernel's own (:func:`~aiida_mlip.properties.eos.volume_points`
of the given structure, ``eos.points`` volumes over ``1 +- eos.volume_range``), made by the calcfunction
:func:`eos_volume_points`; ``LabellingWorkChain``'s ``pw`` labeller computes each with one
``PwBaseWorkChain`` (an SCF with forces and stress); :func:`fit_reference_eos` fits their energies with
the kernel's Birch-Murnaghan fit (:func:`~aiida_mlip.properties.eos.fit_equation_of_state`). Its
result enters the comparison table as the reference of ``eos``, beside the committee's mean +- std.

The reference does no relaxation: pw.x runs SCFs of the given structure scaled isotropically, ions
at their given fractional positions (the committee relaxes as ``eos.relax`` says). That is the
equilibrium at every volume for crystals whose ions sit on positions fixed by symmetry (diamond,
fcc, bcc, rocksalt, ...); for others, ``max_force`` of the fit (the largest pw.x force over the
points) says how far the ions are from it.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction
from ase import units

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.properties.eos import fit_equation_of_state, volume_points
from aiida_mlip.properties.validation import ValidationSettings

__all__ = (
    "LABELLED_REFERENCE_PROPERTIES",
    "describe_reference",
    "eos_volume_points",
    "fit_reference_eos",
    "validate_labelled_reference",
)

#: The properties a reference labelled through ``LabellingWorkChain`` (pw.x) is computed for.
LABELLED_REFERENCE_PROPERTIES = ("eos",)

#: Exit status of :func:`fit_reference_eos` when the energies cannot be fitted.
FIT_FAILED = 400


def _points(structure: orm.StructureData, settings: dict | None) -> StructureSetData:
    values = ValidationSettings.from_mapping(settings)
    return StructureSetData.from_atoms(volume_points(structure.get_ase(), values.eos))


@calcfunction
def eos_volume_points(structure: orm.StructureData, settings: orm.Dict) -> StructureSetData:
    """The volume points of the equation of state of ``structure`` (validation ``settings``' ``eos`` block)."""
    return _points(structure, settings.get_dict())


@calcfunction
def fit_reference_eos(structure: orm.StructureData, labels: DatasetData):
    """The Birch-Murnaghan fit of the labelled volume points of ``structure``.

    Returns ``result``: the :meth:`~aiida_mlip.properties.eos.EOSResult.to_dict` values (volumes in
    Angstrom^3, energies in eV, pressures and ``b0`` in GPa, ``lattice_constant`` in Angstrom) with
    ``n_points``, ``max_force`` (eV/Angstrom, the largest force over the points), the labels'
    ``label_settings`` and ``description`` (one line: labeller, pseudopotential family, cutoffs, protocol).
    Energies without a minimum over volume give exit status 400.
    """
    frames = sorted(labels.get_atoms(), key=lambda atoms: atoms.get_volume())
    volumes = [atoms.get_volume() for atoms in frames]
    energies = [atoms.get_potential_energy() for atoms in frames]
    pressures = [-atoms.get_stress()[:3].mean() / units.GPa for atoms in frames]
    try:
        result = fit_equation_of_state(structure.get_ase(), volumes, energies, pressures)
    except ValueError as exception:
        return ExitCode(FIT_FAILED, f"the reference energies cannot be fitted: {exception}")
    settings = dict(labels.label_settings)
    values = result.to_dict() | {
        "n_points": len(frames),
        "max_force": float(max(np.abs(atoms.get_forces()).max() for atoms in frames)),
        "label_settings": settings,
        "description": _describe_labels(settings),
    }
    return {"result": orm.Dict(values)}


def _describe_labels(settings: dict) -> str:
    """``pw.x (debian/pbe, 30/240 Ry, protocol fast)`` from a dataset's ``label_settings``."""
    if settings.get("labeller") != "quantumespresso.pw":
        return str(settings.get("labeller", "labelled reference"))
    return (
        f"pw.x ({settings.get('pseudo_family')}, {settings.get('ecutwfc'):g}/{settings.get('ecutrho'):g} Ry, "
        f"protocol {settings.get('protocol')})"
    )


def describe_reference(reference: dict) -> str:
    """What a reference of the comparison table was: an ASE calculator's import path, or the labelled fit's ``description``."""
    return reference.get("calculator") or reference.get("description", "reference")


def validate_labelled_reference(inputs: dict, settings: ValidationSettings) -> str | None:
    """Refuse a ``reference_labelling`` namespace that cannot give the reference, before any job runs.

    Refused: no ``pw`` labeller in it, together with an ASE ``reference``, a property other than
    :data:`LABELLED_REFERENCE_PROPERTIES`, and what ``LabellingWorkChain`` refuses of the volume
    points (a pseudopotential family without an element of the structure, cutoffs below its
    recommendation, an unknown protocol; see :func:`~aiida_mlip.workflows.pw_labels.validate_pw_inputs`).
    """
    from aiida_mlip.workflows.pw_labels import validate_pw_inputs

    labelling = inputs.get("reference_labelling") or {}
    if not labelling:
        return None
    if not labelling.get("pw"):
        return "`reference_labelling` needs its `pw` namespace (code, pseudo_family)"
    if inputs.get("reference") is not None:
        return "two references given: either `reference` (an ASE calculator) or `reference_labelling` (pw.x)"
    other = [name for name in settings.properties if name not in LABELLED_REFERENCE_PROPERTIES]
    if other:
        return (
            f"a pw reference supports: {', '.join(LABELLED_REFERENCE_PROPERTIES)} (asked for {', '.join(other)} "
            "too; validate those against an ASE reference or none)"
        )
    points = _points(inputs["structure"], settings.to_dict())
    message = validate_pw_inputs(points, labelling["pw"])
    return f"pw reference: {message}" if message else None
