"""The committee potential: one shared descriptor, K readout networks, energies, forces and stress.

Energy of a configuration for committee member ``k``::

    E_k = sum_i [ e0(s_i) + sigma * MLP_k(x_i, s_i) ] + 1/2 sum_{i != j} phi_ZBL(r_ij)

- ``x_i`` are the standardised invariant features of :class:`~.descriptor.PowerSpectrumDescriptor`
  (mean and standard deviation from the training set), shared by every member.
- ``MLP_k``: two hidden layers with SiLU; the centre element ``s_i`` enters as a per-element bias
  of the first layer (equivalent to concatenating its one-hot code). The K networks are stored as
  stacked weight tensors and evaluated with batched matrix products, never a Python loop.
- ``e0(s)``: per-element reference energies (eV), fitted by least squares on the composition of the
  training set; ``sigma`` (eV): the energy scale, the RMS force component of the training set.
- ``phi_ZBL``: optional switched repulsion of :mod:`~.repulsion`, the same for every member.

Forces and the strain derivative are obtained analytically: the readouts' input gradient is
written out (SiLU networks have a closed-form derivative), then pushed through the descriptor by
:meth:`~.descriptor.PowerSpectrumDescriptor.density_gradient` and ``pair_gradient``. For the
committee mean the K input gradients are averaged first (one pass through the descriptor); for
the committee spread they are pushed through together as a batch of K. No autograd graph is built
at inference; training differentiates these same expressions with autograd (forces in the loss).

Committees trained on bootstrap resamples with different seeds estimate the model error by their
spread (Perrone and Cooper 1993; for interatomic potentials e.g. Schran, Brezina and Marsalek,
J. Chem. Phys. 153, 104105 (2020); Imbalzano et al., J. Chem. Phys. 154, 074102 (2021)).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from aiida_mlip.potentials.descriptor import PowerSpectrumDescriptor
from aiida_mlip.potentials.model_file import ModelFileError, read_model_file, write_model_file
from aiida_mlip.potentials.neighbours import neighbour_list, pad_neighbours
from aiida_mlip.potentials.repulsion import zbl_pair_energy

__all__ = (
    "ARCHITECTURE",
    "ARCHITECTURE_VERSION",
    "AtomsBatch",
    "CommitteePotential",
    "load_committee",
    "resolve_device",
    "save_committee",
)

ARCHITECTURE = "aiida-mlip-power-spectrum-committee"
ARCHITECTURE_VERSION = 1


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when a GPU is visible, else the CPU.

    Raises
    ------
    RuntimeError
        If a CUDA device is asked for and none is visible.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {str(device)!r} was requested but CUDA is not available here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use device='auto' or 'cpu'"
        )
    return device


@dataclass
class AtomsBatch:
    """One or more configurations packed for the model.

    Attributes
    ----------
    species : (N,) int64
        Species index of each atom (position of its element in the model's ``elements``).
    atom_frame : (N,) int64
        Configuration of each atom, ``0 .. n_frames - 1``.
    neighbours : (N, M) int64
        Neighbour slots of each atom (:func:`~.neighbours.pad_neighbours`): every atom within the
        cutoff, unused slots pointing at the atom itself.
    vectors : (N, M, 3)
        Pair vectors ``r_neighbour - r_centre`` (periodic image included), Angstrom, model dtype;
        unused slots hold a vector longer than the cutoff.
    n_frames : int
    """

    species: torch.Tensor
    atom_frame: torch.Tensor
    neighbours: torch.Tensor
    vectors: torch.Tensor
    n_frames: int

    @property
    def n_atoms(self) -> int:
        return len(self.species)


class CommitteePotential(torch.nn.Module):
    """K readout networks over one shared power-spectrum descriptor.

    Parameters
    ----------
    elements
        Chemical symbols the model knows; their order defines the species indices.
    cutoff
        Angstrom.
    committee_size
        Number of members ``K``.
    hidden
        Width of the two hidden layers of each readout.
    n_radial, l_max, species_channels
        Descriptor settings, see :class:`~.descriptor.PowerSpectrumDescriptor`.
    repulsion_radius
        Outer radius (Angstrom) of the switched ZBL repulsion; ``None`` or 0 switches it off. It is
        fully on below ``0.6 * repulsion_radius``.
    seed
        Member ``k`` draws its initial weights from seed ``seed + k``.
    """

    def __init__(
        self,
        elements: list[str],
        cutoff: float = 5.0,
        committee_size: int = 4,
        hidden: int = 64,
        n_radial: int = 8,
        l_max: int = 3,
        species_channels: int | None = None,
        repulsion_radius: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if committee_size < 1:
            raise ValueError(f"committee_size must be >= 1, got {committee_size}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        unknown = [symbol for symbol in elements if atomic_numbers.get(symbol, 0) == 0]
        if unknown or not elements or len(set(elements)) != len(elements):
            raise ValueError(f"elements must be distinct chemical symbols, got {list(elements)}")
        self.elements = list(elements)
        self.committee_size = int(committee_size)
        self.hidden = int(hidden)
        self.repulsion_radius = float(repulsion_radius) if repulsion_radius else 0.0
        self.seed = int(seed)
        self.descriptor = PowerSpectrumDescriptor(len(elements), cutoff, n_radial, l_max, species_channels)
        n_features = self.descriptor.n_features
        n_species = len(elements)
        lookup = torch.full((len(chemical_symbols),), -1, dtype=torch.int64)
        numbers = torch.tensor([atomic_numbers[symbol] for symbol in elements])
        lookup[numbers] = torch.arange(n_species)
        self.register_buffer("species_lookup", lookup, persistent=False)
        self.register_buffer("atomic_numbers", numbers.to(torch.float64), persistent=False)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("reference_energies", torch.zeros(n_species))
        self.register_buffer("energy_scale", torch.ones(()))
        k, h = self.committee_size, self.hidden
        self.w1 = torch.nn.Parameter(torch.empty(k, n_features, h))
        self.b1 = torch.nn.Parameter(torch.zeros(k, n_species, h))
        self.w2 = torch.nn.Parameter(torch.empty(k, h, h))
        self.b2 = torch.nn.Parameter(torch.zeros(k, h))
        self.w3 = torch.nn.Parameter(torch.empty(k, h))
        self.b3 = torch.nn.Parameter(torch.zeros(k))
        self.reset_members()

    # ------------------------------------------------------------------ bookkeeping
    @property
    def cutoff(self) -> float:
        """Angstrom."""
        return self.descriptor.cutoff

    @property
    def neighbour_cutoff(self) -> float:
        """Angstrom: the reach of the neighbour lists, the cutoff less the shortening of a shortened copy
        (:func:`~.shortened.shortened_committee`; pairs beyond it contribute nothing)."""
        return self.descriptor.cutoff - self.descriptor.shortening

    @property
    def n_features(self) -> int:
        """Width of the descriptor each readout reads."""
        return self.descriptor.n_features

    @property
    def dtype(self) -> torch.dtype:
        return self.w1.dtype

    @property
    def device(self) -> torch.device:
        return self.w1.device

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments besides ``elements`` and ``committee_size``, JSON-serialisable."""
        return {
            "architecture_version": ARCHITECTURE_VERSION,
            "hidden": self.hidden,
            "repulsion_radius": self.repulsion_radius,
            "seed": self.seed,
            **self.descriptor.hyperparameters(),
        }

    def reset_members(self, members: list[int] | None = None) -> None:
        """Draw fresh readout weights for the given members (all by default), member ``k`` from seed ``seed + k``."""
        f, h = self.w1.shape[1], self.hidden
        with torch.no_grad():
            for k in range(self.committee_size) if members is None else members:
                generator = torch.Generator().manual_seed(self.seed + k)
                for parameter, fan_in in ((self.w1, f), (self.w2, h)):
                    value = torch.randn(parameter.shape[1:], generator=generator, dtype=torch.float64)
                    parameter[k] = value / fan_in**0.5
                self.w3[k] = torch.randn(h, generator=generator, dtype=torch.float64) / h**0.5
                self.b1[k], self.b2[k], self.b3[k] = 0.0, 0.0, 0.0

    def member(self, k: int) -> CommitteePotential:
        """Member ``k`` alone, as a committee of one (a copy sharing nothing, same descriptor and buffers).

        Used to evaluate a property once per member (:mod:`aiida_mlip.properties.committee`); its
        predictions equal the ``k``-th of the committee's to the last bit.
        """
        if not 0 <= k < self.committee_size:
            raise IndexError(f"member {k} of a committee of {self.committee_size}")
        single = copy.deepcopy(self)
        single.committee_size = 1
        with torch.no_grad():
            for name in ("w1", "b1", "w2", "b2", "w3", "b3"):
                setattr(single, name, torch.nn.Parameter(getattr(self, name)[k : k + 1].clone()))
        return single

    def species_of(self, numbers: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Species indices of atomic numbers; ``ValueError`` for an element the model does not know."""
        numbers = torch.as_tensor(np.asarray(numbers), dtype=torch.int64, device=self.species_lookup.device)
        species = self.species_lookup[numbers]
        if (species < 0).any():
            missing = sorted({chemical_symbols[int(z)] for z in numbers[species < 0]})
            raise ValueError(f"the model knows the elements {self.elements}, not {missing}")
        return species

    def batch(self, positions, numbers, cell, pbc, slots=None) -> AtomsBatch:
        """Pack one configuration (ASE-style arrays, Angstrom) into an :class:`AtomsBatch`.

        ``slots`` is an optional ``(neighbours, slot_shifts)`` layout from a
        :class:`~.neighbours.VerletList` (it may hold pairs beyond the cutoff).
        """
        positions = np.asarray(positions, dtype=np.float64)
        if slots is None:
            centre, neighbour, shifts = neighbour_list(positions, cell, pbc, self.neighbour_cutoff)
            slots = pad_neighbours(centre, neighbour, shifts, len(positions), 2 * self.cutoff + 1.0)
        neighbours, shifts = slots
        vectors = positions[neighbours] - positions[:, None, :] + shifts
        device = self.device
        return AtomsBatch(
            species=self.species_of(numbers),
            atom_frame=torch.zeros(len(positions), dtype=torch.int64, device=device),
            neighbours=torch.as_tensor(neighbours, device=device),
            vectors=torch.as_tensor(vectors, dtype=self.dtype, device=device),
            n_frames=1,
        )

    def join(self, batches: list[AtomsBatch]) -> AtomsBatch:
        """One :class:`AtomsBatch` of several (configurations in order, each its own frame).

        Atoms with fewer neighbour slots than the widest are padded with unused slots (the atom
        itself, a pair vector longer than the cutoff), which contribute exactly zero.
        """
        slots = max(batch.neighbours.shape[1] for batch in batches)
        far = 2 * self.cutoff + 1.0
        neighbours, vectors, atom_frame = [], [], []
        atoms = frames = 0
        for batch in batches:
            n_atoms, width = batch.neighbours.shape
            own = torch.arange(atoms, atoms + n_atoms, device=batch.neighbours.device)
            padding = own[:, None].expand(n_atoms, slots - width)
            neighbours.append(torch.cat([batch.neighbours + atoms, padding], 1))
            unused = batch.vectors.new_zeros((n_atoms, slots - width, 3))
            unused[..., 0] = far
            vectors.append(torch.cat([batch.vectors, unused], 1))
            atom_frame.append(batch.atom_frame + frames)
            atoms += n_atoms
            frames += batch.n_frames
        return AtomsBatch(
            species=torch.cat([batch.species for batch in batches]),
            atom_frame=torch.cat(atom_frame),
            neighbours=torch.cat(neighbours),
            vectors=torch.cat(vectors),
            n_frames=frames,
        )

    # ------------------------------------------------------------------ the model
    def invariant_features(self, batch: AtomsBatch) -> torch.Tensor:
        """(N, F) the standardised power spectrum of every atom: the readouts' input, shared by the members."""
        features = self.descriptor(batch.vectors, batch.species[batch.neighbours])
        return (features - self.feature_mean) / self.feature_std

    def forward(
        self,
        batch: AtomsBatch,
        committee: bool = True,
        forces: bool = True,
        strain_derivative: bool = False,
        hidden_features: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies, forces and strain derivatives of the configurations in ``batch``.

        Parameters
        ----------
        batch
            The configurations.
        committee
            ``True``: every member's predictions, with a leading dimension K. ``False``: only the
            committee mean (cheaper: the descriptor backward runs once instead of K times).
        forces
            Compute forces.
        strain_derivative
            Compute ``dE/d epsilon`` (eV), the energy's derivative with respect to a homogeneous
            strain of the configuration; the stress is this divided by the volume.
        hidden_features
            Also return the last hidden layer of every member.

        Returns
        -------
        dict
            ``"energy"`` ([K,] B) eV; ``"atomic_energies"`` ([K,] N) eV; ``"forces"`` ([K,] N, 3)
            eV/Angstrom; ``"strain_derivative"`` ([K,] B, 3, 3) eV; ``"hidden"`` (K, N, H).
        """
        descriptor = self.descriptor
        n_atoms, n_slots = batch.neighbours.shape
        geometry = descriptor.geometry(batch.vectors, batch.species[batch.neighbours])
        density = descriptor.density(geometry)
        features = descriptor.features(density)
        x = (features - self.feature_mean) / self.feature_std
        # K readouts as batched products: (N, F) @ (K, F, H) -> (K, N, H)
        a1 = torch.matmul(x, self.w1) + self.b1[:, batch.species, :]
        s1 = torch.sigmoid(a1)
        h1 = a1 * s1
        a2 = torch.matmul(h1, self.w2) + self.b2[:, None, :]
        s2 = torch.sigmoid(a2)
        h2 = a2 * s2
        output = (h2 * self.w3[:, None, :]).sum(-1) + self.b3[:, None]  # (K, N)
        atomic = self.reference_energies[batch.species] + self.energy_scale * output
        repulsion = None
        if self.repulsion_radius > 0:
            z = self.atomic_numbers.to(x.dtype)
            pair_energy, pair_derivative = zbl_pair_energy(
                geometry.distances,
                z[batch.species].repeat_interleave(n_slots),
                z[batch.species[batch.neighbours]].reshape(-1),
                0.6 * self.repulsion_radius,
                self.repulsion_radius,
            )
            repulsion = 0.5 * pair_derivative[:, None] * geometry.unit  # dE/dr_e (P, 3), shared by members
            atomic = atomic + 0.5 * pair_energy.view(n_atoms, n_slots).sum(-1)
        if not committee:
            atomic = atomic.mean(0)
        energy = torch.zeros((*atomic.shape[:-1], batch.n_frames), dtype=atomic.dtype, device=atomic.device)
        energy = energy.index_add_(-1, batch.atom_frame, atomic)
        results = {"energy": energy, "atomic_energies": atomic}
        if hidden_features:
            results["hidden"] = h2
        if not (forces or strain_derivative):
            return results
        # dE/dx of each readout, written out: d silu(a)/da = s (1 + a (1 - s))
        g2 = self.w3[:, None, :] * (s2 * (1.0 + a2 * (1.0 - s2)))
        g1 = torch.matmul(g2, self.w2.transpose(1, 2)) * (s1 * (1.0 + a1 * (1.0 - s1)))
        feature_gradient = torch.matmul(g1, self.w1.transpose(1, 2)) * (self.energy_scale / self.feature_std)
        if not committee:
            feature_gradient = feature_gradient.mean(0, keepdim=True)
        pair_gradient = descriptor.pair_gradient(
            geometry, descriptor.density_gradient(density, feature_gradient)
        )
        if repulsion is not None:
            pair_gradient = pair_gradient + repulsion[:, None, :]
        k = pair_gradient.shape[1]
        if forces:
            force = pair_gradient.view(n_atoms, n_slots, k, 3).sum(1)
            force = force.index_add_(0, batch.neighbours.reshape(-1), -pair_gradient)
            force = force.transpose(0, 1)
            results["forces"] = force if committee else force[0]
        if strain_derivative:
            per_atom = torch.bmm(
                pair_gradient.view(n_atoms, n_slots, k * 3).transpose(1, 2), batch.vectors
            ).view(n_atoms, k, 3, 3)  # sum over slots of dE/dr (x) r
            derivative = torch.zeros((batch.n_frames, k, 3, 3), dtype=per_atom.dtype, device=per_atom.device)
            derivative = derivative.index_add_(0, batch.atom_frame, per_atom).transpose(0, 1)
            derivative = 0.5 * (derivative + derivative.transpose(-1, -2))
            results["strain_derivative"] = derivative if committee else derivative[0]
        return results


def save_committee(
    model: CommitteePotential, path: str | os.PathLike, extra_metadata: dict[str, Any] | None = None
) -> str:
    """Write ``model`` as a model file (:mod:`~.model_file`) and return the file's sha256.

    ``extra_metadata`` is merged into the metadata (e.g. ``training_set_uuid``, training metrics).
    """
    metadata: dict[str, Any] = {
        "architecture": ARCHITECTURE,
        "elements": model.elements,
        "cutoff": model.cutoff,
        "committee_size": model.committee_size,
        "hyperparameters": model.hyperparameters(),
        "reference_energies": {
            symbol: float(value)
            for symbol, value in zip(model.elements, model.reference_energies.tolist(), strict=True)
        },
        "dtype": str(model.dtype).replace("torch.", ""),
        "training_set_uuid": None,
    }
    metadata.update(extra_metadata or {})
    return write_model_file(path, model.state_dict(), metadata)


def load_committee(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> CommitteePotential:
    """Read a model file written by :func:`save_committee` (weights digest checked).

    Parameters
    ----------
    path
        The ``.safetensors`` model file.
    device
        Torch device for the model.
    dtype
        Convert the model to this dtype (default: as stored).
    """
    tensors, metadata = read_model_file(path)
    if metadata.get("architecture") != ARCHITECTURE:
        raise ModelFileError(f"{path} holds a {metadata.get('architecture')!r} model, not {ARCHITECTURE!r}")
    hyper = dict(metadata.get("hyperparameters", {}))
    version = int(hyper.pop("architecture_version", 1))
    if version > ARCHITECTURE_VERSION:
        raise ModelFileError(f"{path} has architecture version {version}; upgrade aiida-mlip")
    model = CommitteePotential(
        elements=list(metadata["elements"]), committee_size=int(metadata["committee_size"]), **hyper
    )
    stored_dtype = next(iter(tensors.values())).dtype
    model.to(stored_dtype)
    model.load_state_dict(tensors)
    return model.to(device=device, dtype=dtype or stored_dtype)
