"""Committee deviations: how much the members of a committee disagree on one configuration.

The force deviation of atom ``i`` over a committee of ``K`` members is the root mean square distance
of the members' forces from their mean,

    eps_i = sqrt( < |F_i^k - <F_i>|^2 >_k ),

and the score of a configuration is ``max_i eps_i``. This is the "model deviation" of the
DP-GEN concurrent-learning scheme (Zhang et al., Comput. Phys. Commun. 253, 107206 (2020);
Zhang et al., Phys. Rev. Mater. 3, 023804 (2019)), there introduced for committees of Deep
Potentials. The relative deviation divides ``eps_i`` by ``|<F_i>| + level`` so that atoms under
large forces are not flagged for their size alone (Zhang et al. 2020, section 2.3).

Units: forces in eV/Angstrom, energies in eV, virials in eV.
"""

from __future__ import annotations

import numpy as np

__all__ = (
    "energy_deviation",
    "force_deviation",
    "frame_force_deviation",
    "relative_force_deviation",
    "virial_deviation",
)


def _committee_axis(values: np.ndarray, name: str, ndim: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (committee first), got shape {values.shape}")
    if values.shape[0] < 2:
        raise ValueError(f"{name}: a committee needs at least 2 members, got {values.shape[0]}")
    return values


def force_deviation(committee_forces: np.ndarray) -> np.ndarray:
    """Per-atom force deviation ``eps_i = sqrt(< |F_i - <F_i>|^2 >)`` over the committee.

    Parameters
    ----------
    committee_forces : (K, N, 3) array
        Forces of each of ``K`` members on ``N`` atoms, eV/Angstrom.

    Returns
    -------
    (N,) array
        Deviation of each atom's force, eV/Angstrom.
    """
    forces = _committee_axis(committee_forces, "committee_forces", 3)
    spread = forces - forces.mean(axis=0)
    return np.sqrt((spread**2).sum(axis=2).mean(axis=0))


def relative_force_deviation(committee_forces: np.ndarray, level: float = 1.0) -> np.ndarray:
    """Per-atom force deviation divided by the mean force magnitude plus ``level``.

    Parameters
    ----------
    committee_forces : (K, N, 3) array
        Forces of each member, eV/Angstrom.
    level : float
        Added to ``|<F_i>|`` (eV/Angstrom) so that atoms under small forces are not divided by zero.

    Returns
    -------
    (N,) array
        Dimensionless ``eps_i / (|<F_i>| + level)``.
    """
    if level <= 0:
        raise ValueError(f"level must be positive (eV/Angstrom), got {level}")
    forces = _committee_axis(committee_forces, "committee_forces", 3)
    mean_norm = np.linalg.norm(forces.mean(axis=0), axis=1)
    return force_deviation(forces) / (mean_norm + level)


def frame_force_deviation(committee_forces: np.ndarray) -> float:
    """The score of one configuration: ``max_i eps_i`` in eV/Angstrom, see :func:`force_deviation`."""
    return float(force_deviation(committee_forces).max())


def energy_deviation(committee_energy: np.ndarray, natoms: int | None = None) -> float:
    """Standard deviation of the members' energies, eV (eV/atom when ``natoms`` is given).

    Parameters
    ----------
    committee_energy : (K,) array
        Total energy predicted by each member, eV.
    natoms : int, optional
        Divide by the number of atoms, giving eV/atom.
    """
    energies = _committee_axis(committee_energy, "committee_energy", 1)
    deviation = float(energies.std())
    return deviation / natoms if natoms else deviation


def virial_deviation(committee_virial: np.ndarray, natoms: int | None = None) -> float:
    """Largest standard deviation of a virial component over the committee.

    As DP-GEN's ``max_devi_v``: the virial ``W = -V sigma`` (eV) per member, the deviation of each
    of its 9 (or 6 Voigt) components over the committee, and their maximum.

    Parameters
    ----------
    committee_virial : (K, 3, 3) or (K, 6) array
        Virial of each member, eV. Convert a stress (eV/Angstrom^3) by multiplying with ``-volume``.
    natoms : int, optional
        Divide by the number of atoms, giving eV/atom.
    """
    virial = np.asarray(committee_virial, dtype=np.float64)
    virial = _committee_axis(virial.reshape(len(virial), -1), "committee_virial", 2)
    deviation = float(virial.std(axis=0).max())
    return deviation / natoms if natoms else deviation
