"""Random structure search: random packings relaxed with the committee of the current iteration.

In the spirit of ab initio random structure searching (AIRSS; C. J. Pickard and R. J. Needs,
J. Phys.: Condens. Matter 23, 053201 (2011)), with the learned potential in place of DFT:

1. a random cell (:func:`random_cell`): cell lengths and angles drawn at random (angles within
   60-120 degrees), kept when the ratio of its largest to its smallest width (distance between
   opposite faces) is at most ``max_aspect``, scaled to ``volume_per_atom`` times the atoms;
2. a random packing (:func:`random_packing`): the atoms at uniformly random points of the cell, a
   point rejected when it is closer to an atom placed before than the pair's least distance (hard
   spheres; by default ``radius_factor`` (0.9) times the sum of the two covalent radii);
3. a relaxation (:func:`relax`): FIRE (Bitzek et al., Phys. Rev. Lett. 97, 170201 (2006)) of the
   positions (and of the cell at zero pressure with ``cell``) with the committee mean, until every
   atomic force is below ``fmax`` or after ``steps`` steps. With ``repulsion`` k > 0 a soft hard core
   is added to the committee during it (AIRSS's minimum separation, MINSEP): every pair closer than
   its least distance d adds E = k/2 (d - r)^2 (:class:`MinimumSeparation`), so that a committee
   without short-range repulsion (trained on bulk only) cannot pull atoms onto each other.

The relaxed structures sit in the committee's own minima, where spurious minima and environments
it never saw show up: a large committee force deviation there is what the exploration looks for,
so a relaxation whose deviation blew up, or that exploded (a non-finite energy, force or position,
two atoms closer than half their least distance, a cell volume off by a factor of 4), is kept,
not dropped: an exploded one as its last sane configuration, flagged ``exploded``.

No AiiDA import. Units: Angstrom, Angstrom^3/atom, eV, eV/Angstrom.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes, all_properties
from ase.cell import Cell
from ase.data import atomic_numbers, covalent_radii
from ase.geometry import get_distances

from .generator_settings import RandomSettings

__all__ = (
    "MinimumSeparation",
    "element_counts",
    "pair_repulsion",
    "random_cell",
    "random_packing",
    "random_structures",
    "relax",
)

#: Tries to place one atom before the packing starts again in a new cell, and packings before giving up.
PLACEMENT_TRIES = 1000
PLACEMENT_BATCH = 100
PACKING_TRIES = 50


def element_counts(composition: dict[str, float], n_atoms: int) -> dict[str, int]:
    """Exact counts of ``n_atoms`` at ``composition`` (element -> fraction): ``floor(fraction * N)``
    each, the largest remainders get the atoms left over. Elements with no atom are left out."""
    elements = sorted(composition)
    exact = np.array([composition[e] * n_atoms for e in elements])
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: n_atoms - counts.sum()]:
        counts[index] += 1
    return {e: int(c) for e, c in zip(elements, counts, strict=True) if c}


def random_cell(rng: np.random.Generator, volume: float, max_aspect: float) -> Cell:
    """A random cell of ``volume`` (Angstrom^3) whose widths differ by at most a factor ``max_aspect``."""
    for _ in range(10000):
        lengths = rng.uniform(1.0, max_aspect, 3)
        angles = rng.uniform(60.0, 120.0, 3)
        cell = Cell.fromcellpar([*lengths, *angles])
        current = cell.volume
        if not (np.isfinite(cell.array).all() and current > 1e-3 * np.prod(lengths)):
            continue  # angles that make no cell
        rows = cell.array
        widths = [current / np.linalg.norm(np.cross(rows[(i + 1) % 3], rows[(i + 2) % 3])) for i in range(3)]
        if max(widths) <= max_aspect * min(widths) + 1e-12:
            return Cell(rows * (volume / current) ** (1.0 / 3.0))
    raise RuntimeError(f"no random cell with widths within a factor {max_aspect}")  # pragma: no cover


def _least_distances(symbols: list[str], min_distance: float | None, radius_factor: float) -> np.ndarray:
    """(N, N) least distance of every pair, Angstrom."""
    if min_distance is not None:
        return np.full((len(symbols), len(symbols)), float(min_distance))
    radii = np.array([covalent_radii[atomic_numbers[s]] for s in symbols])
    return radius_factor * (radii[:, None] + radii[None, :])


def random_packing(
    symbols: list[str],
    volume: float,
    rng: np.random.Generator,
    min_distance: float | None = None,
    radius_factor: float = 0.9,
    max_aspect: float = 2.0,
) -> Atoms:
    """Atoms ``symbols`` (in a random order) at random points of a random periodic cell of ``volume``.

    No two atoms are closer than ``min_distance`` (Angstrom), or by default ``radius_factor`` times
    the sum of their covalent radii (periodic images included). Up to :data:`PLACEMENT_TRIES`
    points are tried per atom (the first free one of each batch of :data:`PLACEMENT_BATCH` is
    taken; all are uniform over the cell); after that the packing starts again in a new cell, at
    most :data:`PACKING_TRIES` times. ``info["min_distance"]`` holds the least pair distance asked
    for, Angstrom.

    Raises
    ------
    ValueError
        No packing found: the volume is too small for the least distances.
    """
    order = [symbols[i] for i in rng.permutation(len(symbols))]
    least = _least_distances(order, min_distance, radius_factor)
    for _ in range(PACKING_TRIES):
        cell = random_cell(rng, volume, max_aspect)
        placed: list[np.ndarray] = []
        for index in range(len(order)):
            for _ in range(PLACEMENT_TRIES // PLACEMENT_BATCH):  # candidate points a batch at a time
                points = rng.random((PLACEMENT_BATCH, 3)) @ cell.array
                if not placed:
                    placed.append(points[0])
                    break
                _, distances = get_distances(points, np.array(placed), cell=cell, pbc=True)
                free = np.flatnonzero((distances >= least[index, :index]).all(axis=1))
                if len(free):
                    placed.append(points[free[0]])
                    break
            else:
                break  # this atom found no room: a new cell
        if len(placed) == len(order):
            atoms = Atoms(order, positions=np.array(placed), cell=cell, pbc=True)
            atoms.info["min_distance"] = round(float(least.min()), 6)
            return atoms
    raise ValueError(
        f"could not pack {len(order)} atoms {float(least.min()):.2f} Angstrom or more apart in "
        f"{volume:.1f} Angstrom^3 ({volume / len(order):.1f} per atom) in {PACKING_TRIES} random cells: "
        "raise volume_per_atom or lower min_distance (radius_factor)"
    )


def pair_repulsion(atoms: Atoms, least: np.ndarray, k: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Soft hard core: E = sum over pairs closer than their least distance d of k/2 (d - r)^2.

    Parameters
    ----------
    atoms
        Positions, cell and periodicity (periodic images count).
    least
        (N, N) least distance of every pair of atoms (by index), Angstrom.
    k
        Stiffness, eV/Angstrom^2.

    Returns
    -------
    (float, ndarray, ndarray)
        Energy (eV), forces (N, 3; eV/Angstrom) and stress (Voigt xx yy zz yz xz xy, eV/Angstrom^3,
        ASE's sign: 1/V dE/dstrain; zeros without a 3-d periodic cell).
    """
    from ase.neighborlist import neighbor_list

    forces, stress = np.zeros((len(atoms), 3)), np.zeros(6)
    if k == 0 or len(atoms) == 0:
        return 0.0, forces, stress
    first, second, r, vectors = neighbor_list("ijdD", atoms, float(np.max(least)))
    overlap = least[first, second] - r
    close = overlap > 0
    first, second, r, vectors, overlap = first[close], second[close], r[close], vectors[close], overlap[close]
    energy = 0.25 * k * float(np.sum(overlap**2))  # every pair is listed twice (i, j) and (j, i)
    dedr = -k * overlap  # dE/dr of one pair
    pair_forces = (0.5 * dedr / r)[:, None] * vectors  # half: the pair's other listing adds the rest
    np.add.at(forces, first, pair_forces)
    np.add.at(forces, second, -pair_forces)
    if atoms.pbc.all() and atoms.get_volume() > 0:
        virial = np.einsum("p,pa,pb->ab", 0.5 * dedr / r, vectors, vectors) / atoms.get_volume()
        stress = virial[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return energy, forces, stress


class MinimumSeparation(Calculator):
    """``calculator`` plus :func:`pair_repulsion` (stiffness ``k``, eV/Angstrom^2, least distances
    ``least``): energy, forces and stress summed; the wrapped calculator's results that are no ASE
    property (a committee's spread) passed on, ``repulsion_energy`` (eV) added."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, calculator: Calculator, least: np.ndarray, k: float) -> None:
        super().__init__()
        self.calculator, self.least, self.k = calculator, np.asarray(least, dtype=float), float(k)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        energy, forces, stress = pair_repulsion(self.atoms, self.least, self.k)
        inner = self.atoms.copy()
        inner.calc = self.calculator
        self.results = {
            "energy": float(inner.get_potential_energy()) + energy,
            "forces": np.asarray(inner.get_forces()) + forces,
            "repulsion_energy": energy,
        }
        self.results["free_energy"] = self.results["energy"]
        if "stress" in properties:
            self.results["stress"] = np.asarray(inner.get_stress()) + stress
        for key, value in self.calculator.results.items():
            if key not in all_properties:  # its energy, forces, stress are summed above, not passed on
                self.results.setdefault(key, value)


def _sane(atoms: Atoms, least: float, volume: float, cell: bool) -> bool:
    """Finite energy, forces and positions; no pair closer than half ``least``; volume within 4x."""
    finite = np.isfinite(atoms.positions).all() and np.isfinite(atoms.get_potential_energy())
    if not (finite and np.isfinite(atoms.get_forces()).all()):
        return False
    if cell and not (0.25 * volume <= atoms.get_volume() <= 4.0 * volume):
        return False
    if least <= 0 or (len(atoms) < 2 and not atoms.pbc.any()):
        return True
    from ase.neighborlist import neighbor_list

    return not len(neighbor_list("d", atoms, 0.5 * least))


def relax(
    atoms: Atoms,
    calculator: Calculator,
    steps: int,
    fmax: float,
    cell: bool = False,
    least: float | np.ndarray = 0.0,
    repulsion: float = 0.0,
) -> tuple[Atoms, dict[str, Any]]:
    """Relax ``atoms`` with ``calculator`` (FIRE; positions, and the cell with ``cell``); a copy.

    Parameters
    ----------
    atoms
        The start (not modified).
    calculator
        The potential; a committee calculator's spread is read at the end.
    steps
        Largest number of FIRE steps (0: the start is only evaluated).
    fmax
        Every atomic force below it ends the relaxation, eV/Angstrom.
    cell
        Relax the cell too, at zero pressure (``FrechetCellFilter``).
    least
        The packing's least pair distance, Angstrom, one for all pairs or (N, N) per pair of atoms: a
        pair closer than half the smallest is an explosion.
    repulsion
        Stiffness k of the soft hard core added during the relaxation (:class:`MinimumSeparation`),
        eV/Angstrom^2; 0: none.

    Returns
    -------
    (Atoms, dict)
        The relaxed structure (no calculator) and its record: ``steps``, ``converged``,
        ``exploded``, ``start_energy_per_atom`` and ``energy_per_atom`` (eV/atom), ``max_force``
        (largest atomic force, eV/Angstrom), ``volume_per_atom`` (Angstrom^3/atom, of the relaxed
        cell), ``max_force_deviation`` (the committee's, eV/Angstrom, ``None`` for a calculator
        without a committee spread), ``repulsion_energy`` (eV, of the whole relaxed structure;
        included in ``energy_per_atom`` and its forces in ``max_force``: those are of the potential
        relaxed on, ``calculator`` plus the repulsion) and ``repulsion_active`` (a pair closer than
        its least distance there).
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    if repulsion < 0:
        raise ValueError(f"repulsion must be >= 0 eV/Angstrom^2, not {repulsion}")
    pairs = np.broadcast_to(np.asarray(least, dtype=float), (len(atoms), len(atoms)))
    smallest = float(pairs.min()) if len(atoms) else 0.0
    potential = MinimumSeparation(calculator, pairs, repulsion) if repulsion > 0 else calculator
    current = atoms.copy()
    current.calc = potential
    start_energy = float(current.get_potential_energy())
    volume = current.get_volume()
    good, exploded, converged, taken = current.copy(), False, False, 0
    if steps > 0:
        optimiser = FIRE(FrechetCellFilter(current) if cell else current, logfile=None)
        for converged in optimiser.irun(fmax=fmax, steps=steps):  # noqa: B007 - the last one counts
            if not _sane(current, smallest, volume, cell):
                exploded, converged = True, False
                break
            good, taken = current.copy(), optimiser.nsteps
    final = good.copy()
    final.calc = potential  # evaluate the kept configuration once more: its energy, forces, spread
    forces = np.asarray(final.get_forces())
    max_force = float(np.linalg.norm(forces, axis=1).max()) if len(final) else 0.0
    deviation = potential.results.get("max_force_deviation")
    repulsion_energy = float(potential.results.get("repulsion_energy", 0.0))
    record = {
        "steps": int(taken),
        "converged": bool(converged) or (steps == 0 and max_force < fmax),
        "exploded": exploded,
        "start_energy_per_atom": round(start_energy / len(final), 8),
        "energy_per_atom": round(float(final.get_potential_energy()) / len(final), 8),
        "max_force": round(max_force, 8),
        "volume_per_atom": round(float(final.get_volume()) / len(final), 6),
        "max_force_deviation": None if deviation is None else round(float(deviation), 8),
        "repulsion_energy": round(repulsion_energy, 8),
        "repulsion_active": repulsion_energy > 0,
    }
    final.calc = None
    return final, record


def random_structures(
    parent: Atoms,
    settings: RandomSettings,
    rng: np.random.Generator,
    calculator: Calculator | None = None,
) -> list[Atoms]:
    """``settings.structures`` random packings of the parent's (or the given) composition, relaxed.

    Parameters
    ----------
    parent
        Gives the composition, the atom count and the volume per atom unless the settings do.
    settings
        The ``random`` block.
    rng
        The random stream of the packings.
    calculator
        The potential the packings are relaxed with (the committee of the current iteration);
        required unless ``settings.steps`` is 0.

    Returns
    -------
    list of Atoms
        ``info``: ``composition`` (counts), ``volume_per_atom`` (Angstrom^3/atom of the packing),
        ``min_distance`` (Angstrom), ``cell_relaxed`` and, when relaxed or evaluated, the record of
        :func:`relax` under ``relaxation``.

    Raises
    ------
    ValueError
        A relaxation without a calculator, or no packing (see :func:`random_packing`).
    """
    if settings.steps > 0 and calculator is None:
        raise ValueError("random structures are relaxed with the committee: give a calculator (or steps: 0)")
    n_atoms = settings.atoms or len(parent)
    if settings.composition is not None:
        counts = element_counts(settings.composition, n_atoms)
    else:
        symbols = parent.get_chemical_symbols()
        counts = element_counts({e: symbols.count(e) / len(symbols) for e in set(symbols)}, n_atoms)
    volume_per_atom = settings.volume_per_atom or parent.get_volume() / len(parent)
    if not math.isfinite(volume_per_atom) or volume_per_atom <= 0:
        raise ValueError("the parent has no volume (not a periodic cell): give volume_per_atom")
    symbols = [element for element, count in counts.items() for _ in range(count)]
    images = []
    for _ in range(settings.structures):
        packing = random_packing(
            symbols,
            volume_per_atom * n_atoms,
            rng,
            min_distance=settings.min_distance,
            radius_factor=settings.radius_factor,
            max_aspect=settings.max_aspect,
        )
        least = packing.info.pop("min_distance")
        pairs = _least_distances(
            packing.get_chemical_symbols(), settings.min_distance, settings.radius_factor
        )
        details: dict[str, Any] = {
            "composition": counts,
            "volume_per_atom": round(float(volume_per_atom), 6),
            "min_distance": least,
            "cell_relaxed": settings.cell,
        }
        if calculator is not None:
            packing, details["relaxation"] = relax(
                packing,
                calculator,
                settings.steps,
                settings.fmax,
                cell=settings.cell,
                least=pairs,
                repulsion=settings.repulsion,
            )
        images.append((packing, details))
    from .generators import _tagged

    return [_tagged(atoms, "random", **details) for atoms, details in images]
