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

Early stopping watches the validation loss (the members' mean) after ``min_epochs``; the weights
of the best trained epoch are kept (epoch 0, the starting weights, is never the answer: a warm
start always returns weights trained on the new dataset). A non-finite loss stops training with
status ``"nan_loss"``, a validation loss above ``divergence_factor`` times the initial one with
``"diverged"``; either way the result holds the last good weights.

**Warm start and new labels.** With ``init`` (a parent committee), the frames of ``train`` the
parent has not seen are the *new frames*: those whose fingerprint
(:func:`~aiida_mlip.potentials.training_data.frame_fingerprints`) is not in the parent's record
of its training frames (``parent_frames``, or the ``training_frames`` metadata of the parent's
model file, which ``aiida-mlip-train`` writes). The validation split is stratified by labelling
source and new/old (:func:`~aiida_mlip.potentials.training_data.stratified_split`), so it always
holds new frames when there are at least two. The force RMSE of the new frames before (the parent)
and after training is in ``metrics["new_frames"]``. When no trained epoch reaches a validation
loss below the parent's, the status is ``"no_improvement"``: the weights are still the best
trained ones, and the caller decides (the work chain retrains from scratch).
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pydantic
import torch

from aiida_mlip.potentials.backends import ModelKind
from aiida_mlip.potentials.backends.builtin import BUILTIN_MODEL
from aiida_mlip.potentials.backends.mace_settings import MaceSettings
from aiida_mlip.potentials.committee import (
    CommitteePotential,
    load_committee,
    resolve_device,
    save_committee,
)
from aiida_mlip.potentials.evaluation import error_pairs, evaluate_frames, metrics_of, predict
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.model_file import read_model_metadata
from aiida_mlip.potentials.training_data import (
    bootstrap_weights,
    frame_fingerprints,
    frame_groups,
    member_losses,
    new_frame_mask,
    stratified_split,
)
from aiida_mlip.settings import Settings

__all__ = (
    "BUILTIN_MODEL",
    "STATUSES",
    "ModelKind",
    "TrainConfig",
    "TrainResult",
    "evaluate_frames",
    "frame_fingerprints",
    "load_committee",
    "save_committee",
    "train_committee",
    "write_learning_curve",
)

_ARCHITECTURE_KEYS = ("cutoff", "n_radial", "l_max", "species_channels", "hidden", "repulsion_radius")

#: What a training can end with. ``no_improvement``: a warm start whose best trained epoch did not
#: beat the parent's validation loss (the trained weights are returned all the same).
STATUSES = ("ok", "no_improvement", "nan_loss", "diverged")


class TrainConfig(Settings):
    """Settings of :func:`train_committee` (the ``training`` settings block). Units: Angstrom, eV.

    Attributes
    ----------
    backend
        The model backend (:mod:`aiida_mlip.potentials.backends`): ``"builtin"`` (the power-spectrum
        committee of :mod:`~.committee`) or ``"mace"`` (a committee of MACE models through
        mace-torch, the ``[mace]`` extra). Every other key applies to both, except the built-in
        architecture's ``n_radial``, ``l_max``, ``species_channels``, ``hidden`` and
        ``repulsion_radius`` (ignored by MACE) and the ``mace`` block (ignored by the built-in one).
    mace
        The MACE architecture (:class:`~.backends.mace_settings.MaceSettings`).
    parent_model
        Path of a model file to fine-tune from (:mod:`~.parent_model`: a committee file of
        ``backend``, or for ``mace`` a mace-torch ``*.model``), or ``None`` to start from random
        weights. The parent's architecture is adopted; its members seed the ``committee_size``
        members. Used when no ``init`` (warm start) is given: a warm start continues its own parent.
    committee_size
        Number of members K (ignored on a warm start: the initial committee decides).
    cutoff
        Descriptor cutoff (MACE: ``r_max``), Angstrom.
    n_radial, l_max, species_channels
        Descriptor resolution (:class:`~.descriptor.PowerSpectrumDescriptor`).
    hidden
        Width of the two hidden layers of each member.
    repulsion_radius
        Outer radius (Angstrom) of the ZBL repulsion, or ``None`` for none.
    max_epochs
        Upper bound on the number of epochs.
    min_epochs
        Epochs that always run, whatever the validation loss does (early stopping only after them;
        capped at ``max_epochs``). A warm start therefore always takes optimiser steps on the new data.
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
        Fraction of the frames held out for validation when no validation set is given; the split
        is stratified by frame group (see :func:`stratified_split`), so every dataset version is in it.
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

    block = "training"

    backend: Literal["builtin", "mace"] = "builtin"
    mace: MaceSettings = pydantic.Field(default_factory=MaceSettings)
    parent_model: str | None = None
    committee_size: pydantic.StrictInt = pydantic.Field(4, ge=1)
    cutoff: float = pydantic.Field(5.0, gt=0, allow_inf_nan=False)
    n_radial: pydantic.StrictInt = pydantic.Field(8, ge=1)
    l_max: pydantic.StrictInt = pydantic.Field(3, ge=0, le=3)
    species_channels: pydantic.StrictInt | None = pydantic.Field(None, ge=1)
    hidden: pydantic.StrictInt = pydantic.Field(64, ge=1)
    repulsion_radius: float | None = pydantic.Field(None, gt=0, allow_inf_nan=False)
    max_epochs: pydantic.StrictInt = pydantic.Field(200, ge=1)
    min_epochs: pydantic.StrictInt = pydantic.Field(10, ge=1)
    batch_size: pydantic.StrictInt = pydantic.Field(4, ge=1)
    lr: float = pydantic.Field(5e-3, gt=0, allow_inf_nan=False)
    min_lr: float = pydantic.Field(5e-5, ge=0, allow_inf_nan=False)
    optimizer: Literal["adamw", "adam"] = "adamw"
    weight_decay: float = pydantic.Field(0.0, ge=0, allow_inf_nan=False)
    scheduler: Literal["cosine", "plateau", "constant"] = "cosine"
    energy_weight: float = pydantic.Field(10.0, ge=0, allow_inf_nan=False)
    forces_weight: float = pydantic.Field(1.0, ge=0, allow_inf_nan=False)
    stress_weight: float = pydantic.Field(1.0, ge=0, allow_inf_nan=False)
    valid_fraction: float = pydantic.Field(0.1, ge=0, lt=1)
    patience: pydantic.StrictInt = pydantic.Field(50, ge=1)
    bootstrap: bool = True
    gradient_clip: float = pydantic.Field(10.0, ge=0, allow_inf_nan=False)
    divergence_factor: float = pydantic.Field(1e3, gt=0, allow_inf_nan=False)
    seed: pydantic.StrictInt = 0
    dtype: Literal["float32", "float64"] = "float32"

    @pydantic.field_validator("backend")
    @classmethod
    def _installed(cls, backend: str) -> str:
        """A backend whose package is missing is refused here, before any job runs."""
        if backend == "mace":
            from aiida_mlip.potentials.backends import BackendUnavailable
            from aiida_mlip.potentials.backends.mace_settings import mace_version

            try:
                mace_version()
            except BackendUnavailable as exception:
                raise ValueError(str(exception)) from None
        return backend

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.energy_weight + self.forces_weight + self.stress_weight == 0:
            raise ValueError("at least one of energy_weight, forces_weight, stress_weight must be > 0")
        if self.repulsion_radius is not None and not self.repulsion_radius < self.cutoff:
            raise ValueError(
                f"repulsion_radius must be between 0 and the cutoff, got {self.repulsion_radius!r}"
            )
        if self.parent_model is not None:
            from aiida_mlip.potentials.parent_model import check_parent_model

            check_parent_model(self.parent_model, self.backend)  # exists, readable, of this backend
        return self


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
        ``status``, ``epochs_run`` (also ``epochs``), ``best_epoch``, ``initial_valid_loss``,
        ``best_valid_loss``, ``final_lr``, ``seconds_per_epoch``, ``device``, and with a parent
        ``new_frames``: ``{"n": count, "n_valid": of them in the validation split,
        "forces_before": parent's force RMSE on them, "forces_after": eV/Angstrom,
        "identified_by": how}``.
    history
        Learning curve, one dict per epoch.
    status
        One of :data:`STATUSES`.
    training_frames
        Fingerprints of every frame trained or validated on (for the model file's metadata).
    """

    model: CommitteePotential
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"
    training_frames: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- evaluation
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
def _atomic_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def _load_parent(
    init: str | os.PathLike | CommitteePotential | None, parent_frames: Iterable[str] | None, kind: ModelKind
) -> tuple[CommitteePotential | None, set[str] | None, str]:
    """The parent committee, the fingerprints of its training frames (``None``: unknown) and whence they came."""
    if init is None:
        return None, None, ""
    model = init if isinstance(init, kind.model_class) else kind.load(init)
    if parent_frames is not None:
        return model, set(parent_frames), "parent_frames given by the caller"
    carried = getattr(init, "training_frames", None)
    if carried is not None:
        return model, set(carried), "training_frames carried by the parent committee object"
    if not isinstance(init, kind.model_class):
        recorded = read_model_metadata(init).get("training_frames")
        if recorded is not None:
            return model, set(recorded), "training_frames recorded in the parent's model file"
    return model, None, ""


def _build_model(
    train: Frames, valid: Frames | None, config: TrainConfig, parent, device, dtype, log, kind: ModelKind
) -> CommitteePotential:
    elements = sorted(
        set(train.elements) | set(valid.elements if valid is not None else []), key=_atomic_number
    )
    if parent is None:
        return kind.build(train, elements, config).to(device=device, dtype=dtype)
    model = copy.deepcopy(parent).to(device=device, dtype=dtype)
    missing = sorted(set(elements) - set(model.elements))
    if missing:
        raise ValueError(f"the initial committee knows {model.elements} but the data also hold {missing}")
    log(
        f"warm start from a committee of {model.committee_size} (architecture settings of the config are ignored)"
    )
    return model


class _Trainer:
    """The epochs of one training: optimiser, scheduler, validation loss, best state, history."""

    def __init__(self, model, train_data, monitor, config: TrainConfig, rng, device, dtype, log, save):
        self.model, self.train_data, self.monitor, self.save = model, train_data, monitor, save
        self.config, self.rng, self.device, self.dtype, self.log = config, rng, device, dtype, log
        self.committee_size = model.committee_size
        self.weights = torch.as_tensor(
            bootstrap_weights(train_data.n_frames, self.committee_size, config.seed, config.bootstrap),
            dtype=dtype,
            device=device,
        )
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        optimiser_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimiser = optimiser_class(self.parameters, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = None
        if config.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimiser, T_max=config.max_epochs, eta_min=config.min_lr
            )
        elif config.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimiser, factor=0.5, patience=max(1, config.patience // 4), min_lr=config.min_lr
            )
        self.initial_state = copy.deepcopy(model.state_dict())
        self.initial_loss = self.validation_loss()
        self.best_loss, self.best_epoch, self.best_state = math.inf, 0, None
        self.status, self.history, self.epoch_times = "ok", [], []

    def validation_loss(self) -> float:
        """Mean over the members of the unweighted loss on the monitored frames."""
        total, count = torch.zeros(self.committee_size, dtype=torch.float64), 0
        with torch.no_grad():
            for indices in self.monitor.batches(16):
                batch, targets = self.monitor.batch(indices, self.model)
                output = self.model(batch, committee=True, forces=True, strain_derivative=True)
                ones = torch.ones((self.committee_size, len(indices)), dtype=self.dtype, device=self.device)
                losses = member_losses(output, targets, batch, self.config, ones)
                total += losses.double().cpu() * len(indices)
                count += len(indices)
        return float(total.mean() / count)

    def train_epoch(self) -> float | None:
        """One pass over the training frames; the mean training loss, or ``None`` on a non-finite loss."""
        order = self.rng.permutation(self.train_data.n_frames)
        total, count = 0.0, 0
        for indices in self.train_data.batches(self.config.batch_size, order):
            batch, targets = self.train_data.batch(indices, self.model)
            output = self.model(
                batch, committee=True, forces=True, strain_derivative=bool(targets["has_stress"].any())
            )
            loss = member_losses(output, targets, batch, self.config, self.weights[:, indices]).sum()
            if not torch.isfinite(loss):
                return None
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.gradient_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.parameters, self.config.gradient_clip)
            self.optimiser.step()
            total += float(loss.detach()) / self.committee_size * len(indices)
            count += len(indices)
        return total / max(count, 1)

    def run(self, checkpoint_path, curve_path) -> None:
        """Epochs until ``max_epochs``, patience (after ``min_epochs``), a NaN or a divergence."""
        config, log = self.config, self.log
        min_epochs = min(config.min_epochs, config.max_epochs)
        for epoch in range(1, config.max_epochs + 1):
            started = time.perf_counter()
            train_loss = self.train_epoch()
            valid_loss = self.validation_loss() if train_loss is not None else math.nan
            if train_loss is None or not math.isfinite(valid_loss):
                self.status = "nan_loss"
            elif valid_loss > config.divergence_factor * self.initial_loss:
                self.status = "diverged"
            if self.status != "ok":
                log(
                    f"epoch {epoch:4d}  stopped: {self.status}; keeping the weights of epoch {self.best_epoch}"
                )
                return
            self.epoch_times.append(time.perf_counter() - started)
            improved = valid_loss < self.best_loss
            if improved:
                self.best_loss, self.best_epoch = valid_loss, epoch
                self.best_state = copy.deepcopy(self.model.state_dict())
            self._record(epoch, train_loss, valid_loss, improved, checkpoint_path, curve_path)
            if self.scheduler is not None:
                self.scheduler.step(valid_loss) if config.scheduler == "plateau" else self.scheduler.step()
            if epoch >= min_epochs and epoch - self.best_epoch >= config.patience:
                log(
                    f"early stop: no better validation loss for {config.patience} epochs (best: epoch {self.best_epoch})"
                )
                return

    def _record(self, epoch, train_loss, valid_loss, improved, checkpoint_path, curve_path) -> None:
        lr = self.optimiser.param_groups[0]["lr"]
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "valid_loss": valid_loss,
            "best_valid_loss": self.best_loss,
            "seconds": self.epoch_times[-1],
        }
        self.history.append(row)
        self.log(
            f"epoch {epoch:4d}  lr {lr:.2e}  train {train_loss:.4e}  valid {valid_loss:.4e}"
            f"{' *' if improved else '  '}  {self.epoch_times[-1]:.2f} s"
        )
        if checkpoint_path is not None:
            self.save(self.model, checkpoint_path, {"checkpoint_epoch": epoch})
        if curve_path is not None:
            write_learning_curve(self.history, curve_path)

    def final_state(self) -> dict:
        """The best trained epoch's weights; the starting ones only when no epoch finished."""
        return self.best_state if self.best_state is not None else self.initial_state


def _force_rmse(model: CommitteePotential, frames: Frames | None, kind: ModelKind) -> float | None:
    if frames is None or not len(frames):
        return None
    return evaluate_frames(model, frames, frame_set=kind.frame_set)["mean"]["forces"]


def train_committee(
    train: Frames,
    config: dict | TrainConfig | None = None,
    valid: Frames | None = None,
    init: str | os.PathLike | CommitteePotential | None = None,
    device: str | torch.device = "auto",
    log: Callable[[str], Any] | None = print,
    checkpoint_path: str | os.PathLike | None = None,
    curve_path: str | os.PathLike | None = None,
    parent_frames: Iterable[str] | None = None,
    kind: ModelKind = BUILTIN_MODEL,
) -> TrainResult:
    """Train a committee potential.

    Parameters
    ----------
    train
        Labelled frames (energies in eV, forces in eV/Angstrom, optional stress in eV/Angstrom^3).
    config
        A :class:`TrainConfig` or a mapping of its fields.
    valid
        Validation frames; by default ``config.valid_fraction`` of ``train`` is held out, stratified
        by labelling source and, on a warm start, by new / already-seen frames.
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
    parent_frames
        Fingerprints (:func:`frame_fingerprints`) of the frames ``init`` was trained on; by default
        the ``training_frames`` attribute of an ``init`` committee returned by this function, or the
        ``training_frames`` metadata of ``init``'s model file.
    kind
        The model class trained (:class:`ModelKind`); the built-in committee by default.

    Returns
    -------
    TrainResult
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_mapping(config)
    log = log or (lambda line: None)
    device = resolve_device(device)
    dtype = getattr(torch, config.dtype)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train.validate(require_labels=True)
    fine_tuned = None
    if init is None and config.parent_model is not None:
        from aiida_mlip.potentials.parent_model import fine_tuning_start

        elements = set(train.elements) | set(valid.elements if valid is not None else [])
        init, recorded, fine_tuned = fine_tuning_start(config, elements)
        parent_frames = recorded if parent_frames is None else parent_frames
        log(f"fine-tuning from the parent model {config.parent_model} (its architecture is kept)")
    parent, known, identified_by = _load_parent(init, parent_frames, kind)
    if fine_tuned is not None and known is not None and not known:
        identified_by = "none recorded by the parent model: every frame is new to it"
    new = new_frame_mask(train, known) if known is not None else None
    new_frames = train.subset(np.flatnonzero(new)) if new is not None and new.any() else None
    all_frames = train if valid is None else Frames.concatenate([train, valid])
    if valid is None:
        train, valid = stratified_split(train, config.valid_fraction, rng, frame_groups(train, new))
    model = _build_model(train, valid, config, parent, device, dtype, log, kind)
    train_data = kind.frame_set(train, model)
    valid_data = kind.frame_set(valid, model) if valid is not None else None
    if parent is None:
        kind.normalise(model, train_data)
    before = _force_rmse(model, new_frames, kind)
    trainer = _Trainer(
        model, train_data, valid_data or train_data, config, rng, device, dtype, log, kind.save
    )
    if checkpoint_path is not None:
        kind.save(model, checkpoint_path, {"checkpoint_epoch": 0})
    log(
        f"training a committee of {model.committee_size} on {len(train)} frames ({len(valid) if valid else 0} "
        f"validation) on {device}, {sum(p.numel() for p in trainer.parameters)} parameters, "
        f"{model.n_features} features; initial validation loss {trainer.initial_loss:.4e}"
        + (f"; {len(new_frames)} frame(s) new to the parent" if new_frames is not None else "")
    )
    trainer.run(checkpoint_path, curve_path)
    model.load_state_dict(trainer.final_state())
    status = trainer.status
    if status == "ok" and parent is not None and not trainer.best_loss < trainer.initial_loss:
        status = "no_improvement"
        log(
            f"no improvement over the parent: best validation loss {trainer.best_loss:.4e} (epoch "
            f"{trainer.best_epoch}) >= the parent's {trainer.initial_loss:.4e}; keeping the trained weights"
        )
    metrics = _final_metrics(trainer, status, model, train_data, valid_data, device)
    if parent is not None:
        metrics["new_frames"] = {
            "n": None if new is None else int(new.sum()),
            "n_valid": _count_in(valid, new_frames),
            "forces_before": before,
            "forces_after": _force_rmse(model, new_frames, kind),
            "identified_by": identified_by or "unknown: the parent records no training frames",
        }
    if fine_tuned is not None:
        metrics["parent_model"] = fine_tuned
    if curve_path is not None:
        write_learning_curve(trainer.history, curve_path)
    model.training_frames = frame_fingerprints(all_frames)  # a later warm start from this object reads it
    return TrainResult(
        model=model,
        metrics=metrics,
        history=trainer.history,
        status=status,
        training_frames=model.training_frames,
    )


def _count_in(frames: Frames | None, subset: Frames | None) -> int:
    """How many of ``frames`` are among ``subset`` (by fingerprint)."""
    if frames is None or subset is None:
        return 0
    return int(np.isin(frame_fingerprints(frames), frame_fingerprints(subset)).sum())


def _final_metrics(trainer: _Trainer, status, model, train_data, valid_data, device) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "status": status,
        "epochs": len(trainer.history),
        "epochs_run": len(trainer.history),
        "best_epoch": trainer.best_epoch,
        "initial_valid_loss": trainer.initial_loss,
        "best_valid_loss": trainer.best_loss if math.isfinite(trainer.best_loss) else None,
        "final_lr": trainer.optimiser.param_groups[0]["lr"],
        "seconds_per_epoch": float(np.mean(trainer.epoch_times)) if trainer.epoch_times else None,
        "device": str(device),
        "committee_size": model.committee_size,
        "n_train": train_data.n_frames,
        "n_valid": valid_data.n_frames if valid_data is not None else 0,
        "train": metrics_of(predict(model, train_data), train_data),
    }
    if valid_data is not None:
        prediction = predict(model, valid_data)
        metrics["valid"] = metrics_of(prediction, valid_data)
        metrics["valid_pairs"] = error_pairs(prediction, valid_data.frames)
    return metrics
