"""A committee of MACE models (mace-torch) behind the interface of the built-in committee.

:class:`MaceCommittee` holds K independently initialised ``mace.modules.ScaleShiftMACE`` members
(member ``k`` drawn from seed ``seed + k``) and answers ``forward(batch, committee, forces,
strain_derivative, hidden_features)`` with the same keys and shapes as
:meth:`aiida_mlip.potentials.committee.CommitteePotential.forward`, so the training loop of
:mod:`aiida_mlip.potentials.train` (bootstrap weights, loss, early stopping, metrics) trains it
unchanged. The graph of a configuration is built here from :func:`~aiida_mlip.potentials.neighbours.neighbour_list`
(MACE's ``edge_index`` is ``[centre, neighbour]``, its ``shifts`` the Cartesian image shifts and
``unit_shifts`` the integer ones); no MACE data loader is involved.

Each member's energy is ``sum_i e0(s_i) + scale * (MACE interaction energy)``, with ``e0`` the
least-squares per-element references of the training set and ``scale`` its RMS force component,
the normalisation the built-in committee uses (:func:`~aiida_mlip.potentials.training_data.energy_statistics`);
the average number of neighbours that MACE divides its messages by is that of the training frames.

Model files (:mod:`~aiida_mlip.potentials.model_file`) hold every member's ``state_dict`` (tensor
names ``members.<k>.<name>``) and the metadata ``backend: "mace"``, ``backend_version`` (the
mace-torch version) and ``hyperparameters``: everything :func:`build_members` needs to rebuild the
members before their weights are loaded. No pickle: a MACE file loads as safely as a built-in one.

Units: Angstrom, eV, eV/Angstrom.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from aiida_mlip.potentials.backends import BackendUnavailable
from aiida_mlip.potentials.backends.mace_settings import INSTALL_HINT, mace_version
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.model_file import ModelFileError, read_model_file, write_model_file
from aiida_mlip.potentials.neighbours import neighbour_list
from aiida_mlip.potentials.training_data import FrameSet, energy_statistics

__all__ = (
    "ARCHITECTURE",
    "MaceBatch",
    "MaceCommittee",
    "MaceFrameSet",
    "build_committee",
    "mace_modules",
    "load_mace_committee",
    "save_mace_committee",
)

ARCHITECTURE = "mace-committee"


def mace_modules():
    with warnings.catch_warnings():
        # importing mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (e3nn's constants file needs it), which
        # e3nn then reports on stderr; mace first, so that e3nn's import sees it
        warnings.filterwarnings(
            "ignore", "Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", UserWarning
        )
        try:
            from mace import modules  # isort: skip
            from e3nn import o3
        except ImportError as exception:
            raise BackendUnavailable(f"{INSTALL_HINT} ({exception})") from None
    return o3, modules


def _member_arguments(hyper: dict[str, Any], o3, modules) -> dict[str, Any]:
    """The ``ScaleShiftMACE`` constructor arguments of a model file's ``hyperparameters``.

    Two forms: the small architecture :func:`build_committee` writes (``n_radial``, ``interactions``,
    ``readout_channels``...), and the full constructor arguments of an adopted mace-torch model
    (:func:`~.mace_parent.mace_config`, marked by ``interaction_cls``), with classes and functions
    by name.
    """
    if "interaction_cls" not in hyper:
        interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        return {
            "r_max": float(hyper["r_max"]),
            "num_bessel": int(hyper["n_radial"]),
            "num_polynomial_cutoff": int(hyper["polynomial_cutoff"]),
            "max_ell": int(hyper["max_ell"]),
            "interaction_cls": interaction,
            "interaction_cls_first": interaction,
            "num_interactions": int(hyper["interactions"]),
            "num_elements": len(hyper["atomic_numbers"]),
            "hidden_irreps": o3.Irreps(hyper["hidden_irreps"]),
            "MLP_irreps": o3.Irreps(f"{int(hyper['readout_channels'])}x0e"),
            "atomic_energies": np.asarray(hyper["atomic_energies"], dtype=np.float64),
            "avg_num_neighbors": float(hyper["avg_num_neighbors"]),
            "atomic_numbers": [int(z) for z in hyper["atomic_numbers"]],
            "correlation": int(hyper["correlation"]),
            "gate": torch.nn.functional.silu,
            "atomic_inter_scale": float(hyper["scale"]),
            "atomic_inter_shift": 0.0,
        }
    from mace.modules import blocks

    arguments = dict(hyper)
    for key in ("interaction_cls", "interaction_cls_first", "readout_cls"):
        arguments[key] = getattr(blocks, arguments[key])
    for key in ("hidden_irreps", "MLP_irreps", "edge_irreps"):
        if arguments.get(key) is not None:
            arguments[key] = o3.Irreps(arguments[key])
    gate = arguments.get("gate")
    arguments["gate"] = None if gate is None else getattr(torch.nn.functional, gate)
    arguments["atomic_energies"] = np.asarray(arguments["atomic_energies"], dtype=np.float64)
    for key in ("atomic_inter_scale", "atomic_inter_shift"):
        arguments[key] = np.asarray(arguments[key], dtype=np.float64)
    return arguments


def build_members(hyper: dict[str, Any], committee_size: int, seed: int) -> list[torch.nn.Module]:
    """K ``ScaleShiftMACE`` members from the ``hyperparameters`` of a model file; member k from seed ``seed + k``."""
    o3, modules = mace_modules()
    arguments = _member_arguments(hyper, o3, modules)
    members = []
    state = torch.random.get_rng_state()
    try:
        with warnings.catch_warnings():
            # e3nn's TorchScript compilation of MACE's blocks, not ours to fix
            warnings.filterwarnings("ignore", "The TorchScript type system", UserWarning)
            warnings.filterwarnings("ignore", r"`torch\.jit\.(save|load)` is deprecated", DeprecationWarning)
            for k in range(committee_size):
                torch.manual_seed(seed + k)
                members.append(modules.ScaleShiftMACE(**arguments))
    finally:
        torch.random.set_rng_state(state)
    return members


def _invariant_columns(member: torch.nn.Module) -> torch.Tensor:
    """Indices of the scalar (``0e``) channels in MACE's ``node_feats`` output (every layer, concatenated)."""
    columns, offset = [], 0
    for product in member.products:
        for mul, irrep in product.linear.irreps_out:
            width = mul * irrep.dim
            if irrep.l == 0 and irrep.p == 1:
                columns.extend(range(offset, offset + width))
            offset += width
    return torch.tensor(columns, dtype=torch.int64)


@dataclass
class MaceBatch:
    """One or more configurations as a MACE graph.

    Attributes
    ----------
    data : dict
        MACE's input: ``positions`` (N, 3), ``node_attrs`` (N, S) one-hot, ``edge_index`` (2, E)
        ``[centre, neighbour]``, ``shifts`` (E, 3) Angstrom, ``unit_shifts`` (E, 3), ``cell``
        (B * 3, 3), ``batch`` (N,), ``ptr`` (B + 1,).
    atom_frame : (N,) int64
        Configuration of each atom (the same tensor as ``data["batch"]``).
    n_frames : int
    """

    data: dict[str, torch.Tensor]
    atom_frame: torch.Tensor
    n_frames: int

    @property
    def n_atoms(self) -> int:
        return len(self.atom_frame)


def _graph(positions, cell, pbc, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``edge_index`` (2, E), Cartesian ``shifts`` (E, 3) and integer ``unit_shifts`` (E, 3) of one configuration."""
    centre, neighbour, shifts = neighbour_list(positions, cell, pbc, cutoff)
    unit_shifts = np.rint(shifts @ np.linalg.pinv(np.asarray(cell, dtype=np.float64)))
    return np.stack([centre, neighbour]), shifts, unit_shifts


class MaceCommittee(torch.nn.Module):
    """K MACE models over the same elements and cutoff, evaluated as one committee.

    Parameters
    ----------
    elements
        Chemical symbols, in the order of the one-hot node attributes.
    hyperparameters
        See :func:`build_members` (``r_max`` in Angstrom, ``atomic_energies`` in eV, ``scale`` in eV).
    committee_size
        K.
    seed
        Member ``k`` draws its initial weights from ``seed + k``.
    members
        Already built members (as loaded or copied); built from the hyperparameters otherwise.
    """

    def __init__(
        self,
        elements: list[str],
        hyperparameters: dict[str, Any],
        committee_size: int,
        seed: int = 0,
        members: list[torch.nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.elements = list(elements)
        self.hyperparameters = dict(hyperparameters)
        self.committee_size = int(committee_size)
        self.seed = int(seed)
        built = members if members is not None else build_members(self.hyperparameters, committee_size, seed)
        self.members = torch.nn.ModuleList(built)
        lookup = torch.full((len(chemical_symbols),), -1, dtype=torch.int64)
        lookup[torch.tensor([atomic_numbers[symbol] for symbol in self.elements])] = torch.arange(
            len(elements)
        )
        self.register_buffer("species_lookup", lookup, persistent=False)
        self.register_buffer("invariant_columns", _invariant_columns(self.members[0]), persistent=False)

    # ------------------------------------------------------------------ bookkeeping
    @property
    def cutoff(self) -> float:
        """Angstrom."""
        return float(self.hyperparameters["r_max"])

    @property
    def n_features(self) -> int:
        """Invariant node features per member (every interaction layer)."""
        return len(self.invariant_columns)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.members.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.members.parameters()).device

    def member(self, k: int) -> MaceCommittee:
        """Member ``k`` alone, as a committee of one (a copy)."""
        if not 0 <= k < self.committee_size:
            raise IndexError(f"member {k} of a committee of {self.committee_size}")
        return MaceCommittee(
            self.elements, self.hyperparameters, 1, self.seed + k, [copy.deepcopy(self.members[k])]
        ).to(device=self.device)

    def species_of(self, numbers) -> torch.Tensor:
        """Species indices of atomic numbers; ``ValueError`` for an element the model does not know."""
        numbers = torch.as_tensor(np.asarray(numbers), dtype=torch.int64, device=self.species_lookup.device)
        species = self.species_lookup[numbers]
        if (species < 0).any():
            missing = sorted({chemical_symbols[int(z)] for z in numbers[species < 0]})
            raise ValueError(f"the model knows the elements {self.elements}, not {missing}")
        return species

    def pack(self, species, positions, cells, graphs, natoms) -> MaceBatch:
        """A :class:`MaceBatch` from per-configuration arrays (``graphs``: :func:`_graph` results)."""
        device, dtype = self.device, self.dtype
        offsets = np.concatenate([[0], np.cumsum(natoms)])
        edge_index = np.concatenate(
            [edges + offset for (edges, _, _), offset in zip(graphs, offsets, strict=False)], 1
        )
        frame = torch.as_tensor(np.repeat(np.arange(len(natoms)), natoms), device=device)
        node_attrs = torch.nn.functional.one_hot(
            torch.as_tensor(species, device=device), len(self.elements)
        ).to(dtype)
        data = {
            "positions": torch.as_tensor(positions, dtype=dtype, device=device),
            "node_attrs": node_attrs,
            "edge_index": torch.as_tensor(edge_index, dtype=torch.int64, device=device),
            "shifts": torch.as_tensor(np.concatenate([g[1] for g in graphs]), dtype=dtype, device=device),
            "unit_shifts": torch.as_tensor(
                np.concatenate([g[2] for g in graphs]), dtype=dtype, device=device
            ),
            "cell": torch.as_tensor(np.concatenate(cells), dtype=dtype, device=device),
            "batch": frame,
            "ptr": torch.as_tensor(offsets, dtype=torch.int64, device=device),
        }
        return MaceBatch(data=data, atom_frame=frame, n_frames=len(natoms))

    def batch(self, positions, numbers, cell, pbc, slots=None) -> MaceBatch:
        """Pack one configuration (ASE-style arrays, Angstrom) into a :class:`MaceBatch`.

        ``slots`` is an optional ``(neighbours, slot_shifts)`` layout from a
        :class:`~aiida_mlip.potentials.neighbours.VerletList` (pairs within cutoff + skin): the
        pairs now within the cutoff become the edges, so the calculator reuses its Verlet list.
        """
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        if slots is None:
            graph = _graph(positions, cell, pbc, self.cutoff)
        else:
            neighbours, slot_shifts = slots
            centre = np.repeat(np.arange(len(positions)), neighbours.shape[1])
            neighbour, shifts = neighbours.reshape(-1), slot_shifts.reshape(-1, 3)
            vectors = positions[neighbour] - positions[centre] + shifts
            near = np.einsum("ij,ij->i", vectors, vectors) < self.cutoff**2
            shifts = shifts[near]
            graph = (
                np.stack([centre[near], neighbour[near]]),
                shifts,
                np.rint(shifts @ np.linalg.pinv(cell)),
            )
        return self.pack(self.species_of(numbers).cpu().numpy(), positions, [cell], [graph], [len(positions)])

    def join(self, batches: list[MaceBatch]) -> MaceBatch:
        """One :class:`MaceBatch` of several (configurations in order, each its own graph)."""
        atoms = np.cumsum([0] + [batch.n_atoms for batch in batches])
        frames = np.cumsum([0] + [batch.n_frames for batch in batches])
        data = {
            key: torch.cat([batch.data[key] for batch in batches])
            for key in ("positions", "node_attrs", "shifts", "unit_shifts", "cell")
        }
        data["edge_index"] = torch.cat(
            [batch.data["edge_index"] + int(offset) for batch, offset in zip(batches, atoms, strict=False)], 1
        )
        frame = torch.cat(
            [batch.atom_frame + int(offset) for batch, offset in zip(batches, frames, strict=False)]
        )
        data["batch"] = frame
        data["ptr"] = torch.cat(
            [batches[0].data["ptr"][:1]]
            + [batch.data["ptr"][1:] + int(offset) for batch, offset in zip(batches, atoms, strict=False)]
        )
        return MaceBatch(data=data, atom_frame=frame, n_frames=int(frames[-1]))

    def invariant_features(self, batch: MaceBatch) -> torch.Tensor:
        """(N, F) the invariant node features of member 0 (every interaction layer's ``0e`` channels)."""
        return self.member_features(batch)[0]

    def member_features(self, batch: MaceBatch) -> torch.Tensor:
        """(K, N, F) every member's invariant node features."""
        return self(batch, forces=False, hidden_features=True)["hidden"]

    # ------------------------------------------------------------------ the model
    def forward(
        self,
        batch: MaceBatch,
        committee: bool = True,
        forces: bool = True,
        strain_derivative: bool = False,
        hidden_features: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies, forces and strain derivatives: the keys and shapes of ``CommitteePotential.forward``.

        Returns
        -------
        dict
            ``"energy"`` ([K,] B) eV; ``"atomic_energies"`` ([K,] N) eV; ``"forces"`` ([K,] N, 3)
            eV/Angstrom; ``"strain_derivative"`` ([K,] B, 3, 3) eV (``dE/d epsilon``, minus MACE's
            virial); ``"hidden"`` (K, N, F): each member's invariant node features. Under
            ``torch.no_grad`` the results are detached (MACE's forces are autograd derivatives, so
            the members always run with gradients on); otherwise they carry the graph for training.
        """
        training = torch.is_grad_enabled()
        stress = bool(strain_derivative)
        outputs = []
        with torch.enable_grad():
            for member in self.members:
                data = dict(batch.data)
                data["positions"] = batch.data["positions"].detach().clone()
                outputs.append(
                    member(
                        data,
                        training=training,
                        compute_force=forces or stress,
                        compute_virials=stress,
                        compute_stress=False,
                    )
                )

        def stack(key: str) -> torch.Tensor:
            values = torch.stack([output[key] for output in outputs])
            return values if training else values.detach()

        dtype = self.dtype
        results = {"energy": stack("energy"), "atomic_energies": stack("node_energy").to(dtype)}
        if forces:
            results["forces"] = stack("forces")
        if stress:
            results["strain_derivative"] = -stack("virials")
        if not committee:
            results = {key: value.mean(0) for key, value in results.items()}
        if hidden_features:
            results["hidden"] = stack("node_feats")[..., self.invariant_columns]
        return results


class MaceFrameSet(FrameSet):
    """Labelled frames with their MACE graphs, cut into :class:`MaceBatch` es (as :class:`FrameSet`)."""

    def __init__(self, frames: Frames, model: MaceCommittee) -> None:
        self.set_labels(frames, model)
        self.graphs = []
        for index in range(self.n_frames):
            start, stop = frames.offsets[index], frames.offsets[index + 1]
            self.graphs.append(
                _graph(frames.positions[start:stop], frames.cells[index], frames.pbc[index], model.cutoff)
            )

    def batch(self, indices: np.ndarray, model: MaceCommittee) -> tuple[MaceBatch, dict[str, torch.Tensor]]:
        """Pack the frames ``indices`` into one batch and its targets."""
        atom_index = self.atom_index(indices)
        batch = model.pack(
            self.species[atom_index],
            self.frames.positions[atom_index],
            [self.frames.cells[i] for i in indices],
            [self.graphs[i] for i in indices],
            self.natoms[indices],
        )
        return batch, self.targets(indices, model.device, model.dtype)

    def mean_neighbours(self) -> float:
        """Average number of neighbours within the cutoff per atom (MACE's ``avg_num_neighbors``)."""
        return float(sum(graph[0].shape[1] for graph in self.graphs) / max(self.frames.n_atoms, 1))


class _Species:
    """Maps atomic numbers to species indices of ``elements`` (what :meth:`FrameSet.set_labels` needs)."""

    def __init__(self, elements: list[str]) -> None:
        self.elements = elements
        self.index = {atomic_numbers[symbol]: k for k, symbol in enumerate(elements)}

    def species_of(self, numbers) -> torch.Tensor:
        return torch.as_tensor([self.index[int(z)] for z in numbers], dtype=torch.int64)


def build_committee(frames: Frames, elements: list[str], config) -> MaceCommittee:
    """A new MACE committee for the training frames: references, scale and neighbour count fitted on them.

    ``config`` is the ``training`` settings (:class:`~aiida_mlip.potentials.train.TrainConfig`):
    ``cutoff`` (Angstrom), ``committee_size``, ``seed`` and the ``mace`` block.
    """
    species = _Species(elements)
    labels = FrameSet.__new__(FrameSet)
    labels.set_labels(frames, species)
    references, scale = energy_statistics(labels, len(elements))
    edges = sum(
        len(neighbour_list(frame.positions, frame.cell.array, frame.pbc, config.cutoff)[0])
        for frame in frames.to_atoms()
    )
    settings = config.mace
    hyper = {
        "r_max": float(config.cutoff),
        "n_radial": settings.n_radial,
        "polynomial_cutoff": settings.polynomial_cutoff,
        "max_ell": settings.max_ell,
        "interactions": settings.interactions,
        "hidden_irreps": settings.hidden_irreps(),
        "readout_channels": settings.readout_channels,
        "correlation": settings.correlation,
        "atomic_numbers": [atomic_numbers[symbol] for symbol in elements],
        "atomic_energies": [float(value) for value in references],
        "avg_num_neighbors": max(edges / max(frames.n_atoms, 1), 1.0),
        "scale": float(scale),
    }
    return MaceCommittee(elements, hyper, config.committee_size, config.seed)


def save_mace_committee(
    model: MaceCommittee, path: str | os.PathLike, extra_metadata: dict[str, Any] | None = None
) -> str:
    """Write ``model`` as a model file and return the file's sha256 (``extra_metadata`` merged in)."""
    metadata: dict[str, Any] = {
        "architecture": ARCHITECTURE,
        "backend": "mace",
        "backend_version": mace_version(),
        "elements": model.elements,
        "cutoff": model.cutoff,
        "committee_size": model.committee_size,
        "seed": model.seed,
        "hyperparameters": model.hyperparameters,
        "reference_energies": dict(
            zip(model.elements, model.hyperparameters["atomic_energies"], strict=True)
        ),
        "dtype": str(model.dtype).replace("torch.", ""),
        "training_set_uuid": None,
    }
    metadata.update(extra_metadata or {})
    # safetensors refuses tensors that share memory: every one is written as its own copy
    tensors = {name: value.detach().clone() for name, value in model.state_dict().items()}
    return write_model_file(path, tensors, metadata)


def load_mace_committee(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> MaceCommittee:
    """Read a model file written by :func:`save_mace_committee` (integrity record checked)."""
    tensors, metadata = read_model_file(path)
    if metadata.get("architecture") != ARCHITECTURE:
        raise ModelFileError(f"{path} holds a {metadata.get('architecture')!r} model, not {ARCHITECTURE!r}")
    model = MaceCommittee(
        list(metadata["elements"]),
        dict(metadata["hyperparameters"]),
        int(metadata["committee_size"]),
        int(metadata.get("seed", 0)),
    )
    stored_dtype = next(value.dtype for value in tensors.values() if value.is_floating_point())
    model.to(stored_dtype)
    model.load_state_dict(tensors)
    return model.to(device=device, dtype=dtype or stored_dtype)
