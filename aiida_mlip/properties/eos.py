"""Equation of state: energy and pressure over a volume range, third-order Birch-Murnaghan fit.

The cell is relaxed (by default), then scaled isotropically to ``points`` volumes spanning
``1 - volume_range .. 1 + volume_range`` times the relaxed volume; at each volume the ions are
relaxed at fixed cell. The energies are fitted with the third-order Birch-Murnaghan equation of
state (F. Birch, Phys. Rev. 71, 809 (1947)),

    E(V) = E0 + 9 V0 B0 / 16 { [(V0/V)^(2/3) - 1]^3 B0' + [(V0/V)^(2/3) - 1]^2 [6 - 4 (V0/V)^(2/3)] },

which is exactly a cubic polynomial in ``V^(-2/3)``: the fit is that linear least-squares
polynomial (no starting guess), and V0, E0, B0 = V E''(V0), B0' = dB/dP at V0 are read from it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pydantic
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from aiida_mlip.properties.checks import require_periodic, resolve_settings
from aiida_mlip.properties.relax import RelaxSettings, at_fixed_cell, prepare

__all__ = (
    "EOSResult",
    "EOSSettings",
    "birch_murnaghan_fit",
    "cubic_lattice_constant",
    "equation_of_state",
    "fit_equation_of_state",
    "volume_points",
)


class EOSSettings(RelaxSettings):
    """Settings of :func:`equation_of_state` (block ``eos``).

    Attributes
    ----------
    volume_range
        Fraction of the relaxed volume scanned on each side: volumes from ``(1 - volume_range) V``
        to ``(1 + volume_range) V``, Angstrom^3.
    points
        Number of volumes (at least 5: the fit has 4 parameters).
    relax, fmax, relax_steps
        See :class:`~.relax.RelaxSettings`; with ``relax`` other than ``"none"`` the ions are also
        relaxed at every volume.
    """

    block = "eos"

    volume_range: float = pydantic.Field(0.06, gt=0, le=0.3)
    points: int = pydantic.Field(9, ge=5)


@dataclass
class EOSResult:
    """Equation of state of one structure.

    Attributes
    ----------
    atoms
        The structure the volumes are scaled from (relaxed as the settings said).
    volumes, energies, pressures
        (points,) Angstrom^3 (of the whole cell), eV, GPa (``-trace(stress) / 3``; absent, all NaN,
        if the calculator has no stress).
    v0, e0, b0, b0_prime
        Birch-Murnaghan equilibrium volume (Angstrom^3, whole cell), energy (eV), bulk modulus (GPa)
        and its pressure derivative (dimensionless).
    lattice_constant
        Cubic crystals: the conventional cubic lattice constant at ``v0``, Angstrom; else ``None``.
    bracketed
        Whether ``v0`` lies inside the scanned volumes (an extrapolated minimum is unreliable).
    """

    atoms: Atoms = field(repr=False)
    volumes: np.ndarray
    energies: np.ndarray
    pressures: np.ndarray
    v0: float
    e0: float
    b0: float
    b0_prime: float
    lattice_constant: float | None
    bracketed: bool

    def scalars(self) -> dict[str, float]:
        """``V0`` (Angstrom^3 per atom), ``E0`` (eV per atom), ``B0`` (GPa), ``B0_prime``, ``a0`` (Angstrom, cubic only)."""
        n_atoms = len(self.atoms)
        values = {"V0": self.v0 / n_atoms, "E0": self.e0 / n_atoms, "B0": self.b0, "B0_prime": self.b0_prime}
        if self.lattice_constant is not None:
            values["a0"] = self.lattice_constant
        return values

    def to_dict(self) -> dict:
        """Everything but ``atoms`` as JSON-able values (lists; a missing pressure is NaN)."""
        return {
            "volumes": self.volumes.tolist(),
            "energies": self.energies.tolist(),
            "pressures": self.pressures.tolist(),
            "v0": self.v0,
            "e0": self.e0,
            "b0": self.b0,
            "b0_prime": self.b0_prime,
            "lattice_constant": self.lattice_constant,
            "bracketed": self.bracketed,
        }

    @classmethod
    def from_dict(cls, atoms: Atoms, values: dict) -> EOSResult:
        """The result :meth:`to_dict` gave, for the structure ``atoms`` (a pressure of ``None`` is NaN)."""
        arrays = {
            key: np.array([np.nan if value is None else value for value in values[key]], dtype=float)
            for key in ("volumes", "energies", "pressures")
        }
        scalars = {
            key: values[key] for key in ("v0", "e0", "b0", "b0_prime", "lattice_constant", "bracketed")
        }
        return cls(atoms=atoms, **arrays, **scalars)


def birch_murnaghan_fit(volumes, energies) -> tuple[float, float, float, float]:
    """Fit the third-order Birch-Murnaghan equation of state (Birch, Phys. Rev. 71, 809 (1947)).

    Parameters
    ----------
    volumes, energies
        (n,) Angstrom^3 and eV, n >= 4.

    Returns
    -------
    v0, e0, b0, b0_prime
        Angstrom^3, eV, eV/Angstrom^3 (divide by ``ase.units.GPa`` for GPa), dimensionless.

    Raises
    ------
    ValueError
        The fitted curve has no minimum at a positive volume (energies not convex).
    """
    volumes = np.asarray(volumes, dtype=float)
    x = volumes ** (-2.0 / 3.0)
    poly = np.polynomial.Polynomial.fit(x, np.asarray(energies, dtype=float), 3).convert()
    d1, d2, d3 = poly.deriv(1), poly.deriv(2), poly.deriv(3)
    roots = [
        root.real for root in d1.roots() if abs(root.imag) < 1e-12 and root.real > 0 and d2(root.real) > 0
    ]
    if not roots:
        raise ValueError("the energies have no minimum over volume: the Birch-Murnaghan fit failed")
    x0 = min(roots, key=lambda root: abs(root - x.mean()))
    v0 = x0**-1.5
    # chain rule, x = V^(-2/3), at dE/dx = 0
    x1, x2 = -2.0 / 3.0 * v0 ** (-5.0 / 3.0), 10.0 / 9.0 * v0 ** (-8.0 / 3.0)
    e_vv = d2(x0) * x1**2
    e_vvv = d3(x0) * x1**3 + 3.0 * d2(x0) * x1 * x2
    return float(v0), float(poly(x0)), float(v0 * e_vv), float(-1.0 - v0 * e_vvv / e_vv)


def cubic_lattice_constant(atoms: Atoms, volume: float | None = None, symprec: float = 1e-3) -> float | None:
    """The conventional cubic lattice constant (Angstrom) of a cubic crystal, at ``volume`` if given.

    Any cell of the crystal will do (primitive, conventional, supercell): spglib finds its
    conventional cell. ``None`` for a crystal that is not cubic (space groups 195-230).

    Parameters
    ----------
    volume
        Volume of ``atoms``' cell to scale to, Angstrom^3 (isotropic scaling).
    """
    import spglib

    with warnings.catch_warnings():  # spglib's notice about its error handling when no symmetry is found
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = spglib.get_symmetry_dataset(
            (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers), symprec=symprec
        )
    if dataset is None or not 195 <= dataset.number <= 230:
        return None
    a = float(np.linalg.norm(dataset.std_lattice[0]))
    return a if volume is None else a * (volume / atoms.get_volume()) ** (1.0 / 3.0)


def volume_points(structure: Atoms, settings: EOSSettings | dict | None = None) -> list[Atoms]:
    """The structures of the equation of state: ``structure`` scaled isotropically to ``settings.points`` volumes.

    The volumes are evenly spaced from ``1 - volume_range`` to ``1 + volume_range`` times the volume
    of ``structure`` (Angstrom^3); atoms keep their fractional positions. Copies without calculator.
    """
    settings = resolve_settings(EOSSettings, settings)
    scales = np.linspace(1 - settings.volume_range, 1 + settings.volume_range, settings.points)
    points = []
    for scale in scales:
        scaled = structure.copy()
        scaled.set_cell(structure.cell.array * scale ** (1.0 / 3.0), scale_atoms=True)
        points.append(scaled)
    return points


def fit_equation_of_state(structure: Atoms, volumes, energies, pressures=None) -> EOSResult:
    """The Birch-Murnaghan fit of energies computed at ``volumes`` (e.g. the :func:`volume_points` of ``structure``).

    Parameters
    ----------
    structure
        The structure the volumes were scaled from (for the cubic lattice constant).
    volumes, energies, pressures
        (points,) Angstrom^3 (whole cell), eV, GPa (``None``: unknown, NaN).

    Raises
    ------
    ValueError
        The energies have no minimum over volume.
    """
    volumes = np.asarray(volumes, dtype=float)
    v0, e0, b0, b0_prime = birch_murnaghan_fit(volumes, energies)
    return EOSResult(
        atoms=structure,
        volumes=volumes,
        energies=np.asarray(energies, dtype=float),
        pressures=np.full(len(volumes), np.nan) if pressures is None else np.asarray(pressures, dtype=float),
        v0=v0,
        e0=e0,
        b0=b0 / units.GPa,
        b0_prime=b0_prime,
        lattice_constant=cubic_lattice_constant(structure, v0),
        bracketed=bool(volumes.min() <= v0 <= volumes.max()),
    )


def equation_of_state(
    atoms: Atoms, calculator: Calculator | None = None, settings: EOSSettings | dict | None = None
) -> EOSResult:
    """Energy and pressure over a volume range and their Birch-Murnaghan fit.

    Parameters
    ----------
    atoms
        A periodic crystal; not modified.
    calculator
        ASE calculator (energy; stress for the pressures); default ``atoms.calc``.
    settings
        :class:`EOSSettings` or a mapping of its keys.

    Returns
    -------
    EOSResult
        Volumes in Angstrom^3, energies in eV, pressures and B0 in GPa.

    Raises
    ------
    PropertyInputError
        A structure not periodic in 3D, or bad settings.
    """
    settings = resolve_settings(EOSSettings, settings)
    require_periodic(atoms, "an equation of state")
    structure, calculator = prepare(atoms, calculator, settings)
    volumes, energies, pressures = [], [], []
    for point in volume_points(structure, settings):
        point = at_fixed_cell(point, calculator, settings)
        volumes.append(point.get_volume())
        energies.append(point.get_potential_energy())
        stress = point.get_stress() if "stress" in calculator.implemented_properties else np.full(6, np.nan)
        pressures.append(-stress[:3].mean() / units.GPa)
    return fit_equation_of_state(structure, volumes, energies, pressures)
