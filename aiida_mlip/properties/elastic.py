"""Elastic constants by stress-strain with relaxed ions, Voigt-Reuss-Hill moduli and sound speeds.

For each Voigt component ``j`` (xx, yy, zz, yz, xz, xy) and each strain magnitude ``h`` the relaxed
cell is deformed by ``+h`` and ``-h`` (engineering shear strain for j = 4..6, i.e. the tensor
component is ``h / 2``), the ions are relaxed at fixed cell and the stress is computed. Column ``j``
of C is the central difference ``[sigma(+h) - sigma(-h)] / 2h``. With several magnitudes the central
differences ``D(h) = C + a h^2 + ...`` are extrapolated to zero strain by a least-squares fit in
``h^2`` (for two magnitudes in ratio 2 this is Richardson extrapolation); the per-strain matrices
are kept in the result to show the non-linearity.

Moduli: Voigt (uniform strain) and Reuss (uniform stress) bounds and their mean (R. Hill, Proc. Phys.
Soc. A 65, 349 (1952)). Sound speeds of the isotropic aggregate: longitudinal
``v_l = sqrt((K + 4G/3) / rho)``, transverse ``v_t = sqrt(G / rho)`` and the Debye mean
``v_m = [(2 / v_t^3 + 1 / v_l^3) / 3]^(-1/3)`` (O. L. Anderson, J. Phys. Chem. Solids 24, 909 (1963)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pydantic
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from aiida_mlip.properties.checks import check_strains, require_periodic, resolve_settings
from aiida_mlip.properties.relax import RelaxSettings, at_fixed_cell, prepare

__all__ = (
    "ElasticResult",
    "ElasticSettings",
    "elastic_constants",
    "sound_speeds",
    "strained",
    "voigt_reuss_hill",
)

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: amu / Angstrom^3 -> kg / m^3
DENSITY_UNIT = 1.66053906660e-27 / 1e-30


class ElasticSettings(RelaxSettings):
    """Settings of :func:`elastic_constants` (block ``elastic``).

    Attributes
    ----------
    strains
        Strain magnitudes (fractions, each applied as + and -), at most 0.05; default 0.5% and 1%.
    relax, fmax, relax_steps
        See :class:`~.relax.RelaxSettings`; with ``relax`` other than ``"none"`` the ions are also
        relaxed in every strained cell (relaxed-ion elastic constants).
    """

    block = "elastic"

    strains: list[float] = [0.005, 0.01]

    @pydantic.field_validator("strains")
    @classmethod
    def _linear_regime(cls, value: list[float]) -> list[float]:
        return check_strains(value)


@dataclass
class ElasticResult:
    """Elastic constants of one crystal.

    Attributes
    ----------
    atoms
        The structure that was strained (relaxed as the settings said).
    c
        (6, 6) GPa, Voigt order xx, yy, zz, yz, xz, xy; ``c[i, j] = d sigma_i / d epsilon_j``
        (engineering shear strains), symmetrised.
    c_by_strain
        ``{h: (6, 6) GPa}``: the central difference at each strain magnitude, not symmetrised.
    bulk_voigt, bulk_reuss, bulk_hill, shear_voigt, shear_reuss, shear_hill
        GPa.
    density
        kg/m^3.
    speed_longitudinal, speed_transverse, speed_mean
        m/s, of the Hill moduli.
    """

    atoms: Atoms = field(repr=False)
    c: np.ndarray
    c_by_strain: dict[float, np.ndarray] = field(repr=False)
    bulk_voigt: float
    bulk_reuss: float
    bulk_hill: float
    shear_voigt: float
    shear_reuss: float
    shear_hill: float
    density: float
    speed_longitudinal: float
    speed_transverse: float
    speed_mean: float

    def scalars(self) -> dict[str, float]:
        """``C11`` .. ``C66`` (the 21 independent ones, GPa), ``K_V/K_R/K_H``, ``G_V/G_R/G_H`` (GPa), ``v_l/v_t/v_m`` (m/s)."""
        values = {f"C{i + 1}{j + 1}": float(self.c[i, j]) for i in range(6) for j in range(i, 6)}
        values.update(
            K_V=self.bulk_voigt,
            K_R=self.bulk_reuss,
            K_H=self.bulk_hill,
            G_V=self.shear_voigt,
            G_R=self.shear_reuss,
            G_H=self.shear_hill,
            v_l=self.speed_longitudinal,
            v_t=self.speed_transverse,
            v_m=self.speed_mean,
        )
        return values


def strained(atoms: Atoms, component: int, strain: float) -> Atoms:
    """A copy of ``atoms`` (ions scaled with the cell) under Voigt strain ``strain`` (fraction) on ``component`` (0..5).

    Components 3..5 are engineering shear strains: the symmetric tensor gets ``strain / 2`` on
    both off-diagonal entries.
    """
    i, j = VOIGT[component]
    epsilon = np.zeros((3, 3))
    epsilon[i, j] += strain if i == j else strain / 2
    epsilon[j, i] = epsilon[i, j]
    copy = atoms.copy()
    copy.set_cell(atoms.cell.array @ (np.eye(3) + epsilon), scale_atoms=True)
    return copy


def _sums(m: np.ndarray) -> tuple[float, float, float]:
    """``m11 + m22 + m33``, ``m12 + m23 + m13`` and ``m44 + m55 + m66`` of a (6, 6) matrix."""
    return np.trace(m[:3, :3]), m[0, 1] + m[1, 2] + m[0, 2], np.trace(m[3:, 3:])


def voigt_reuss_hill(c: np.ndarray) -> dict[str, float]:
    """Voigt, Reuss and Hill bulk (``K_*``) and shear (``G_*``) moduli of a (6, 6) stiffness matrix (Hill 1952).

    Units as ``c`` (GPa).
    """
    s = np.linalg.inv(c)
    diagonal, off, shear = _sums(c)
    k_v = (diagonal + 2 * off) / 9
    g_v = (diagonal - off + 3 * shear) / 15
    s_diagonal, s_off, s_shear = _sums(s)
    k_r = 1 / (s_diagonal + 2 * s_off)
    g_r = 15 / (4 * s_diagonal - 4 * s_off + 3 * s_shear)
    return {"K_V": k_v, "K_R": k_r, "K_H": (k_v + k_r) / 2, "G_V": g_v, "G_R": g_r, "G_H": (g_v + g_r) / 2}


def sound_speeds(bulk: float, shear: float, density: float) -> tuple[float, float, float]:
    """Longitudinal, transverse and Debye-mean sound speeds (m/s) of an isotropic solid (Anderson 1963).

    NaN where a modulus is negative (a mechanically unstable aggregate).

    Parameters
    ----------
    bulk, shear
        GPa.
    density
        kg/m^3.
    """
    with np.errstate(invalid="ignore"):  # NaN for an unstable aggregate (negative modulus)
        longitudinal = np.sqrt((bulk + 4 * shear / 3) * 1e9 / density)
        transverse = np.sqrt(shear * 1e9 / density)
        mean = ((2 / transverse**3 + 1 / longitudinal**3) / 3) ** (-1 / 3)
    return float(longitudinal), float(transverse), float(mean)


def elastic_constants(
    atoms: Atoms, calculator: Calculator | None = None, settings: ElasticSettings | dict | None = None
) -> ElasticResult:
    """The 6x6 stiffness matrix by stress-strain with relaxed ions, and the moduli and sound speeds from it.

    Parameters
    ----------
    atoms
        A periodic crystal; not modified.
    calculator
        ASE calculator with ``stress`` (eV/Angstrom^3); default ``atoms.calc``.
    settings
        :class:`ElasticSettings` or a mapping of its keys.

    Returns
    -------
    ElasticResult
        Stiffness and moduli in GPa, density in kg/m^3, speeds in m/s.

    Raises
    ------
    PropertyInputError
        A structure not periodic in 3D, a strain above 5%, or other bad settings.
    """
    settings = resolve_settings(ElasticSettings, settings)
    require_periodic(atoms, "elastic constants")
    structure, calculator = prepare(atoms, calculator, settings)

    def stress(component: int, strain: float) -> np.ndarray:
        deformed = strained(structure, component, strain)
        deformed = at_fixed_cell(deformed, calculator, settings)
        return deformed.get_stress() / units.GPa

    c_by_strain = {}
    for strain in settings.strains:
        columns = [(stress(j, strain) - stress(j, -strain)) / (2 * strain) for j in range(6)]
        c_by_strain[strain] = np.array(columns).T
    magnitudes = np.array(settings.strains)
    if len(magnitudes) > 1:  # D(h) = C + a h^2: least squares in h^2, the intercept is C
        design = np.stack([np.ones_like(magnitudes), magnitudes**2], axis=1)
        stack = np.stack([c_by_strain[strain] for strain in settings.strains]).reshape(len(magnitudes), -1)
        c = np.linalg.lstsq(design, stack, rcond=None)[0][0].reshape(6, 6)
    else:
        c = c_by_strain[settings.strains[0]]
    c = (c + c.T) / 2
    moduli = voigt_reuss_hill(c)
    density = float(structure.get_masses().sum() / structure.get_volume() * DENSITY_UNIT)
    speeds = sound_speeds(moduli["K_H"], moduli["G_H"], density)
    return ElasticResult(
        structure,
        c,
        c_by_strain,
        *(float(moduli[key]) for key in ("K_V", "K_R", "K_H", "G_V", "G_R", "G_H")),
        density,
        *speeds,
    )
