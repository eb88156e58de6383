"""Phonons by finite displacements through phonopy: high-symmetry frequencies, band structure, DOS, a plot.

phonopy (A. Togo, J. Phys.: Condens. Matter 35, 353001 (2023)) generates the symmetry-distinct
displacements of a supercell of the (relaxed) structure; the calculator gives their forces; phonopy
builds the force constants and the dynamical matrix. The high-symmetry points and the band path are
the standard ones of the Bravais lattice of phonopy's primitive cell (W. Setyawan and S. Curtarolo,
Comput. Mater. Sci. 49, 299 (2010), as tabulated by ASE's ``Cell.bandpath``), in fractional
coordinates of the primitive reciprocal lattice.

Frequencies are in THz; an imaginary frequency is reported as a negative number, as phonopy does,
and every one below ``-imaginary_tolerance`` is listed in ``imaginary_modes``: a dynamically
unstable structure, or a potential that invents an instability, is never hidden.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pydantic
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.cell import Cell
from ase.dft.kpoints import parse_path_string

from aiida_mlip.plotting import in_default_style
from aiida_mlip.properties.checks import (
    PropertyInputError,
    check_supercell_width,
    perpendicular_widths,
    require_calculator,
    require_periodic,
    resolve_settings,
)
from aiida_mlip.properties.relax import RelaxSettings, prepare

__all__ = (
    "PhononResult",
    "PhononSettings",
    "band_ticks",
    "check_phonon_supercell",
    "displaced_supercells",
    "phonons",
    "plot_phonons",
    "special_points",
    "supercell_matrix",
)


class PhononSettings(RelaxSettings):
    """Settings of :func:`phonons` (block ``phonons``).

    Attributes
    ----------
    supercell
        Supercell of the input cell: three repeats ``[n1, n2, n3]`` or a 3x3 integer matrix.
    displacement
        Finite displacement, Angstrom.
    primitive
        phonopy's ``primitive_matrix``: ``"auto"`` (find the primitive cell), ``"P"``, ``"F"``,
        ``"I"``, ``"A"``, ``"C"`` or ``"R"``.
    band_points
        q-points per segment of the band path.
    mesh
        Gamma-centred q-point mesh of the DOS (tetrahedron method).
    imaginary_tolerance
        THz: frequencies below ``-imaginary_tolerance`` are reported as imaginary modes (smaller
        negative values at Gamma are the numerical noise of the acoustic sum rule).
    relax, fmax, relax_steps
        See :class:`~.relax.RelaxSettings`.
    """

    block = "phonons"

    supercell: list[int] | list[list[int]] = [3, 3, 3]
    displacement: float = pydantic.Field(0.01, gt=0, le=0.1)
    primitive: str = "auto"
    band_points: int = pydantic.Field(51, ge=2)
    mesh: list[int] = [20, 20, 20]
    imaginary_tolerance: float = pydantic.Field(0.05, ge=0)

    @pydantic.field_validator("supercell")
    @classmethod
    def _supercell_shape(cls, value):
        matrix = supercell_matrix(value)
        if round(abs(np.linalg.det(matrix))) < 1:
            raise ValueError(f"the supercell matrix {matrix.tolist()} is singular")
        return value


def supercell_matrix(supercell) -> np.ndarray:
    """``[n1, n2, n3]`` or a 3x3 list as a (3, 3) integer matrix; ``ValueError`` for any other shape."""
    matrix = np.array(supercell, dtype=int)
    if matrix.shape == (3,):
        matrix = np.diag(matrix)
    if matrix.shape != (3, 3):
        raise ValueError(f"supercell must be three repeats or a 3x3 matrix, got {supercell!r}")
    return matrix


def check_phonon_supercell(atoms: Atoms, supercell, cutoff: float | None) -> np.ndarray:
    """The supercell matrix of ``atoms``' cell, if it is at least twice ``cutoff`` (Angstrom) wide.

    Raises
    ------
    PropertyInputError
        A face-to-face width under ``2 * cutoff``; the message suggests repeats of this cell that fit.
    """
    matrix = supercell_matrix(supercell)
    try:
        check_supercell_width(matrix @ atoms.cell.array, cutoff)
    except PropertyInputError as error:
        repeats = np.ceil(2 * cutoff / perpendicular_widths(atoms.cell.array)).astype(int)
        raise PropertyInputError(f"{error} (e.g. supercell {repeats.tolist()} of this cell)") from None
    return matrix


def special_points(atoms: Atoms, primitive: str = "auto") -> tuple[list[str], int]:
    """The labels of the high-symmetry points :func:`phonons` reports for ``atoms``, and its number of branches.

    The points are those of the Bravais lattice of phonopy's primitive cell (``primitive``, see
    :class:`PhononSettings`) of the structure as given (the kernel relaxes it first, which keeps a
    lattice of higher symmetry); the branches are 3 x the atoms of that primitive cell. No force is
    computed.
    """
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    from phonopy.structure.cells import PrimitiveMatrixAutoDefaultWarning

    unitcell = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        scaled_positions=atoms.get_scaled_positions(),
    )
    with warnings.catch_warnings():  # only the primitive cell is wanted: the supercell's symmetry is moot
        warnings.simplefilter("ignore", PrimitiveMatrixAutoDefaultWarning)
        warnings.filterwarnings("ignore", ".*Point group symmetries of supercell", UserWarning)
        phonon = Phonopy(unitcell, supercell_matrix=np.eye(3, dtype=int), primitive_matrix=primitive)
    labels = list(Cell(phonon.primitive.cell).bandpath(npoints=0).special_points)
    return labels, 3 * len(phonon.primitive)


@dataclass
class PhononResult:
    """Phonons of one crystal.

    Attributes
    ----------
    atoms
        The structure (relaxed as the settings said), phonopy's unit cell.
    phonopy
        The :class:`phonopy.Phonopy` object with its force constants, to compute more.
    special_points
        ``{label: (3,)}`` fractional coordinates (primitive reciprocal lattice) of the
        high-symmetry points of the primitive cell's Bravais lattice (``G`` is Gamma).
    frequencies
        ``{label: (n_branches,)}`` THz at each high-symmetry point, ascending; negative = imaginary.
    band_path
        ASE's path string (e.g. ``GXWKGLUWLK,UX``): labels, ``,`` a break.
    band_distances, band_frequencies
        Per segment: (n,) path length in 1/Angstrom (phonopy's, 2 pi omitted) and (n, n_branches) THz.
    band_labels
        Labels of the segments' end points, in phonopy's order.
    dos_frequencies, dos
        (m,) THz and states/THz per primitive cell.
    imaginary_modes
        ``(where, q, branch, frequency THz)`` of every frequency below ``-imaginary_tolerance``
        on the high-symmetry points (``where`` their label), the band path (``"band"``) and the DOS
        mesh (``"mesh"``).
    plot
        Path of the PNG, if one was written.
    """

    atoms: Atoms = field(repr=False)
    phonopy: object = field(repr=False)
    special_points: dict[str, np.ndarray]
    frequencies: dict[str, np.ndarray]
    band_path: str
    band_distances: list[np.ndarray] = field(repr=False)
    band_frequencies: list[np.ndarray] = field(repr=False)
    band_labels: list[str] = field(repr=False)
    dos_frequencies: np.ndarray = field(repr=False)
    dos: np.ndarray = field(repr=False)
    imaginary_modes: list[tuple[str, tuple[float, float, float], int, float]]
    plot: str | None = None

    @property
    def has_imaginary_modes(self) -> bool:
        return bool(self.imaginary_modes)

    def scalars(self) -> dict[str, float]:
        """``{label}_{branch}`` (THz, branches from 1 in ascending order) at every high-symmetry point, and ``min_frequency``."""
        values = {
            f"{label}_{branch + 1}": float(value)
            for label, frequencies in self.frequencies.items()
            for branch, value in enumerate(frequencies)
        }
        values["min_frequency"] = float(min(np.min(f) for f in self.band_frequencies))
        return values


def _to_ase(cell) -> Atoms:
    return Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)


def _imaginary(where: str, qpoints, frequencies, tolerance: float) -> list:
    return [
        (where, tuple(float(x) for x in qpoints[i]), int(branch), float(frequencies[i, branch]))
        for i, branch in zip(*np.nonzero(frequencies < -tolerance), strict=True)
    ]


def _displaced(structure: Atoms, settings: PhononSettings, matrix: np.ndarray):
    """A ``Phonopy`` object of ``structure`` with its finite displacements generated."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    from phonopy.structure.cells import PrimitiveMatrixAutoDefaultWarning

    unitcell = PhonopyAtoms(
        symbols=structure.get_chemical_symbols(),
        cell=structure.cell.array,
        scaled_positions=structure.get_scaled_positions(),
    )
    with warnings.catch_warnings():  # "auto" is asked for here, not defaulted to
        warnings.simplefilter("ignore", PrimitiveMatrixAutoDefaultWarning)
        phonon = Phonopy(unitcell, supercell_matrix=matrix, primitive_matrix=settings.primitive)
    phonon.generate_displacements(distance=settings.displacement)
    return phonon


def displaced_supercells(atoms: Atoms, settings: PhononSettings | dict | None = None) -> list[Atoms]:
    """The supercells with one displaced atom each that :func:`phonons` computes forces on.

    Of ``atoms`` as given (not relaxed first, unlike :func:`phonons`); copies without calculator.
    """
    settings = resolve_settings(PhononSettings, settings)
    require_periodic(atoms, "phonons")
    phonon = _displaced(atoms, settings, supercell_matrix(settings.supercell))
    return [_to_ase(displaced) for displaced in phonon.supercells_with_displacements]


def phonons(
    atoms: Atoms,
    calculator: Calculator | None = None,
    settings: PhononSettings | dict | None = None,
    cutoff: float | None = None,
    plot: str | os.PathLike | None = None,
) -> PhononResult:
    """Finite-displacement phonons of a crystal through phonopy.

    Parameters
    ----------
    atoms
        A periodic crystal (the unit cell the supercell repeats); not modified.
    calculator
        ASE calculator with forces (eV/Angstrom); default ``atoms.calc``.
    settings
        :class:`PhononSettings` or a mapping of its keys.
    cutoff
        The potential's cutoff, Angstrom: the supercell must be at least twice as wide. Default:
        the calculator's ``cutoff`` attribute if it has one (the committee calculator does), else
        no check.
    plot
        Write the band structure and DOS as a PNG here.

    Returns
    -------
    PhononResult
        Frequencies in THz (negative = imaginary).

    Raises
    ------
    PropertyInputError
        A structure not periodic in 3D, a supercell narrower than twice the cutoff, or bad settings.
    """
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    settings = resolve_settings(PhononSettings, settings)
    require_periodic(atoms, "phonons")
    calculator = require_calculator(atoms, calculator)
    cutoff = cutoff if cutoff is not None else getattr(calculator, "cutoff", None)
    matrix = check_phonon_supercell(atoms, settings.supercell, cutoff)
    structure, calculator = prepare(atoms, calculator, settings)

    phonon = _displaced(structure, settings, matrix)
    forces = []
    for displaced in phonon.supercells_with_displacements:
        image = _to_ase(displaced)
        image.calc = calculator
        forces.append(image.get_forces())
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()

    bandpath = Cell(phonon.primitive.cell).bandpath(npoints=0)
    special = {label: np.array(q, dtype=float) for label, q in bandpath.special_points.items()}
    at_points = phonon.run_qpoints(list(special.values())).frequencies
    frequencies = {label: np.sort(f) for label, f in zip(special, at_points, strict=True)}
    segments = parse_path_string(bandpath.path)
    qpoints, connections = get_band_qpoints_and_path_connections(
        [[special[label] for label in segment] for segment in segments], npoints=settings.band_points
    )
    labels = [label for segment in segments for label in segment]
    phonon.run_band_structure(qpoints, path_connections=connections, labels=labels)
    band = phonon.get_band_structure_dict()
    phonon.run_mesh(settings.mesh, is_gamma_center=True)
    phonon.run_total_dos()
    dos = phonon.get_total_dos_dict()
    mesh = phonon.get_mesh_dict()

    tolerance = settings.imaginary_tolerance
    imaginary = []
    for label, q in special.items():
        imaginary += _imaginary(label, [q], frequencies[label][None, :], tolerance)
    for q, f in zip(band["qpoints"], band["frequencies"], strict=True):
        imaginary += _imaginary("band", q, f, tolerance)
    imaginary += _imaginary("mesh", mesh["qpoints"], mesh["frequencies"], tolerance)

    result = PhononResult(
        atoms=structure,
        phonopy=phonon,
        special_points=special,
        frequencies=frequencies,
        band_path=bandpath.path,
        band_distances=[np.asarray(d) for d in band["distances"]],
        band_frequencies=[np.asarray(f) for f in band["frequencies"]],
        band_labels=labels,
        dos_frequencies=np.asarray(dos["frequency_points"]),
        dos=np.asarray(dos["total_dos"]),
        imaginary_modes=imaginary,
    )
    if plot is not None:
        result.plot = plot_phonons(result, plot)
    return result


def band_ticks(band_path: str, band_distances: list[np.ndarray]) -> tuple[list[float], list[str]]:
    """Positions (path distance) and labels (``Γ`` for ``G``; ``U|K`` at a break) of the special points of a band path."""
    ticks, names = [], []
    segments = parse_path_string(band_path)
    ends = [(segment[i], segment[i + 1]) for segment in segments for i in range(len(segment) - 1)]
    for (start, end), distances in zip(ends, band_distances, strict=True):
        for position, label in ((distances[0], start), (distances[-1], end)):
            label = "Γ" if label == "G" else label
            if ticks and abs(ticks[-1] - position) < 1e-9:
                if label not in names[-1].split("|"):
                    names[-1] = f"{names[-1]}|{label}"
            else:
                ticks.append(float(position))
                names.append(label)
    return ticks, names


@in_default_style
def plot_phonons(result: PhononResult, path: str | os.PathLike) -> str:
    """Write the band structure (THz, imaginary modes below zero) and the DOS side by side as a PNG; return the path.

    Uses a bare matplotlib ``Figure`` (Agg canvas): no pyplot state, no display needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(figure)
    bands, density = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1], "wspace": 0.05})
    for distances, frequencies in zip(result.band_distances, result.band_frequencies, strict=True):
        bands.plot(distances, frequencies, color="C0", linewidth=1)
    ticks, names = band_ticks(result.band_path, result.band_distances)
    for tick in ticks:
        bands.axvline(tick, color="0.7", linewidth=0.5)
    bands.axhline(0, color="0.3", linewidth=0.5)
    bands.set_xticks(ticks, names)
    bands.set_xlim(ticks[0], ticks[-1])
    bands.set_ylabel("frequency (THz); < 0: imaginary")
    density.plot(result.dos, result.dos_frequencies, color="C0")
    density.set_xlabel("DOS (states/THz)")
    density.set_xlim(left=0)
    if result.has_imaginary_modes:
        bands.set_title(f"{len(result.imaginary_modes)} imaginary modes", color="C3")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return str(path)
