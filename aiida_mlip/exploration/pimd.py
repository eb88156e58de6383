"""Path-integral (ring-polymer) MD walkers: nuclear quantum effects of light atoms in the exploration.

Each atom is a ring of ``P`` beads joined by harmonic springs; the classical dynamics of the ring
polymer at ``P T`` samples the quantum Boltzmann distribution of the nuclei at ``T`` as ``P`` grows
(Feynman's imaginary-time path integral; Parrinello & Rahman, J. Chem. Phys. 80, 860 (1984)):

.. math::

    H_P = \\sum_{j=1}^{P} \\Big[ \\sum_i \\frac{p_{ij}^2}{2 m_i}
          + \\tfrac12 m_i \\omega_P^2 (q_{ij} - q_{i,j+1})^2 \\Big] + V(q_j),
    \\qquad \\omega_P = \\frac{P k_B T}{\\hbar}.

The potential ``V`` (the committee) is evaluated on every bead. :class:`RingPolymerDynamics`
propagates the free ring polymer exactly in its normal modes (frequencies
``omega_k = 2 omega_P sin(k pi / P)``) and thermostats each mode with the path-integral Langevin
equation, local version (PILE-L; Ceriotti, Parrinello, Markland & Manolopoulos, J. Chem. Phys. 133,
124104 (2010)): friction ``1 / tau_0`` on the centroid (``tau_0`` is ``exploration.md``'s
``thermostat_time``) and ``2 lambda omega_k`` on the internal modes (``lambda = 1``: critical
damping of the free modes). One step is O(dt/2) B(dt/2) A(dt) B(dt/2) O(dt/2): thermostat, kick,
free ring-polymer evolution, kick, thermostat. With ``P = 1`` it is classical Langevin MD.

The uncertainty watch (:func:`~aiida_mlip.exploration.watch.check_frame`) runs on every bead at each
check; the walker's row is its least trusted bead (an explosion first, then a break, then the
largest force deviation), and that bead's configuration is what becomes a candidate, so untrusted
bead configurations reach the selection like MD frames. Bead momenta are sampled at ``P T``; the
frames carry them divided by ``sqrt(P)`` so that their kinetic temperature reads ``T``.

Estimators: :meth:`RingPolymerDynamics.virial_kinetic_energy` (centroid virial, Herman, Bruskin &
Berne, J. Chem. Phys. 76, 5150 (1982)),
:meth:`RingPolymerDynamics.gyration_radius` (each atom's bead spread around its centroid).

Units: K, fs, eV, Angstrom, amu (ASE's internal time inside the integrator).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pydantic
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_mlip.exploration.walker_block import WalkerBlock

__all__ = ("PathIntegralSettings", "RingPolymerDynamics", "normal_modes")

#: hbar in eV x ASE time units.
HBAR = units._hbar * units.J * units.s


class PathIntegralSettings(WalkerBlock):
    """The ``path_integral`` key of ``exploration.md`` (or of a schedule entry).

    Attributes
    ----------
    beads : int
        ``P`` >= 1, beads per atom (1: classical Langevin MD through the same integrator).
    pile_lambda : float
        ``lambda`` > 0: the internal modes' friction is ``2 lambda omega_k`` (1: critical damping).
    walkers : list of int or None
        Indices of the walkers that run path-integral MD; ``None``: all.
    """

    block: ClassVar[str] = "exploration.md.path_integral"

    beads: pydantic.PositiveInt
    pile_lambda: float = 1.0

    @pydantic.field_validator("pile_lambda")
    @classmethod
    def _lambda(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("pile_lambda must be positive")
        return value


def normal_modes(beads: int) -> tuple[np.ndarray, np.ndarray]:
    """The real orthogonal normal-mode matrix ``C`` (P, P) of a ring of ``beads`` and ``sin(k pi / P)``.

    ``q_modes[k] = sum_j C[j, k] q[j]``; column 0 is the centroid (times ``sqrt(P)``).
    """
    j = np.arange(beads)[:, None]
    k = np.arange(beads)[None, :]
    angle = 2 * np.pi * j * k / beads
    matrix = np.where(k <= beads // 2, np.sqrt(2 / beads) * np.cos(angle), np.sqrt(2 / beads) * np.sin(angle))
    matrix[:, 0] = np.sqrt(1 / beads)
    if beads % 2 == 0:
        matrix[:, beads // 2] = np.sqrt(1 / beads) * (-1.0) ** np.arange(beads)
    return matrix, np.sin(np.arange(beads) * np.pi / beads)


class RingPolymerDynamics:
    """PILE-L ring-polymer MD of ``atoms`` on ``calculator`` (see the module docstring).

    The ASE-dynamics surface :func:`~aiida_mlip.exploration.md.run_walker` uses: :meth:`run`,
    :meth:`set_temperature`; :attr:`images` are the beads as ``Atoms`` with their last energy,
    forces and committee spread attached.

    Parameters
    ----------
    atoms : Atoms
        The start configuration (every bead starts from it, momenta drawn at ``P T``); its
        positions follow the centroid.
    calculator
        Evaluated on every bead; its results (spread included) are kept per bead.
    settings : PathIntegralSettings
    temperature, timestep, thermostat_time : float
        K, fs, fs (the centroid's ``tau_0``).
    rng : numpy.random.Generator
    """

    def __init__(
        self,
        atoms: Atoms,
        calculator,
        settings: PathIntegralSettings,
        temperature: float,
        timestep: float,
        thermostat_time: float,
        rng: np.random.Generator,
    ) -> None:
        self.atoms = atoms
        self.calculator = calculator
        self.settings = settings
        self.beads = settings.beads
        self.dt = timestep * units.fs
        self.tau = thermostat_time * units.fs
        self.rng = rng
        self.masses = atoms.get_masses()[None, :, None]  # (1, N, 1)
        self.transform, self.sines = normal_modes(self.beads)
        self.images = [atoms.copy() for _ in range(self.beads)]
        self.previous_energies: list[float | None] = [None] * self.beads  # of each bead's last check, eV
        self.set_temperature(temperature)
        shape = (self.beads, len(atoms), 3)
        # every bead at the start configuration (a collapsed ring); the thermostat opens it within
        # a few 1 / omega_k. Drawing the internal modes from the free ring polymer would put
        # stiff bonds of light atoms far out of their well.
        self.q = np.repeat(atoms.positions[None], self.beads, axis=0)
        self.p = np.sqrt(self.masses * self.kT) * rng.standard_normal(shape)
        self.forces = self._evaluate()
        self._share_momenta()

    # ------------------------------------------------------------------ normal modes
    def _to_modes(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("jk,jnc->knc", self.transform, x)

    def _to_beads(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("jk,knc->jnc", self.transform, x)

    def set_temperature(self, temperature_K: float) -> None:
        """Target temperature (K): the beads' ``P T``, the spring frequency and the thermostat."""
        self.temperature = float(temperature_K)
        self.kT = self.beads * units.kB * self.temperature  # the ring polymer runs at P T
        omega_p = self.kT / HBAR
        self.omega = 2 * omega_p * self.sines  # (P,), omega_0 = 0
        gamma = 2 * self.settings.pile_lambda * self.omega
        gamma[0] = 1.0 / self.tau
        self.c1 = np.exp(-0.5 * self.dt * gamma)[:, None, None]
        self.c2 = np.sqrt(1 - self.c1**2)
        # exact free evolution of each mode over dt: [[cos, sin / (m w)], [-m w sin, cos]]
        wt = self.omega * self.dt
        self.cos = np.cos(wt)[:, None, None]
        self.sin = np.sin(wt)[:, None, None]
        self.omega_column = self.omega[:, None, None]

    # ------------------------------------------------------------------ forces and steps
    def _evaluate(self) -> np.ndarray:
        forces = np.empty_like(self.q)
        for j, image in enumerate(self.images):
            image.positions = self.q[j]
            image.calc = self.calculator
            forces[j] = image.get_forces()
            results = dict(self.calculator.results)
            frozen = SinglePointCalculator(image, energy=results["energy"], forces=forces[j].copy())
            frozen.results.update({k: v for k, v in results.items() if k not in frozen.results})
            image.calc = frozen
        self.atoms.positions = self.q.mean(axis=0)
        return forces

    def _thermostat(self) -> None:
        modes = self._to_modes(self.p)
        noise = self.rng.standard_normal(modes.shape)
        modes = self.c1 * modes + np.sqrt(self.masses * self.kT) * self.c2 * noise
        self.p = self._to_beads(modes)

    def _free(self) -> None:
        q, p = self._to_modes(self.q), self._to_modes(self.p)
        m = self.masses
        q_new = np.empty_like(q)
        p_new = np.empty_like(p)
        q_new[0] = q[0] + p[0] / m[0] * self.dt
        p_new[0] = p[0]
        if self.beads > 1:
            w, cos, sin = self.omega_column[1:], self.cos[1:], self.sin[1:]
            q_new[1:] = cos * q[1:] + sin * p[1:] / (m * w)
            p_new[1:] = cos * p[1:] - m * w * sin * q[1:]
        self.q, self.p = self._to_beads(q_new), self._to_beads(p_new)

    def step(self) -> None:
        """One O B A B O step of ``timestep``."""
        self._thermostat()
        self.p += 0.5 * self.dt * self.forces
        self._free()
        self.forces = self._evaluate()
        self.p += 0.5 * self.dt * self.forces
        self._thermostat()
        self._share_momenta()

    def _share_momenta(self) -> None:
        """The beads' momenta at the physical temperature scale (divided by ``sqrt(P)``)."""
        for j, image in enumerate(self.images):
            image.set_momenta(self.p[j] / np.sqrt(self.beads), apply_constraint=False)

    def run(self, steps: int) -> None:
        for _ in range(int(steps)):
            self.step()

    # ------------------------------------------------------------------ estimators
    @property
    def centroid(self) -> np.ndarray:
        """(N, 3) Angstrom."""
        return self.q.mean(axis=0)

    def virial_kinetic_energy(self) -> float:
        """Centroid-virial estimator of the quantum kinetic energy (eV) of the current configuration:
        ``3 N k_B T / 2 + (1 / 2P) sum_j (q_j - q_c) . dV/dq_j``."""
        deviation = self.q - self.centroid[None]
        n_atoms = self.q.shape[1]
        return (
            1.5 * n_atoms * units.kB * self.temperature
            - 0.5 * float(np.sum(deviation * self.forces)) / self.beads
        )

    def gyration_radius(self) -> np.ndarray:
        """(N,) each atom's rms distance of its beads from their centroid, Angstrom."""
        deviation = self.q - self.centroid[None]
        return np.sqrt(np.mean(np.sum(deviation**2, axis=2), axis=0))
