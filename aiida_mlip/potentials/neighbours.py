"""Neighbour lists: all pairs closer than a cutoff, with periodic images, and a Verlet-skin cache.

The lists are full (each pair in both directions), which is what the descriptor of
:mod:`aiida_mlip.potentials.descriptor` sums over. ``vesin`` (a cell-list code in C++) computes them
when it is installed; ASE's ``primitive_neighbor_list`` otherwise (about 20 times slower).
"""

from __future__ import annotations

import numpy as np
from ase.neighborlist import primitive_neighbor_list

try:  # pragma: no cover - depends on the environment
    from vesin import NeighborList as _VesinNeighbourList
except ImportError:  # pragma: no cover
    _VesinNeighbourList = None

__all__ = ("VerletList", "minimum_distance", "neighbour_list", "pad_neighbours")


def neighbour_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return all ordered pairs ``(i, j)`` with ``|r_j - r_i + S . cell| < cutoff``.

    Parameters
    ----------
    positions : (N, 3)
        Cartesian positions, Angstrom.
    cell : (3, 3)
        Cell vectors as rows, Angstrom.
    pbc : (3,) bool
        Periodic directions.
    cutoff
        Angstrom.

    Returns
    -------
    centre, neighbour : (E,) int64
    shifts : (E, 3) float64
        Cartesian image shift ``S . cell`` of each pair, Angstrom: the pair vector is
        ``positions[neighbour] - positions[centre] + shifts``.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if _VesinNeighbourList is not None:
        calculator = _VesinNeighbourList(cutoff=float(cutoff), full_list=True)
        centre, neighbour, images = calculator.compute(
            points=positions, box=cell, periodic=pbc, quantities="ijS"
        )
    else:  # pragma: no cover
        centre, neighbour, images = primitive_neighbor_list("ijS", pbc, cell, positions, float(cutoff))
    shifts = images.astype(np.float64) @ cell
    return centre.astype(np.int64), neighbour.astype(np.int64), shifts


class VerletList:
    """A neighbour list built with ``cutoff + skin`` and reused while no atom moved more than half the skin.

    Pairs are kept as padded neighbour slots with their image shifts (:func:`pad_neighbours`); the
    caller recomputes the pair vectors from the current positions. Pairs beyond the cutoff but
    within the skin stay in the list: the descriptor's radial functions vanish there. The list is
    rebuilt when the cell, the periodicity or the number of atoms change.

    Parameters
    ----------
    cutoff
        Angstrom.
    skin
        Angstrom; 0 rebuilds the list on every call.
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        if skin < 0:
            raise ValueError(f"the Verlet skin must be >= 0 Angstrom, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0
        self._reference: np.ndarray | None = None
        self._cell: np.ndarray | None = None
        self._pbc: np.ndarray | None = None
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None

    def _valid(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
        if self._pairs is None or self.skin == 0 or self._reference.shape != positions.shape:
            return False
        if not (np.array_equal(cell, self._cell) and np.array_equal(pbc, self._pbc)):
            return False
        displacement = np.max(np.einsum("ij,ij->i", positions - self._reference, positions - self._reference))
        return bool(displacement < (0.5 * self.skin) ** 2)

    def update(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``neighbours`` (N, M) and ``slot_shifts`` (N, M, 3) (see :func:`pad_neighbours`).

        They hold every pair within the cutoff, and possibly some within ``cutoff + skin``.
        """
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.array(cell, dtype=np.float64)
        pbc = np.array(pbc, dtype=bool)
        if not self._valid(positions, cell, pbc):
            reach = self.cutoff + self.skin
            centre, neighbour, shifts = neighbour_list(positions, cell, pbc, reach)
            self._pairs = pad_neighbours(centre, neighbour, shifts, len(positions), 2 * reach + 1.0)
            self._reference = positions.copy()
            self._cell, self._pbc = cell, pbc
            self.builds += 1
        return self._pairs


def pad_neighbours(
    centre: np.ndarray, neighbour: np.ndarray, shifts: np.ndarray, n_atoms: int, far: float
) -> tuple[np.ndarray, np.ndarray]:
    """Arrange a pair list as ``M`` neighbour slots per atom (``M`` the largest neighbour count).

    Parameters
    ----------
    centre, neighbour : (E,) int
        Pair list (see :func:`neighbour_list`).
    shifts : (E, 3)
        Cartesian shift of each pair, Angstrom.
    n_atoms
        Number of atoms ``N``.
    far
        Length (Angstrom) of the pair vector of an unused slot: its neighbour is the atom itself and
        its shift ``(far, 0, 0)``, so that it lies beyond the cutoff when ``far`` exceeds it.

    Returns
    -------
    neighbours : (N, M) int64
    slot_shifts : (N, M, 3) float64
    """
    order = np.argsort(centre, kind="stable")
    centre, neighbour, shifts = centre[order], neighbour[order], shifts[order]
    counts = np.bincount(centre, minlength=n_atoms)
    slots = max(int(counts.max()) if len(counts) else 0, 1)
    starts = np.cumsum(counts) - counts
    slot = np.arange(len(centre)) - starts[centre]
    neighbours = np.repeat(np.arange(n_atoms, dtype=np.int64)[:, None], slots, axis=1)
    neighbours[centre, slot] = neighbour
    slot_shifts = np.zeros((n_atoms, slots, 3))
    slot_shifts[..., 0] = far
    slot_shifts[centre, slot] = shifts
    return neighbours, slot_shifts


def minimum_distance(atoms, search: float = 3.0) -> float:
    """Smallest interatomic distance of ASE ``atoms`` (Angstrom, minimum image); ``inf`` if none within ``search``."""
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2 and not atoms.pbc.any():
        return float("inf")
    distances = neighbor_list("d", atoms, search)
    return float(distances.min()) if len(distances) else float("inf")
