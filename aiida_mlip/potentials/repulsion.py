"""Short-range nuclear repulsion: the ZBL universal screened Coulomb potential, switched off smoothly.

Ziegler, Biersack and Littmark, *The Stopping and Range of Ions in Solids* (Pergamon, 1985)::

    phi(r) = Z_i Z_j e^2 / (4 pi eps_0 r) * sum_k A_k exp(-B_k r / a),   a = 0.46850 / (Z_i^0.23 + Z_j^0.23)

with ``(A_k) = (0.18175, 0.50986, 0.28022, 0.02817)``, ``(B_k) = (3.19980, 0.94229, 0.40290, 0.20162)``
and ``a`` in Angstrom. It is multiplied by a switch that is 1 below ``inner`` and falls to 0 at
``outer`` with the quintic C2 step of :func:`aiida_mlip.potentials.descriptor.cutoff_envelope`, so
it only acts on configurations far closer than any training data. The committee learns the
remainder on top of it.
"""

from __future__ import annotations

import torch

from aiida_mlip.potentials.descriptor import cutoff_envelope

__all__ = ("COULOMB_CONSTANT", "zbl_pair_energy")

COULOMB_CONSTANT = 14.399645478425668  # e^2 / (4 pi eps_0), eV Angstrom
_AMPLITUDES = (0.18175, 0.50986, 0.28022, 0.02817)
_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)


def zbl_pair_energy(
    distances: torch.Tensor, z_centre: torch.Tensor, z_neighbour: torch.Tensor, inner: float, outer: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Switched ZBL energy of pairs and its derivative.

    Parameters
    ----------
    distances : (E,)
        Angstrom.
    z_centre, z_neighbour : (E,)
        Atomic numbers (as floating-point tensors).
    inner, outer
        Switching radii in Angstrom, ``0 < inner < outer``.

    Returns
    -------
    energy, derivative : (E,)
        ``phi(r) s(r)`` in eV and its derivative ``d(phi s)/dr`` in eV/Angstrom.
    """
    screening_length = 0.46850 / (z_centre**0.23 + z_neighbour**0.23)
    x = distances / screening_length
    screening = torch.zeros_like(distances)
    screening_derivative = torch.zeros_like(distances)
    for amplitude, exponent in zip(_AMPLITUDES, _EXPONENTS, strict=True):
        term = amplitude * torch.exp(-exponent * x)
        screening = screening + term
        screening_derivative = screening_derivative - exponent * term / screening_length
    prefactor = COULOMB_CONSTANT * z_centre * z_neighbour
    coulomb = prefactor / distances
    phi = coulomb * screening
    phi_derivative = coulomb * screening_derivative - phi / distances
    switch, switch_derivative = cutoff_envelope(torch.clamp((distances - inner) / (outer - inner), min=0.0))
    switch_derivative = switch_derivative / (outer - inner)
    return phi * switch, phi_derivative * switch + phi * switch_derivative
