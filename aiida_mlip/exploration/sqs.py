"""Special quasi-random structures: substitutional alloys whose near-neighbour pairs look random.

A random shuffle of the species over a small cell leaves chance short-range order: with 32 sites a
50/50 alloy's first shell can easily hold 20 % more like pairs than an infinite random alloy. A
special quasi-random structure (SQS; Zunger, Wei, Ferreira and Bernard, Phys. Rev. Lett. 65, 353
(1990)) is the arrangement of the same counts whose pair correlations over the first few
neighbour shells are those of the ideal random alloy.

The pair correlations are measured by the Warren-Cowley short-range-order parameters (J. M. Cowley,
Phys. Rev. 77, 669 (1950)),

    alpha_s(a, b) = 1 - P_s(b | a) / x_b,

where ``P_s(b | a)`` is the probability that a neighbour in shell ``s`` of an ``a`` site holds ``b``
and ``x_b`` is the concentration of ``b``: zero for every pair and shell in the ideal random alloy.
:func:`special_quasirandom` minimises ``sum_s sum_ab x_a x_b alpha_s(a, b)^2 / s`` (nearer shells
weigh more) by Monte Carlo swaps of two sites of different species, keeping a swap that does not
raise it, from several random starts. The cost is a few thousand swaps of a cell of a few hundred
atoms at most: seconds, no external code (ATAT's ``mcsqs`` and icet do the same with cluster
expansions beyond pairs).

Units: Angstrom.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

__all__ = ("neighbour_shells", "short_range_order", "special_quasirandom")

#: Angstrom: distances closer than this belong to one neighbour shell.
SHELL_TOLERANCE = 0.05


def neighbour_shells(atoms: Atoms, shells: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The site pairs ``(i, j)`` of each of the first ``shells`` neighbour shells of ``atoms``.

    Shells are the distinct neighbour distances (within :data:`SHELL_TOLERANCE`) of the lattice,
    periodic images included; a pair appears once per image and in both orders, so each site's
    row counts its coordination in that shell.

    Raises
    ------
    ValueError
        When the cell is not periodic in all three directions, or holds fewer than ``shells``
        distinct neighbour distances within twice the largest cell width.
    """
    if not all(atoms.pbc):
        raise ValueError("special quasi-random structures need a cell periodic in all three directions")
    cell = atoms.cell
    volume = abs(cell.volume)
    widths = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    cutoff = 0.6 * (volume / len(atoms)) ** (1 / 3)
    while True:
        first, second, distances = neighbor_list("ijd", atoms, cutoff)
        radii = _shell_radii(distances)
        if len(radii) > shells or cutoff > 2 * max(widths):
            break
        cutoff *= 1.3
    if len(radii) < shells:
        raise ValueError(
            f"the cell has {len(radii)} neighbour shells within {cutoff:.1f} A, fewer than {shells}"
        )
    pairs = []
    for radius in radii[:shells]:
        mask = np.abs(distances - radius) < SHELL_TOLERANCE
        pairs.append((first[mask], second[mask]))
    return pairs


def _shell_radii(distances: np.ndarray) -> list[float]:
    """The distinct values of ``distances``, those within :data:`SHELL_TOLERANCE` merged."""
    radii: list[float] = []
    for distance in np.sort(distances):
        if not radii or distance - radii[-1] > SHELL_TOLERANCE:
            radii.append(float(distance))
    return radii


def _species_index(symbols, elements) -> np.ndarray:
    lookup = {element: number for number, element in enumerate(elements)}
    return np.array([lookup[symbol] for symbol in symbols])


def _alpha(species: np.ndarray, pairs, fractions: np.ndarray) -> np.ndarray:
    """Warren-Cowley parameters (shells, elements, elements) of the site species ``species``."""
    n = len(fractions)
    result = np.zeros((len(pairs), n, n))
    for shell, (first, second) in enumerate(pairs):
        counts = np.bincount(species[first] * n + species[second], minlength=n * n).reshape(n, n)
        totals = counts.sum(axis=1, keepdims=True)
        conditional = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
        result[shell] = 1.0 - conditional / fractions[None, :]
    return result


def _objective(alpha: np.ndarray, fractions: np.ndarray) -> float:
    weights = 1.0 / np.arange(1, len(alpha) + 1)
    outer = np.outer(fractions, fractions)
    return float(np.sum(weights[:, None, None] * outer[None] * alpha**2))


def short_range_order(atoms: Atoms, shells: int = 3) -> list[float]:
    """The largest ``|alpha_s(a, b)|`` over element pairs, per shell ``s`` (0 for an ideal random alloy)."""
    elements = sorted(set(atoms.get_chemical_symbols()))
    species = _species_index(atoms.get_chemical_symbols(), elements)
    fractions = np.bincount(species, minlength=len(elements)) / len(atoms)
    alpha = _alpha(species, neighbour_shells(atoms, shells), fractions)
    return [float(np.abs(shell).max()) for shell in alpha]


def special_quasirandom(
    parent: Atoms,
    counts: Mapping[str, int],
    rng: np.random.Generator,
    shells: int = 3,
    steps: int = 3000,
    starts: int = 4,
) -> Atoms:
    """A special quasi-random arrangement of ``counts`` on the sites of ``parent``.

    Parameters
    ----------
    parent
        The lattice: its positions and cell are kept, its species replaced.
    counts
        Element -> number of sites; the numbers add up to ``len(parent)``.
    rng
        The random stream of the starts and the swaps.
    shells
        Neighbour shells whose pair correlations are matched to the random alloy's (>= 1).
    steps
        Attempted swaps per start (>= 0).
    starts
        Random starting arrangements; the best result is returned (>= 1).

    Returns
    -------
    Atoms
        A copy of ``parent`` with the species placed; ``info["sro"]`` is
        :func:`short_range_order` per shell (largest ``|alpha|``) and ``info["sro_random"]`` that of
        the first random start, before any swap, for comparison.
    """
    if sum(counts.values()) != len(parent):
        raise ValueError(f"the counts {dict(counts)} do not add up to the {len(parent)} sites")
    elements = sorted(counts)
    pool = np.repeat(np.arange(len(elements)), [counts[element] for element in elements])
    fractions = np.array([counts[element] for element in elements]) / len(parent)
    pairs = neighbour_shells(parent, shells)
    best_species, best_value, first_alpha = None, np.inf, None
    for _ in range(starts):
        species = rng.permutation(pool)
        alpha = _alpha(species, pairs, fractions)
        if first_alpha is None:
            first_alpha = alpha
        value = _objective(alpha, fractions)
        for _ in range(steps if len(elements) > 1 else 0):
            if value < 1e-12:  # every correlation already that of the random alloy
                break
            i, j = rng.integers(len(species), size=2)
            if species[i] == species[j]:
                continue
            species[i], species[j] = species[j], species[i]
            trial = _objective(_alpha(species, pairs, fractions), fractions)
            if trial <= value:
                value = trial
            else:
                species[i], species[j] = species[j], species[i]
        if value < best_value:
            best_species, best_value = species.copy(), value
        if best_value < 1e-12:
            break
    child = parent.copy()
    child.set_chemical_symbols([elements[number] for number in best_species])
    child.info["sro"] = [
        round(float(np.abs(shell).max()), 6) for shell in _alpha(best_species, pairs, fractions)
    ]
    child.info["sro_random"] = [round(float(np.abs(shell).max()), 6) for shell in first_alpha]
    return child
