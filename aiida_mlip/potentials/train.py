"""Training a committee potential on energies, forces and stresses.

All K members are trained together, on the same batches, each on its own bootstrap resample of the
training frames (Efron 1979): member ``k`` weights frame ``f`` by the number of times ``f`` was
drawn in a resample of the training set with replacement (seed ``seed + k``), and starts from its
own random weights. The shared descriptor is evaluated once per batch.

Loss of member ``k`` on a batch (bootstrap-weighted means over frames, atoms)::

    L_k = w_E <((E_k - E) / N)^2> + w_F <|F_k - F|^2> / 3 + w_S <|(sigma_k - sigma) V / N|^2> / 6

energies per atom in eV/atom, forces in eV/Angstrom, and the stress as the virial per atom
``sigma V / N`` (eV/atom, which puts it on the scale of the energy per atom); frames without a
stress label do not enter the stress term. The optimiser (Adam or AdamW) minimises ``sum_k L_k``;
since the members share no parameter, this trains each of them independently.

Early stopping watches the validation loss (the members' mean); the weights of the best epoch are
kept. A non-finite loss stops training with status ``"nan_loss"``, a validation loss above
``divergence_factor`` times the initial one with ``"diverged"``; either way the result holds the
last good weights.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from aiida_mlip.potentials.committee import (
    AtomsBatch,
    CommitteePotential,
    load_committee,
    resolve_device,
    save_committee,
)
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.neighbours import neighbour_list, pad_neighbours

__all__ = (
    "TrainConfig",
    "TrainResult",
    "evaluate_frames",
    "load_committee",
    "save_committee",
    "train_committee",
    "write_learning_curve",
)

_ARCHITECTURE_KEYS = ("cutoff", "n_radial", "l_max", "species_channels", "hidden", "repulsion_radius")


@dataclass
class TrainConfig:
    """Settings of :func:`train_committee`. Units: Angstrom, eV.

    Attributes
    ----------
    committee_size
        Number of members K (ignored on a warm start: the initial committee decides).
    cutoff
        Descriptor cutoff, Angstrom.
    n_radial, l_max, species_channels
        Descriptor resolution (:class:`~.descriptor.PowerSpectrumDescriptor`).
    hidden
        Width of the two hidden layers of each member.
    repulsion_radius
        Outer radius (Angstrom) of the ZBL repulsion, or ``None`` for none.
    max_epochs
        Upper bound on the number of epochs.
    batch_size
        Frames per optimiser step.
    lr, min_lr
        Initial and final learning rate.
    optimizer
        ``"adamw"`` or ``"adam"``.
    weight_decay
        Decoupled weight decay (AdamW) or L2 (Adam).
    scheduler
        ``"cosine"`` (from ``lr`` to ``min_lr`` over ``max_epochs``), ``"plateau"`` (halve when the
        validation loss has not improved for ``patience // 4`` epochs) or ``"constant"``.
    energy_weight, forces_weight, stress_weight
        Loss weights of the energy per atom, the forces and the virial per atom.
    valid_fraction
        Fraction of the frames held out for validation when no validation set is given.
    patience
        Stop after this many epochs without a better validation loss.
    bootstrap
        Train each member on a bootstrap resample (``False``: every member sees all frames once).
    gradient_clip
        Largest gradient norm per step (0: no clipping).
    divergence_factor
        Stop with status ``"diverged"`` when the validation loss exceeds this times its initial value.
    seed
        Seed of the split, the resamples, the batches and the initial weights.
    dtype
        ``"float32"`` or ``"float64"``.
    """

    committee_size: int = 4
    cutoff: float = 5.0
    n_radial: int = 8
    l_max: int = 3
    species_channels: int | None = None
    hidden: int = 64
    repulsion_radius: float | None = None
    max_epochs: int = 200
    batch_size: int = 4
    lr: float = 5e-3
    min_lr: float = 5e-5
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    energy_weight: float = 10.0
    forces_weight: float = 1.0
    stress_weight: float = 1.0
    valid_fraction: float = 0.1
    patience: int = 50
    bootstrap: bool = True
    gradient_clip: float = 10.0
    divergence_factor: float = 1e3
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        positive_int = ("committee_size", "n_radial", "hidden", "max_epochs", "batch_size", "patience")
        for name in positive_int:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("cutoff", "lr", "divergence_factor"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in (
            "min_lr",
            "weight_decay",
            "energy_weight",
            "forces_weight",
            "stress_weight",
            "gradient_clip",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.energy_weight + self.forces_weight + self.stress_weight == 0:
            raise ValueError("at least one of energy_weight, forces_weight, stress_weight must be > 0")
        if not isinstance(self.l_max, int) or not 0 <= self.l_max <= 3:
            raise ValueError(f"l_max must be an integer from 0 to 3, got {self.l_max!r}")
        if self.species_channels is not None and (
            not isinstance(self.species_channels, int) or self.species_channels < 1
        ):
            raise ValueError(
                f"species_channels must be an integer >= 1 or null, got {self.species_channels!r}"
            )
        if self.repulsion_radius is not None and not (0 < self.repulsion_radius < self.cutoff):
            raise ValueError(
                f"repulsion_radius must be between 0 and the cutoff, got {self.repulsion_radius!r}"
            )
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("cosine", "plateau", "constant"):
            raise ValueError(f"scheduler must be 'cosine', 'plateau' or 'constant', got {self.scheduler!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainConfig:
        """Build a configuration from a mapping; unknown keys raise ``ValueError`` naming them.

        Numbers given as strings (YAML reads ``1e-3`` as a string) are converted for the
        floating-point settings.
        """
        values = dict(values or {})
        fields = {item.name: item for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown training configuration keys {unknown}; known keys: {sorted(fields)}")
        for name, value in values.items():
            if isinstance(value, str) and "float" in str(fields[name].type):
                try:
                    values[name] = float(value)
                except ValueError:
                    raise ValueError(f"{name} must be a number, got {value!r}") from None
        try:
            return cls(**values)
        except TypeError as exception:  # pragma: no cover - guarded above
            raise ValueError(str(exception)) from exception

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What :func:`train_committee` returns.

    Attributes
    ----------
    model
        The committee with the weights of the best validation epoch (or the last good ones).
    metrics
        RMSEs per member and of the committee mean, on the training and validation sets:
        ``metrics[split][who][quantity]`` with ``split`` in ``("train", "valid")``, ``who`` in
        ``("mean", "member_0", ...)`` and ``quantity`` in ``energy_per_atom`` (eV/atom), ``forces``
        (eV/Angstrom), ``stress`` (eV/Angstrom^3, None without stress labels); plus top-level
        ``status``, ``epochs``, ``best_epoch``, ``final_lr``, ``seconds_per_epoch``, ``device``.
    history
        Learning curve, one dict per epoch.
    status
        ``"ok"``, ``"nan_loss"`` or ``"diverged"``.
    """

    model: CommitteePotential
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"


# ---------------------------------------------------------------------- data
class _FrameSet:
    """Frames with their neighbour slots, ready to be cut into batches."""

    def __init__(self, frames: Frames, model: CommitteePotential) -> None:
        frames.validate(require_labels=True)
        self.frames = frames
        self.n_frames = len(frames)
        self.natoms = frames.natoms_per_frame
        self.species = model.species_of(frames.numbers).cpu().numpy()
        self.has_stress = frames.has_stress & frames.pbc.all(axis=1)
        self.volumes = np.abs(np.linalg.det(frames.cells))
        self.neighbours, self.vectors = [], []
        far = 2 * model.cutoff + 1.0
        for index in range(self.n_frames):
            start, stop = frames.offsets[index], frames.offsets[index + 1]
            positions = frames.positions[start:stop]
            centre, neighbour, shifts = neighbour_list(
                positions, frames.cells[index], frames.pbc[index], model.cutoff
            )
            slots, slot_shifts = pad_neighbours(centre, neighbour, shifts, len(positions), far)
            self.neighbours.append(slots)
            self.vectors.append(positions[slots] - positions[:, None, :] + slot_shifts)
        stress = frames.stress if frames.stress is not None else np.full((self.n_frames, 6), np.nan)
        virial = np.where(self.has_stress[:, None], stress, 0.0) * (self.volumes / self.natoms)[:, None]
        self.virial_per_atom = virial[:, [0, 5, 4, 5, 1, 3, 4, 3, 2]].reshape(-1, 3, 3)

    def batch(
        self, indices: np.ndarray, model: CommitteePotential
    ) -> tuple[AtomsBatch, dict[str, torch.Tensor]]:
        """Pack the frames ``indices`` into one batch and its targets."""
        slots = max(self.neighbours[i].shape[1] for i in indices)
        far = 2 * model.cutoff + 1.0
        neighbours, vectors, offset = [], [], 0
        for i in indices:
            n, m = self.neighbours[i].shape
            pad = slots - m
            block = self.neighbours[i] + offset
            vec = self.vectors[i]
            if pad:
                block = np.concatenate([block, np.repeat(np.arange(offset, offset + n)[:, None], pad, 1)], 1)
                filler = np.zeros((n, pad, 3))
                filler[..., 0] = far
                vec = np.concatenate([vec, filler], 1)
            neighbours.append(block)
            vectors.append(vec)
            offset += n
        atom_index = np.concatenate(
            [np.arange(self.frames.offsets[i], self.frames.offsets[i + 1]) for i in indices]
        )
        device, dtype = model.device, model.dtype
        batch = AtomsBatch(
            species=torch.as_tensor(self.species[atom_index], device=device),
            atom_frame=torch.as_tensor(
                np.repeat(np.arange(len(indices)), self.natoms[indices]), device=device
            ),
            neighbours=torch.as_tensor(np.concatenate(neighbours), device=device),
            vectors=torch.as_tensor(np.concatenate(vectors), dtype=dtype, device=device),
            n_frames=len(indices),
        )
        targets = {
            "energy": torch.as_tensor(self.frames.energy[indices], dtype=dtype, device=device),
            "forces": torch.as_tensor(self.frames.forces[atom_index], dtype=dtype, device=device),
            "virial_per_atom": torch.as_tensor(self.virial_per_atom[indices], dtype=dtype, device=device),
            "has_stress": torch.as_tensor(self.has_stress[indices], device=device),
            "natoms": torch.as_tensor(self.natoms[indices], dtype=dtype, device=device),
            "volumes": torch.as_tensor(self.volumes[indices], dtype=dtype, device=device),
        }
        return batch, targets

    def batches(self, batch_size: int, order: np.ndarray | None = None):
        order = np.arange(self.n_frames) if order is None else order
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


def _member_losses(
    output: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    batch: AtomsBatch,
    config: TrainConfig,
    frame_weights: torch.Tensor,
) -> torch.Tensor:
    """(K,) weighted loss of each member on a batch; ``frame_weights`` (K, B)."""
    natoms = targets["natoms"]
    energy_error = (output["energy"] - targets["energy"]) / natoms  # (K, B)
    atom_weights = frame_weights[:, batch.atom_frame]  # (K, N)
    force_error = ((output["forces"] - targets["forces"]) ** 2).sum(-1) / 3.0  # (K, N)
    tiny = 1e-12
    loss = (
        config.energy_weight
        * (frame_weights * energy_error**2).sum(-1)
        / frame_weights.sum(-1).clamp(min=tiny)
    )
    loss = loss + config.forces_weight * (atom_weights * force_error).sum(-1) / atom_weights.sum(-1).clamp(
        min=tiny
    )
    if "strain_derivative" in output and config.stress_weight > 0:
        virial_error = output["strain_derivative"] / natoms[:, None, None] - targets["virial_per_atom"]
        stress_weights = frame_weights * targets["has_stress"]
        squared = (virial_error**2).sum((-1, -2)) / 9.0
        loss = loss + config.stress_weight * (stress_weights * squared).sum(-1) / stress_weights.sum(
            -1
        ).clamp(min=tiny)
    return loss


# ---------------------------------------------------------------------- evaluation
def _predict(model: CommitteePotential, data: _FrameSet, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Every member's energies (K, n_frames), forces (K, n_atoms, 3) and stress (K, n_frames, 3, 3)."""
    energies, forces, stresses = [], [], []
    with torch.no_grad():
        for indices in data.batches(batch_size):
            batch, targets = data.batch(indices, model)
            output = model(batch, committee=True, forces=True, strain_derivative=True)
            energies.append(output["energy"].double().cpu().numpy())
            forces.append(output["forces"].double().cpu().numpy())
            stresses.append(
                (output["strain_derivative"] / targets["volumes"][:, None, None]).double().cpu().numpy()
            )
    return {
        "energy": np.concatenate(energies, 1),
        "forces": np.concatenate(forces, 1),
        "stress": np.concatenate(stresses, 1),
    }


def _rmse(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")


def _metrics_of(prediction: dict[str, np.ndarray], data: _FrameSet) -> dict[str, dict[str, float | None]]:
    frames = data.frames
    full_stress = (
        frames.stress[:, [0, 5, 4, 5, 1, 3, 4, 3, 2]].reshape(-1, 3, 3) if frames.stress is not None else None
    )
    members = {f"member_{k}": k for k in range(prediction["energy"].shape[0])}
    result = {}
    for name, selector in [("mean", None), *members.items()]:

        def pick(values, selector=selector):
            return values.mean(0) if selector is None else values[selector]

        entry = {
            "energy_per_atom": _rmse((pick(prediction["energy"]) - frames.energy) / data.natoms),
            "forces": _rmse(pick(prediction["forces"]) - frames.forces),
            "stress": None,
        }
        if full_stress is not None and data.has_stress.any():
            entry["stress"] = _rmse(
                pick(prediction["stress"])[data.has_stress] - full_stress[data.has_stress]
            )
        result[name] = entry
    return result


def evaluate_frames(model: CommitteePotential, frames: Frames, batch_size: int = 16) -> dict[str, Any]:
    """RMSE of the committee mean and of each member on labelled frames.

    Returns
    -------
    dict
        ``{"mean": {"energy_per_atom": eV/atom, "forces": eV/Angstrom, "stress": eV/Angstrom^3 or None},
        "member_0": {...}, ...}``
    """
    data = _FrameSet(frames, model)
    return _metrics_of(_predict(model, data, batch_size), data)


# ---------------------------------------------------------------------- normalisation
def _fit_normalisation(model: CommitteePotential, data: _FrameSet) -> None:
    """Feature mean and std, reference energies (least squares on composition) and energy scale."""
    sums = None
    with torch.no_grad():
        for indices in data.batches(32):
            batch, _ = data.batch(indices, model)
            features = model.descriptor(batch.vectors, batch.species[batch.neighbours]).double()
            part = torch.stack([features.sum(0), (features**2).sum(0)])
            sums = part if sums is None else sums + part
    count = data.frames.n_atoms
    mean = sums[0] / count
    std = (sums[1] / count - mean**2).clamp(min=0).sqrt()
    std = torch.clamp(std, min=1e-3 * float(std.max()) + 1e-12)
    composition = np.zeros((data.n_frames, len(model.elements)))
    np.add.at(composition, (np.repeat(np.arange(data.n_frames), data.natoms), data.species), 1.0)
    references = np.linalg.lstsq(composition, data.frames.energy, rcond=None)[0]
    force_scale = float(np.sqrt(np.mean(data.frames.forces**2)))
    residual = (data.frames.energy - composition @ references) / data.natoms
    scale = force_scale if force_scale > 1e-6 else max(float(np.std(residual)), 1e-3)
    with torch.no_grad():
        model.feature_mean.copy_(mean.to(model.feature_mean))
        model.feature_std.copy_(std.to(model.feature_std))
        model.reference_energies.copy_(torch.as_tensor(references).to(model.reference_energies))
        model.energy_scale.fill_(scale)


def _bootstrap_weights(n_frames: int, committee_size: int, seed: int, enabled: bool) -> np.ndarray:
    """(K, n_frames) how many times each member draws each frame."""
    if not enabled:
        return np.ones((committee_size, n_frames))
    weights = np.zeros((committee_size, n_frames))
    for k in range(committee_size):
        draws = np.random.default_rng([seed, k]).integers(0, n_frames, n_frames)
        weights[k] = np.bincount(draws, minlength=n_frames)
    return weights


def write_learning_curve(history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write the learning curve (one row per epoch) as CSV."""
    if not history:
        with open(path, "w") as handle:
            handle.write("epoch\n")
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


# ---------------------------------------------------------------------- training
def _build_model(
    train: Frames, valid: Frames | None, config: TrainConfig, init, device, dtype, log
) -> CommitteePotential:
    elements = sorted(
        set(train.elements) | set(valid.elements if valid is not None else []), key=_atomic_number
    )
    if init is None:
        return CommitteePotential(
            elements=elements,
            cutoff=config.cutoff,
            committee_size=config.committee_size,
            hidden=config.hidden,
            n_radial=config.n_radial,
            l_max=config.l_max,
            species_channels=config.species_channels,
            repulsion_radius=config.repulsion_radius,
            seed=config.seed,
        ).to(device=device, dtype=dtype)
    model = init if isinstance(init, CommitteePotential) else load_committee(init)
    model = copy.deepcopy(model).to(device=device, dtype=dtype)
    missing = sorted(set(elements) - set(model.elements))
    if missing:
        raise ValueError(f"the initial committee knows {model.elements} but the data also hold {missing}")
    log(
        f"warm start from a committee of {model.committee_size} (architecture settings of the config are ignored)"
    )
    return model


def _atomic_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def train_committee(
    train: Frames,
    config: dict | TrainConfig | None = None,
    valid: Frames | None = None,
    init: str | os.PathLike | CommitteePotential | None = None,
    device: str | torch.device = "auto",
    log: Callable[[str], Any] | None = print,
    checkpoint_path: str | os.PathLike | None = None,
    curve_path: str | os.PathLike | None = None,
) -> TrainResult:
    """Train a committee potential.

    Parameters
    ----------
    train
        Labelled frames (energies in eV, forces in eV/Angstrom, optional stress in eV/Angstrom^3).
    config
        A :class:`TrainConfig` or a mapping of its fields.
    valid
        Validation frames; by default ``config.valid_fraction`` of ``train`` is held out.
    init
        Warm start: an earlier committee (model file path or object). Its architecture, committee
        size and normalisation are kept; its weights are the starting point.
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``...
    log
        Called with one progress line per epoch (``None``: silent).
    checkpoint_path
        Model file refreshed after every good epoch (a valid model file, usable as ``init``).
    curve_path
        CSV file with the learning curve, rewritten after every epoch.

    Returns
    -------
    TrainResult
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    log = log or (lambda line: None)
    device = resolve_device(device)
    dtype = getattr(torch, config.dtype)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train.validate(require_labels=True)
    if valid is None and config.valid_fraction > 0 and len(train) >= 2:
        order = rng.permutation(len(train))
        n_valid = max(1, int(round(config.valid_fraction * len(train))))
        valid, train = train.subset(np.sort(order[:n_valid])), train.subset(np.sort(order[n_valid:]))
    model = _build_model(train, valid, config, init, device, dtype, log)
    train_data = _FrameSet(train, model)
    valid_data = _FrameSet(valid, model) if valid is not None else None
    if init is None:
        _fit_normalisation(model, train_data)
    committee_size = model.committee_size
    weights = torch.as_tensor(
        _bootstrap_weights(len(train), committee_size, config.seed, config.bootstrap),
        dtype=dtype,
        device=device,
    )
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimiser = optimiser_class(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=config.max_epochs, eta_min=config.min_lr
        )
    elif config.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser, factor=0.5, patience=max(1, config.patience // 4), min_lr=config.min_lr
        )
    else:
        scheduler = None
    monitor = valid_data if valid_data is not None else train_data

    def validation_loss() -> tuple[float, dict]:
        total, count = torch.zeros(committee_size, dtype=torch.float64), 0
        with torch.no_grad():
            for indices in monitor.batches(16):
                batch, targets = monitor.batch(indices, model)
                output = model(batch, committee=True, forces=True, strain_derivative=True)
                ones = torch.ones((committee_size, len(indices)), dtype=dtype, device=device)
                total += _member_losses(output, targets, batch, config, ones).double().cpu() * len(indices)
                count += len(indices)
        return float(total.mean() / count), total / count

    initial_loss, _ = validation_loss()
    best_loss, best_epoch, best_state = initial_loss, 0, copy.deepcopy(model.state_dict())
    if checkpoint_path is not None:
        save_committee(model, checkpoint_path, {"checkpoint_epoch": 0})
    history: list[dict[str, Any]] = []
    status, epoch, epoch_times = "ok", 0, []
    log(
        f"training a committee of {committee_size} on {len(train)} frames ({len(valid) if valid else 0} validation) "
        f"on {device}, {sum(p.numel() for p in parameters)} parameters, "
        f"{model.descriptor.n_features} features; initial validation loss {initial_loss:.4e}"
    )
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(len(train))
        train_total, train_count = 0.0, 0
        for indices in train_data.batches(config.batch_size, order):
            batch, targets = train_data.batch(indices, model)
            output = model(
                batch, committee=True, forces=True, strain_derivative=bool(targets["has_stress"].any())
            )
            losses = _member_losses(output, targets, batch, config, weights[:, indices])
            loss = losses.sum()
            if not torch.isfinite(loss):
                status = "nan_loss"
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if config.gradient_clip > 0:
                torch.nn.utils.clip_grad_norm_(parameters, config.gradient_clip)
            optimiser.step()
            train_total += float(loss.detach()) / committee_size * len(indices)
            train_count += len(indices)
        if status == "ok":
            valid_loss, member_losses = validation_loss()
            if not math.isfinite(valid_loss):
                status = "nan_loss"
            elif valid_loss > config.divergence_factor * initial_loss:
                status = "diverged"
        if status != "ok":
            log(f"epoch {epoch:4d}  stopped: {status}; keeping the weights of epoch {best_epoch}")
            break
        epoch_times.append(time.perf_counter() - started)
        lr = optimiser.param_groups[0]["lr"]
        improved = valid_loss < best_loss
        if improved:
            best_loss, best_epoch, best_state = valid_loss, epoch, copy.deepcopy(model.state_dict())
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_total / max(train_count, 1),
            "valid_loss": valid_loss,
            "best_valid_loss": best_loss,
            "seconds": epoch_times[-1],
        }
        history.append(row)
        log(
            f"epoch {epoch:4d}  lr {lr:.2e}  train {row['train_loss']:.4e}  valid {valid_loss:.4e}"
            f"{' *' if improved else '  '}  {epoch_times[-1]:.2f} s"
        )
        if checkpoint_path is not None:
            save_committee(model, checkpoint_path, {"checkpoint_epoch": epoch})
        if curve_path is not None:
            write_learning_curve(history, curve_path)
        if scheduler is not None:
            scheduler.step(valid_loss) if config.scheduler == "plateau" else scheduler.step()
        if epoch - best_epoch >= config.patience:
            log(
                f"early stop: no better validation loss for {config.patience} epochs (best: epoch {best_epoch})"
            )
            break
    model.load_state_dict(best_state)
    metrics: dict[str, Any] = {
        "status": status,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "final_lr": optimiser.param_groups[0]["lr"],
        "seconds_per_epoch": float(np.mean(epoch_times)) if epoch_times else None,
        "device": str(device),
        "committee_size": committee_size,
        "n_train": len(train),
        "n_valid": len(valid) if valid is not None else 0,
        "train": _metrics_of(_predict(model, train_data), train_data),
    }
    if valid_data is not None:
        metrics["valid"] = _metrics_of(_predict(model, valid_data), valid_data)
    if curve_path is not None:
        write_learning_curve(history, curve_path)
    return TrainResult(model=model, metrics=metrics, history=history, status=status)
