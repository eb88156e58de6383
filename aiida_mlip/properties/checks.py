"""Input checks of the property kernels, run before any energy is computed.

Each raises :class:`PropertyInputError` with a message that says what is wrong in the terms of the
calculation (strain, periodicity, supercell size against the cutoff, NEB end points).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms

from aiida_mlip.settings import Settings, SettingsError

__all__ = (
    "MAX_STRAIN",
    "PropertyInputError",
    "check_endpoints",
    "check_images",
    "check_strains",
    "check_supercell_width",
    "perpendicular_widths",
    "require_calculator",
    "require_periodic",
    "resolve_settings",
)

#: Largest strain magnitude (fraction) accepted for elastic constants: beyond it the response is
#: no longer linear and the structure may transform.
MAX_STRAIN = 0.05


class PropertyInputError(SettingsError):
    """A property calculation was asked for with an input that cannot give a meaningful result.

    A :class:`ValueError` (through :class:`~aiida_mlip.settings.SettingsError`): raised before any
    energy or force is computed.
    """


def resolve_settings(model: type[Settings], settings: Settings | Mapping[str, Any] | None) -> Settings:
    """Return ``settings`` as an instance of ``model`` (defaults for missing keys).

    Raises
    ------
    PropertyInputError
        Unknown key, value out of range or a physically meaningless value.
    """
    if isinstance(settings, model):
        return settings
    try:
        return model.from_mapping(settings)
    except SettingsError as exception:
        raise PropertyInputError(str(exception)) from None


def check_strains(strains: Sequence[float]) -> list[float]:
    """Return the strain magnitudes (fractions) if each is in ``(0, MAX_STRAIN]``.

    Raises
    ------
    ValueError
        A strain of zero, negative, or above 5% (``0.05``).
    """
    strains = [float(strain) for strain in strains]
    if not strains:
        raise ValueError("give at least one strain magnitude, e.g. [0.005, 0.01]")
    for strain in strains:
        if strain <= 0:
            raise ValueError(
                f"strain magnitudes must be positive fractions (+- is applied for you), got {strain}"
            )
        if strain > MAX_STRAIN:
            raise ValueError(
                f"a strain of {strain:.3g} ({100 * strain:.3g}%) is above {100 * MAX_STRAIN:g}%: "
                "elastic constants need the linear regime; use strains of 0.5-1% (0.005-0.01)"
            )
    return strains


def require_calculator(atoms: Atoms, calculator):
    """``calculator``, else the one attached to ``atoms``; :class:`PropertyInputError` if neither exists."""
    calculator = calculator if calculator is not None else atoms.calc
    if calculator is None:
        raise PropertyInputError("no calculator: pass calculator=... or attach one to the atoms (atoms.calc)")
    return calculator


def require_periodic(atoms: Atoms, what: str) -> None:
    """Raise :class:`PropertyInputError` unless ``atoms`` is periodic in all three directions with a 3D cell."""
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise PropertyInputError(
            f"{what} need a crystal periodic in all three directions; this structure has "
            f"pbc={atoms.pbc.tolist()} and a cell of rank {atoms.cell.rank} "
            "(set atoms.pbc = True and a 3D cell for a bulk crystal)"
        )


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances (Angstrom) between opposite faces of the cell: volume / area of each face, shape (3,)."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    return np.array(
        [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    )


def check_supercell_width(
    supercell_cell: np.ndarray, cutoff: float | None, what: str = "phonon supercell"
) -> None:
    """Raise :class:`PropertyInputError` if a face-to-face width of the supercell is under twice ``cutoff``.

    A displaced atom then interacts with its own periodic image, and the force constants mix
    interactions that the potential keeps apart.

    Parameters
    ----------
    supercell_cell
        (3, 3) Angstrom, rows are the lattice vectors.
    cutoff
        The potential's cutoff, Angstrom; ``None`` skips the check.
    """
    if cutoff is None:
        return
    widths = perpendicular_widths(supercell_cell)
    if widths.min() < 2 * cutoff:
        raise PropertyInputError(
            f"the {what} is {widths.min():.2f} Angstrom wide (face-to-face widths "
            f"{np.round(widths, 2).tolist()}), under twice the potential's cutoff of {cutoff:g} Angstrom "
            f"(needs >= {2 * cutoff:.2f}): a displaced atom would see its own periodic image; "
            "use a larger supercell"
        )


def check_images(n_images: int) -> None:
    """Raise :class:`PropertyInputError` for an NEB path of fewer than 3 images (end points included)."""
    if n_images < 3:
        raise PropertyInputError(
            f"a nudged elastic band needs at least 3 images (the two end points and one moving image), got {n_images}"
        )


def check_endpoints(initial: Atoms, final: Atoms) -> None:
    """Raise :class:`PropertyInputError` unless both NEB end points hold the same atoms in the same order and cell."""
    if len(initial) != len(final):
        raise PropertyInputError(
            f"the NEB end points have different numbers of atoms ({len(initial)} and {len(final)}): "
            "both must be the same atoms, in the same order"
        )
    if initial.get_chemical_symbols() != final.get_chemical_symbols():
        differ = [
            f"{index}: {a} vs {b}"
            for index, (a, b) in enumerate(
                zip(initial.get_chemical_symbols(), final.get_chemical_symbols(), strict=True)
            )
            if a != b
        ]
        raise PropertyInputError(
            "the NEB end points have different elements at the same index "
            f"({', '.join(differ[:5])}{' ...' if len(differ) > 5 else ''}): "
            "both must be the same atoms, in the same order"
        )
    if not np.allclose(initial.cell.array, final.cell.array, atol=1e-6) or (initial.pbc != final.pbc).any():
        raise PropertyInputError(
            "the NEB end points have different cells or periodicity: use the same cell for both"
        )
