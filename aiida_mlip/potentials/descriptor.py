"""A smooth, invariant, element-aware many-body descriptor of atomic neighbourhoods, with its gradient.

Each atom ``i`` is described by the expansion of its neighbour density inside the cutoff ``r_c`` on
radial functions times real spherical harmonics (the SOAP / ACE atomic-base construction of
Bartok, Kondor and Csanyi, Phys. Rev. B 87, 184115 (2013) and Drautz, Phys. Rev. B 99, 014104
(2019))::

    c_{i q lm} = sum_{j in N(i)} W[s_j, c] R_n(r_ij) Y_lm(r_ij / r_ij),      q = (c, n)

and by its rotational invariants, the two-body terms ``c_{i q 00}`` and the power spectrum
(ACE ``B_2``, SOAP)::

    p_{i q q' l} = sum_m c_{i q lm} c_{i q' lm},       q <= q', l = 0 .. l_max

which resolves bond angles (a genuine three-body descriptor). The feature vector of an atom is
``[c_{i q 00}, p_{i q q' l}]`` of length ``Q + Q (Q + 1) / 2 (l_max + 1)``.

Pieces:

- ``R_n(r) = sqrt(2 / r_c) sin(n pi r / r_c) / r * f_c(r / r_c)``, ``n = 1 .. n_radial``: the
  spherical Bessel (sine) basis of Klicpera, Gross and Guennemann (DimeNet, ICLR 2020) multiplied by
  the quintic envelope ``f_c(x) = 1 - 10 x^3 + 15 x^4 - 6 x^5``, whose value, first and second
  derivative vanish at ``x = 1``: energies are C2 at the cutoff, forces C1.
- ``Y_lm``: orthonormal real spherical harmonics, ``l <= 3``, written as homogeneous polynomials
  (solid harmonics) of the unit vector so that their gradients are exact polynomials too.
- ``W[s, c]``: the neighbour species embedding. With at most ``species_channels`` elements it is
  one-hot (each element its own density); with more, each element gets a fixed unit vector in
  ``species_channels`` dimensions (a fixed "alchemical compression", Willatt, Musil and Ceriotti,
  Phys. Chem. Chem. Phys. 20, 29661 (2018)), so that the feature size stays bounded whatever the
  number of elements. The central atom's element enters the readout, not the descriptor.

The descriptor has no trainable parameters. This is what makes the committee fast: all members
share one descriptor evaluation, and the energy gradient is propagated through it analytically by
:meth:`PowerSpectrumDescriptor.density_gradient` and :meth:`PowerSpectrumDescriptor.pair_gradient`
(no autograd graph at inference; for training, autograd only flows through the readouts).

Units: distances in Angstrom; the features are dimensionless up to the radial normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = (
    "MAX_L",
    "PairGeometry",
    "PowerSpectrumDescriptor",
    "cutoff_envelope",
    "real_spherical_harmonics",
)

MAX_L = 3

# Real spherical harmonics r^l Y_lm as homogeneous polynomials: {(a, b, c): coefficient of x^a y^b z^c}.
# Orthonormal on the unit sphere, ordered by l then m = -l .. l (the usual real-harmonic convention).
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2A, _C2B, _C2C = 1.0925484305920792, 0.31539156525252005, 0.5462742152960396
_C3A, _C3B, _C3C, _C3D, _C3E = (
    0.5900435899266435,
    2.890611442640554,
    0.4570457994644658,
    0.3731763325901154,
    1.445305721320277,
)
_SOLID_HARMONICS: tuple[dict[tuple[int, int, int], float], ...] = (
    {(0, 0, 0): _C0},
    {(0, 1, 0): _C1},
    {(0, 0, 1): _C1},
    {(1, 0, 0): _C1},
    {(1, 1, 0): _C2A},
    {(0, 1, 1): _C2A},
    {(0, 0, 2): 2 * _C2B, (2, 0, 0): -_C2B, (0, 2, 0): -_C2B},
    {(1, 0, 1): _C2A},
    {(2, 0, 0): _C2C, (0, 2, 0): -_C2C},
    {(2, 1, 0): 3 * _C3A, (0, 3, 0): -_C3A},
    {(1, 1, 1): _C3B},
    {(0, 1, 2): 4 * _C3C, (2, 1, 0): -_C3C, (0, 3, 0): -_C3C},
    {(0, 0, 3): 2 * _C3D, (2, 0, 1): -3 * _C3D, (0, 2, 1): -3 * _C3D},
    {(1, 0, 2): 4 * _C3C, (3, 0, 0): -_C3C, (1, 2, 0): -_C3C},
    {(2, 0, 1): _C3E, (0, 2, 1): -_C3E},
    {(3, 0, 0): _C3A, (1, 2, 0): -3 * _C3A},
)
_MONOMIALS = tuple(
    (a, b, d - a - b) for d in range(MAX_L + 1) for a in range(d, -1, -1) for b in range(d - a, -1, -1)
)


def _harmonic_matrices(l_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the coefficient matrices of the harmonics and of their gradients over the monomials.

    Returns
    -------
    values : (n_monomials, (l_max + 1)^2)
        ``S_lm(u) = monomials(u) @ values``.
    gradients : (n_monomials, 3 (l_max + 1)^2)
        ``grad S_lm(u)[alpha] = monomials(u) @ gradients[:, 3 lm + alpha]``.
    degree : ((l_max + 1)^2,)
        ``l`` of each column.
    """
    n_lm = (l_max + 1) ** 2
    index = {monomial: k for k, monomial in enumerate(_MONOMIALS)}
    values = np.zeros((len(_MONOMIALS), n_lm))
    gradients = np.zeros((len(_MONOMIALS), 3 * n_lm))
    for lm, polynomial in enumerate(_SOLID_HARMONICS[:n_lm]):
        for powers, coefficient in polynomial.items():
            values[index[powers], lm] = coefficient
            for alpha in range(3):
                if powers[alpha]:
                    lowered = list(powers)
                    lowered[alpha] -= 1
                    gradients[index[tuple(lowered)], 3 * lm + alpha] += coefficient * powers[alpha]
    degree = np.concatenate([np.full(2 * ell + 1, ell) for ell in range(l_max + 1)])
    return values, gradients, degree


def _monomials(unit: torch.Tensor) -> torch.Tensor:
    """(E, 3) unit vectors -> (E, 20) monomials ``x^a y^b z^c`` with ``a + b + c <= 3``."""
    x, y, z = unit.unbind(-1)
    powers = [
        [torch.ones_like(x), x, x * x, x * x * x],
        [torch.ones_like(y), y, y * y, y * y * y],
        [torch.ones_like(z), z, z * z, z * z * z],
    ]
    columns = []
    for a, b, c in _MONOMIALS:
        term = powers[0][a] if a else None
        for axis, power in ((1, b), (2, c)):
            if power:
                term = powers[axis][power] if term is None else term * powers[axis][power]
        columns.append(torch.ones_like(x) if term is None else term)
    return torch.stack(columns, dim=-1)


def real_spherical_harmonics(unit: torch.Tensor, l_max: int = MAX_L) -> torch.Tensor:
    """Orthonormal real spherical harmonics of unit vectors.

    Parameters
    ----------
    unit : (E, 3)
        Unit vectors.
    l_max
        Largest degree, at most 3.

    Returns
    -------
    (E, (l_max + 1)^2)
        ``Y_lm``, ordered by ``l`` then ``m = -l .. l``.
    """
    values, _, _ = _harmonic_matrices(l_max)
    return _monomials(unit) @ torch.as_tensor(values, dtype=unit.dtype, device=unit.device)


def cutoff_envelope(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The quintic envelope ``f(x) = 1 - 10 x^3 + 15 x^4 - 6 x^5`` on ``[0, 1]``, zero beyond.

    ``f(1) = f'(1) = f''(1) = 0``: anything multiplied by it is C2 at ``x = 1``.

    Returns
    -------
    value, derivative : tensors shaped like ``x``
        ``f(x)`` and ``df/dx``.
    """
    inside = x < 1.0
    xc = torch.clamp(x, max=1.0)
    value = 1.0 - xc**3 * (10.0 - 15.0 * xc + 6.0 * xc * xc)
    derivative = -30.0 * xc * xc * (1.0 - xc) ** 2
    zero = torch.zeros_like(x)
    return torch.where(inside, value, zero), torch.where(inside, derivative, zero)


@dataclass
class PairGeometry:
    """Everything about the neighbourhoods of a set of atoms that does not depend on the model's weights.

    Pairs are stored in a padded layout: atom ``i`` has ``M`` neighbour slots (``M`` the largest
    neighbour count); unused slots hold a vector longer than the cutoff, so that every radial
    function and its derivative vanish there and no mask is needed. ``N`` atoms, ``P = N M`` slots.

    Attributes
    ----------
    vectors : (P, 3)
        ``r_neighbour - r_centre`` (with its periodic shift), Angstrom.
    distances : (P,)
        Angstrom.
    unit : (P, 3)
        ``vectors / distances``.
    radial : (N, M, Q)
        ``W[s_j, c] R_n(r)`` for the channels ``q = (c, n)``.
    radial_both : (N, 2 M, Q)
        ``radial`` stacked with its derivative ``W[s_j, c] dR_n/dr`` (1/Angstrom).
    harmonics : (P, LM)
        ``Y_lm`` of the unit vectors.
    low_monomials : (P, 10)
        The monomials of degree <= 2 of the unit vector, in which ``grad_u S_lm(u)`` (the gradient
        of the solid harmonic at the unit vector) is linear.
    """

    vectors: torch.Tensor
    distances: torch.Tensor
    unit: torch.Tensor
    radial: torch.Tensor
    radial_both: torch.Tensor
    harmonics: torch.Tensor
    low_monomials: torch.Tensor


class PowerSpectrumDescriptor(torch.nn.Module):
    """Density expansion on Bessel x spherical-harmonic functions and its power spectrum.

    Parameters
    ----------
    n_species
        Number of elements the model knows (species indices ``0 .. n_species - 1``).
    cutoff
        ``r_c`` in Angstrom.
    n_radial
        Number of radial basis functions per species channel.
    l_max
        Largest angular degree (0 to 3).
    species_channels
        Number of neighbour-species channels ``C``; ``None`` means ``min(n_species, 3)``. With
        ``n_species <= C`` the channels are one-hot per element.
    """

    def __init__(
        self,
        n_species: int,
        cutoff: float,
        n_radial: int = 8,
        l_max: int = 3,
        species_channels: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= l_max <= MAX_L:
            raise ValueError(f"l_max must be between 0 and {MAX_L}, got {l_max}")
        if n_radial < 1 or n_species < 1 or cutoff <= 0:
            raise ValueError("n_radial and n_species must be positive, and the cutoff > 0")
        channels = min(n_species, 3) if species_channels is None else int(species_channels)
        if channels < 1:
            raise ValueError(f"species_channels must be positive, got {channels}")
        self.n_species = int(n_species)
        self.cutoff = float(cutoff)
        #: Angstrom; > 0 only on a shortened copy (:mod:`~aiida_mlip.potentials.shortened`), never saved.
        self.shortening = 0.0
        self.n_radial = int(n_radial)
        self.l_max = int(l_max)
        self.species_channels = channels
        self.n_channels = channels * self.n_radial
        self.n_lm = (self.l_max + 1) ** 2
        values, gradients, degree = _harmonic_matrices(self.l_max)
        q = self.n_channels
        upper = torch.triu_indices(q, q)
        # Per-l block sum over m: (LM, L) indicator.
        blocks = torch.zeros(self.n_lm, self.l_max + 1, dtype=torch.float64)
        blocks[torch.arange(self.n_lm), torch.as_tensor(degree)] = 1.0
        self.register_buffer("harmonic_values", torch.as_tensor(values), persistent=False)
        # (LM, 10 * 3): coefficient of monomial mu (degree <= 2) in d S_lm / d u_alpha
        table = torch.as_tensor(gradients[:10]).view(10, self.n_lm, 3).permute(1, 0, 2).reshape(self.n_lm, 30)
        self.register_buffer("harmonic_gradient_table", table.contiguous(), persistent=False)
        self.register_buffer("degree", torch.as_tensor(degree, dtype=torch.float64), persistent=False)
        self.register_buffer("degree_index", torch.as_tensor(degree, dtype=torch.int64), persistent=False)
        self.register_buffer("blocks", blocks, persistent=False)
        self.register_buffer("upper_first", upper[0], persistent=False)
        self.register_buffer("upper_second", upper[1], persistent=False)
        self.register_buffer(
            "frequencies",
            torch.arange(1, self.n_radial + 1, dtype=torch.float64) * math.pi / self.cutoff,
            persistent=False,
        )
        self.register_buffer("species_embedding", self._embedding(), persistent=False)

    def _embedding(self) -> torch.Tensor:
        """(n_species, C) neighbour species weights: one-hot, or fixed unit vectors (seeded by index)."""
        if self.n_species <= self.species_channels:
            return torch.eye(self.n_species, self.species_channels, dtype=torch.float64)
        rows = []
        for species in range(self.n_species):
            vector = np.random.default_rng(1000 + species).normal(size=self.species_channels)
            rows.append(vector / np.linalg.norm(vector))
        return torch.as_tensor(np.array(rows))

    @property
    def n_features(self) -> int:
        """Length of an atom's feature vector."""
        q = self.n_channels
        return q + q * (q + 1) // 2 * (self.l_max + 1)

    def hyperparameters(self) -> dict:
        """What the constructor needs, JSON-serialisable."""
        return {
            "cutoff": self.cutoff,
            "n_radial": self.n_radial,
            "l_max": self.l_max,
            "species_channels": self.species_channels,
        }

    # ------------------------------------------------------------------ forward
    def geometry(self, vectors: torch.Tensor, neighbour_species: torch.Tensor) -> PairGeometry:
        """Evaluate the radial and angular functions of the neighbour slots.

        Parameters
        ----------
        vectors : (N, M, 3)
            Pair vectors in Angstrom, in the model's dtype; unused slots longer than the cutoff.
        neighbour_species : (N, M) int64
            Species index of the neighbour in each slot (any valid index for unused slots).
        """
        n_atoms, slots = vectors.shape[:2]
        dtype = vectors.dtype
        vectors = vectors.reshape(-1, 3)
        distances = torch.linalg.vector_norm(vectors, dim=-1)
        unit = vectors / distances[:, None]
        envelope, envelope_derivative = cutoff_envelope(distances / self.cutoff)
        envelope_derivative = envelope_derivative / self.cutoff
        if self.shortening > 0:  # the step of a shortened copy: 1 below r_c - 2 delta, 0 from r_c - delta
            step, step_derivative = cutoff_envelope(
                torch.clamp((distances - self.cutoff + 2 * self.shortening) / self.shortening, min=0.0)
            )
            envelope_derivative = envelope_derivative * step + envelope * step_derivative / self.shortening
            envelope = envelope * step
        frequencies = self.frequencies.to(dtype)
        arguments = distances[:, None] * frequencies
        norm = math.sqrt(2.0 / self.cutoff)
        sine, cosine = torch.sin(arguments), torch.cos(arguments)
        inverse = 1.0 / distances[:, None]
        bessel = norm * sine * inverse
        bessel_derivative = norm * (frequencies * cosine - sine * inverse) * inverse
        radial = bessel * envelope[:, None]
        radial_derivative = bessel_derivative * envelope[:, None] + bessel * envelope_derivative[:, None]
        both = torch.stack([radial, radial_derivative]).view(2, n_atoms, slots, self.n_radial)
        if self.species_channels > 1 or self.n_species > 1:
            weights = self.species_embedding.to(dtype)[neighbour_species]  # (N, M, C)
            both = (weights[None, :, :, :, None] * both[:, :, :, None, :]).reshape(2, n_atoms, slots, -1)
        monomials = _monomials(unit)
        harmonics = monomials @ self.harmonic_values.to(dtype)
        return PairGeometry(
            vectors=vectors,
            distances=distances,
            unit=unit,
            radial=both[0],
            radial_both=both.transpose(0, 1).reshape(n_atoms, 2 * slots, -1),
            harmonics=harmonics,
            low_monomials=monomials[:, :10],
        )

    def density(self, geometry: PairGeometry) -> torch.Tensor:
        """The density coefficients ``c_{i q lm}``, (N, Q, LM), as one batched product over the slots."""
        n_atoms, slots = geometry.radial.shape[:2]
        return torch.bmm(geometry.radial.transpose(1, 2), geometry.harmonics.view(n_atoms, slots, -1))

    def features(self, density: torch.Tensor) -> torch.Tensor:
        """Invariant features from the density: (N, F) = ``[c_{q00}, p_{q q' l} (q <= q')]``."""
        products = density[:, :, None, :] * density[:, None, :, :]
        spectrum = products @ self.blocks.to(density.dtype)  # (N, Q, Q, L)
        spectrum = spectrum[:, self.upper_first, self.upper_second, :].reshape(len(density), -1)
        return torch.cat([density[:, :, 0], spectrum], dim=1)

    def forward(self, vectors: torch.Tensor, neighbour_species: torch.Tensor) -> torch.Tensor:
        """(N, F) features of atoms with the neighbour slots ``vectors`` (N, M, 3), see :meth:`geometry`."""
        return self.features(self.density(self.geometry(vectors, neighbour_species)))

    # ------------------------------------------------------------------ analytic backward
    def density_gradient(self, density: torch.Tensor, feature_gradient: torch.Tensor) -> torch.Tensor:
        """Chain rule from the features to the density, for a batch of K energy functions.

        Parameters
        ----------
        density : (N, Q, LM)
        feature_gradient : (K, N, F)
            ``dE_k/d features`` (K committee members, or K = 1 for their mean).

        Returns
        -------
        (K, N, Q, LM)
            ``dE_k/dc_{i q lm}``.
        """
        q = self.n_channels
        n_l = self.l_max + 1
        k, n_atoms = feature_gradient.shape[:2]
        spectral = feature_gradient[..., q:].reshape(k, n_atoms, -1, n_l)
        matrix = feature_gradient.new_zeros((k, n_atoms, n_l, q, q))
        matrix[:, :, :, self.upper_first, self.upper_second] = spectral.transpose(-1, -2)
        matrix = matrix + matrix.transpose(-1, -2)  # symmetric; the diagonal counts twice (d c^2 = 2 c)
        blocks = [
            torch.matmul(matrix[:, :, ell], density[:, :, ell * ell : (ell + 1) ** 2]) for ell in range(n_l)
        ]  # dE/dc_{q lm} = sum_q' S_{q q' l} c_{q' lm}
        blocks[0] = blocks[0] + feature_gradient[..., :q, None]
        return torch.cat(blocks, dim=-1)

    def pair_gradient(self, geometry: PairGeometry, density_gradient: torch.Tensor) -> torch.Tensor:
        """Chain rule from the density to the pair vectors, for a batch of K energy functions.

        Parameters
        ----------
        geometry
            The neighbour slots, from :meth:`geometry`.
        density_gradient : (K, N, Q, LM)
            ``dE_k/dc``, from :meth:`density_gradient`.

        Returns
        -------
        (P, K, 3)
            ``dE_k/d r_e`` for each slot's pair vector ``r_e = r_neighbour - r_centre``, eV/Angstrom
            (zero in unused slots).
        """
        n_atoms, slots = geometry.radial.shape[:2]
        k = density_gradient.shape[0]
        per_atom = density_gradient.permute(1, 2, 0, 3).reshape(n_atoms, self.n_channels, k * self.n_lm)
        both = torch.bmm(geometry.radial_both, per_atom).view(n_atoms, 2, slots, k, self.n_lm)
        a = both[:, 0].reshape(-1, k, self.n_lm)  # sum_q R_q dE/dc_q  (P, K, LM)
        b = both[:, 1].reshape(-1, k, self.n_lm)  # sum_q R'_q dE/dc_q
        y = geometry.harmonics[:, None, :]
        inverse = 1.0 / geometry.distances[:, None]
        along = (b * y).sum(-1) - (a * (y * self.degree.to(y.dtype))).sum(-1) * inverse
        # sum_lm a_lm grad S_lm(u) = sum_mu u^mu (a @ C)_mu: one GEMM, then the 10 monomials
        coefficients = torch.matmul(a, self.harmonic_gradient_table.to(a.dtype)).view(-1, k, 10, 3)
        across = (coefficients * geometry.low_monomials[:, None, :, None]).sum(-2) * inverse[:, :, None]
        return along[..., None] * geometry.unit[:, None, :] + across
