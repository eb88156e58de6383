"""Quantum ESPRESSO (pw.x) labels: the pieces of the ``pw`` labeller of ``LabellingWorkChain``.

One ``PwBaseWorkChain`` (aiida-quantumespresso, with its SCF restart handlers) labels one structure.
Its inputs come from ``PwBaseWorkChain.get_builder_from_protocol`` with the layers of
``protocols/pw_labels.yaml`` (our defaults < the user's overrides < what a label needs: an SCF with
forces and stress). The plane-wave cutoffs are the largest recommended by the pseudopotential family
over *all* elements of the set to label, so every label of a dataset shares one basis and one
``label_settings``.

Units. aiida-quantumespresso reads energy, forces and stress of an SCF at full precision from
pw.x's XML file (Hartree atomic units) and reports them in eV, eV/Angstrom and GPa, converted with
the constants of ``qe_tools`` (``hartree_to_ev``, ``bohr_to_ang``, ``au_gpa``). :func:`pw_label`
undoes exactly those factors and converts with ASE's ``create_units("2006")``, the constants
``ase.io.read(..., format="espresso-out")`` uses: a ``pw`` label then agrees with ASE's reading of
the same pw.x run to the digits pw.x prints (without this, the two constant sets differ in the 8th
digit: 1e-5 eV on a 1000 eV total energy). The stress becomes Voigt (xx, yy, zz, yz, xz, xy) in
eV/Angstrom^3 with ASE's sign, the opposite of the one pw.x prints (pw.x: positive = compressed;
ASE: negative = compressed).

The energy is pw.x's ``!    total energy``, which with smearing is the Mermin free energy
(E - TS), the quantity the forces are derivatives of.

Reference energies of isolated atoms. The potentials of :mod:`aiida_mlip.potentials` fit one
reference energy per element by least squares over the compositions of the training set, so
isolated-atom DFT runs are not needed. Someone who wants them anyway labels
:func:`isolated_atom` (one atom in a large cubic box, spin-polarised settings through ``overrides``
when the atom is magnetic) like any other structure; note that the total energy of a lone atom
converges slowly with the box size and needs ``nspin: 2`` for most elements.
"""

from __future__ import annotations

import copy
import pathlib

import numpy as np
from aiida import orm
from aiida.common import exceptions
from aiida.engine import calcfunction
from ase import Atoms
from ase.units import create_units

from aiida_mlip.codes import MPIPROCS_EXTRA
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.engine.label import closest_atoms, overlap_message
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.workflows.protocol import load_protocol_file, recursive_merge

__all__ = (
    "PROTOCOL_FILE",
    "closest_atoms",
    "min_interatomic_distance",
    "get_pw_builder",
    "isolated_atom",
    "load_pseudo_family",
    "pw_job_options",
    "pw_label",
    "pw_label_settings",
    "pw_overrides",
    "split_into_structures",
    "validate_pw_inputs",
)

PROTOCOL_FILE = pathlib.Path(__file__).parent / "protocols" / "pw_labels.yaml"

#: The constants pw.x and ``ase.io.espresso`` use (CODATA 2006).
_QE_UNITS = create_units("2006")


def _protocol() -> dict:
    return load_protocol_file(PROTOCOL_FILE.name)


# ---------------------------------------------------------------------------------------- checks
def min_interatomic_distance() -> float:
    """Atoms closer than this (Angstrom, periodic images included) make a structure unfit to label."""
    return float(_protocol()["min_interatomic_distance"])


def load_pseudo_family(label: str):
    """Return the aiida-pseudo family ``label``.

    Raises
    ------
    ValueError
        If no family has that label.
    """
    from aiida.plugins import GroupFactory

    family_class = GroupFactory("pseudo.family")
    try:
        return orm.QueryBuilder().append(family_class, filters={"label": label}).one()[0]
    except exceptions.NotExistent as exception:
        raise ValueError(
            f"no pseudopotential family {label!r} is installed: install one with `aiida-mlip setup pseudos` "
            "or `aiida-pseudo install`"
        ) from exception


def _cutoff_overrides(overrides: dict) -> dict:
    system = overrides.get("pw", {}).get("parameters", {}).get("SYSTEM", {})
    return {key: system[key] for key in ("ecutwfc", "ecutrho") if key in system}


def family_cutoffs(family, elements: list[str]) -> tuple[float, float] | None:
    """Largest recommended ``(ecutwfc, ecutrho)`` in Ry over ``elements``; ``None`` if the family has none."""
    if not hasattr(family, "get_recommended_cutoffs"):
        return None
    try:
        return family.get_recommended_cutoffs(elements=tuple(elements), unit="Ry")
    except ValueError:
        return None


def validate_pw_inputs(structures: StructureSetData, inputs: dict) -> str | None:
    """Check a ``pw`` namespace against the structures it will label; return an error message or ``None``.

    Refused: an unknown protocol or family, an element the family has no pseudopotential for, a
    cutoff override below the family's recommendation (or no cutoffs at all), ``options.withmpi``
    against the code's ``with_mpi``, and a frame with two atoms closer than
    ``min_interatomic_distance`` (Angstrom) of the protocol file.
    """
    from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

    protocol = inputs["protocol"].value if "protocol" in inputs else "fast"
    if protocol not in PwBaseWorkChain.get_available_protocols():
        return (
            f"unknown protocol {protocol!r} of PwBaseWorkChain; choose one of "
            f"{', '.join(PwBaseWorkChain.get_available_protocols())}"
        )
    try:
        family = load_pseudo_family(inputs["pseudo_family"].value)
    except ValueError as exception:
        return str(exception)
    elements = list(structures.elements)
    missing = [element for element in elements if element not in family.elements]
    if missing:
        return (
            f"pseudopotential family {family.label!r} has no pseudopotential for {', '.join(missing)} "
            f"(it covers {', '.join(sorted(family.elements))})"
        )
    overrides = inputs["overrides"].get_dict() if "overrides" in inputs else {}
    given = _cutoff_overrides(overrides)
    recommended = family_cutoffs(family, elements)
    if recommended is None and len(given) < 2:
        return (
            f"pseudopotential family {family.label!r} recommends no cutoffs: give both ecutwfc and ecutrho "
            "(Ry) in overrides['pw']['parameters']['SYSTEM']"
        )
    if recommended is not None:
        for key, value in zip(("ecutwfc", "ecutrho"), recommended, strict=True):
            if key in given and given[key] < value - 1e-8:
                return (
                    f"{key} = {given[key]} Ry in the overrides is below the {value:g} Ry that pseudopotential "
                    f"family {family.label!r} recommends for {', '.join(elements)}"
                )
    options = inputs["options"].get_dict() if "options" in inputs else {}
    code = inputs["code"]
    if code.with_mpi is not None and options.get("withmpi", code.with_mpi) != code.with_mpi:
        return (
            f"code {code.full_label} is registered with with_mpi={code.with_mpi} but options.withmpi is "
            f"{options['withmpi']}: drop withmpi from the options, or register the code again "
            "(`aiida-mlip setup pw --mpiprocs N`; N > 1 runs pw.x under mpirun)"
        )
    return overlap_message(structures.get_atoms(), min_interatomic_distance(), "pw.x")


# ------------------------------------------------------------------------------------- builders
def pw_overrides(family, elements: list[str], overrides: dict | None = None) -> dict:
    """Return the ``overrides`` for ``PwBaseWorkChain.get_builder_from_protocol``.

    Layers: ``defaults`` of the protocol file, then ``overrides`` (the user's), then ``enforced``;
    ``pseudo_family`` is the family's label, and ``ecutwfc``/``ecutrho`` (Ry) the user's or else the
    family's largest recommendation over ``elements`` (all elements of the set, not of one frame).
    """
    layers = recursive_merge(_protocol()["defaults"], overrides or {})
    layers = recursive_merge(layers, _protocol()["enforced"])
    layers["pseudo_family"] = family.label
    system = layers["pw"]["parameters"].setdefault("SYSTEM", {})
    recommended = family_cutoffs(family, elements)
    if recommended is not None:
        system.setdefault("ecutwfc", float(recommended[0]))
        system.setdefault("ecutrho", float(recommended[1]))
    return layers


#: OpenMPI refuses to start as root unless both are set (``mpirun --allow-run-as-root`` is the same).
MPI_AS_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def pw_job_options(code, options: dict | None = None) -> dict:
    """The ``metadata.options`` of every ``PwCalculation``: ``options`` completed with working MPI settings.

    What ``options`` gives wins. Otherwise the job runs ``mlip_mpiprocs`` processes (the code's
    extra, set by ``aiida-mlip setup pw --mpiprocs``), else the computer's
    ``default_mpiprocs_per_machine``, else one; ``withmpi`` is the code's ``with_mpi`` when it has
    one, else whether more than one process runs (a one-process job needs no ``mpirun``). A job that
    runs ``mpirun`` on a ``core.local`` computer as root gets OpenMPI's ``OMPI_ALLOW_RUN_AS_ROOT``
    variables, without which OpenMPI refuses to start (containers run as root).
    """
    import os

    options = copy.deepcopy(options or {})
    resources = options.setdefault("resources", {})
    resources.setdefault("num_machines", 1)
    if "num_mpiprocs_per_machine" not in resources and "tot_num_mpiprocs" not in resources:
        mpiprocs = (
            code.base.extras.get(MPIPROCS_EXTRA, None) or code.computer.get_default_mpiprocs_per_machine()
        )
        resources["num_mpiprocs_per_machine"] = int(mpiprocs or 1)
    processes = (
        resources.get("tot_num_mpiprocs") or resources["num_machines"] * resources["num_mpiprocs_per_machine"]
    )
    if "withmpi" not in options:
        options["withmpi"] = code.with_mpi if code.with_mpi is not None else processes > 1
    if options["withmpi"] and code.computer.transport_type == "core.local" and os.geteuid() == 0:
        environment = options.setdefault("environment_variables", {})
        for key, value in MPI_AS_ROOT.items():
            environment.setdefault(key, value)
    return options


def get_pw_builder(
    code, structure: orm.StructureData, overrides: dict, protocol: str = "fast", options: dict | None = None
):
    """Return a ``PwBaseWorkChain`` builder for one structure (``overrides`` from :func:`pw_overrides`).

    ``options`` (``resources``, ``max_wallclock_seconds`` in s, ``withmpi``...) go to the
    ``metadata.options`` of every ``PwCalculation``, completed by :func:`pw_job_options`.
    """
    from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

    return PwBaseWorkChain.get_builder_from_protocol(
        code, structure, protocol=protocol, overrides=overrides, options=pw_job_options(code, options)
    )


def pw_label_settings(builder, family, protocol: str) -> dict:
    """The ``label_settings`` every ``pw`` label of a dataset shares (code version added by :func:`pw_label`).

    Cutoffs in Ry, ``kpoints_distance`` in 1/Angstrom, ``degauss`` in Ry.
    """
    system = builder.pw.parameters.get_dict()["SYSTEM"]
    functional = family.base.extras.get("mlip_functional", None)
    settings = {
        "labeller": "quantumespresso.pw",
        "functional": functional or "see pseudo_family",
        "pseudo_family": family.label,
        "protocol": protocol,
        "ecutwfc": system["ecutwfc"],
        "ecutrho": system["ecutrho"],
        "kpoints_distance": builder.kpoints_distance.value if "kpoints_distance" in builder else None,
        "occupations": system.get("occupations"),
        "smearing": system.get("smearing"),
        "degauss": system.get("degauss"),
    }
    for key in ("nspin", "input_dft", "vdw_corr", "lda_plus_u"):
        if key in system:
            settings[key] = system[key]
    return settings


def isolated_atom(element: str, box: float = 12.0) -> Atoms:
    """One atom of ``element`` at the centre of a cubic, periodic box of side ``box`` Angstrom."""
    return Atoms(element, positions=[[box / 2] * 3], cell=[box] * 3, pbc=True)


# ------------------------------------------------------------------------------ calcfunctions
@calcfunction
def split_into_structures(structures: StructureSetData) -> dict:
    """One ``StructureData`` per frame, ``structure_00000``, ``structure_00001``... in order.

    Each keeps its frame's tag as the attribute ``config_type``.
    """
    frames = structures.get_frames()
    outputs = {}
    for index, atoms in enumerate(frames.to_atoms()):
        structure = orm.StructureData(ase=atoms)
        structure.base.attributes.set("config_type", str(frames.config_type[index]))
        outputs[f"structure_{index:05d}"] = structure
    return outputs


@calcfunction
def pw_label(
    structure: orm.StructureData,
    output_parameters: orm.Dict,
    output_trajectory: orm.TrajectoryData,
    label_settings: orm.Dict,
) -> DatasetData:
    """Turn the outputs of one pw.x SCF into a one-frame ``DatasetData``.

    Energy (eV) from ``output_parameters['energy']``, forces (eV/Angstrom) and stress from the last
    step of ``output_trajectory``, converted as the module docstring says. The frame's
    ``source_uuid`` is the ``PwCalculation`` that produced the outputs; ``label_settings`` gains
    ``code_version`` (pw.x's version as it printed it).
    """
    from qe_tools import CONSTANTS

    parameters = output_parameters.get_dict()
    energy = parameters["energy"] / CONSTANTS.ry_to_ev * _QE_UNITS["Ry"]
    forces = output_trajectory.get_array("forces")[-1] / (CONSTANTS.ry_to_ev / CONSTANTS.bohr_to_ang)
    forces = forces * _QE_UNITS["Ry"] / _QE_UNITS["Bohr"]
    stress = output_trajectory.get_array("stress")[-1] / CONSTANTS.au_gpa  # Hartree/bohr^3, as in the XML
    stress = -stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] * _QE_UNITS["Hartree"] / _QE_UNITS["Bohr"] ** 3
    atoms = structure.get_ase()
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"pw.x gave forces of shape {forces.shape} for {len(atoms)} atoms")
    calculation = output_parameters.creator
    frames = Frames(
        numbers=atoms.numbers,
        positions=atoms.positions,
        offsets=np.array([0, len(atoms)]),
        cells=atoms.cell.array[None],
        pbc=atoms.pbc[None],
        energy=np.array([energy]),
        forces=forces,
        stress=stress[None],
        source_uuid=np.array([calculation.uuid if calculation is not None else ""], dtype=object),
        config_type=np.array([structure.base.attributes.get("config_type", "")], dtype=object),
    )
    settings = dict(label_settings.get_dict(), code_version=parameters.get("creator_version", "unknown"))
    return DatasetData(frames=frames, label_settings=settings)
