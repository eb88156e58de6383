"""The data side of training: frames packed into batches, the loss, the split, the normalisation.

- :class:`FrameSet`: labelled frames with their neighbour slots, cut into :class:`AtomsBatch` es.
- :func:`member_losses`: the loss of each committee member on a batch (see :mod:`.train`).
- :func:`frame_fingerprints`, :func:`frame_groups`, :func:`stratified_split`: which frames a
  parent committee was trained on, and a validation split that holds frames of every group.
- :func:`fit_normalisation`, :func:`bootstrap_weights`: the scales of a new committee and the
  members' bootstrap resamples (Efron 1979).

Units: Angstrom, eV, eV/Angstrom.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import torch

from aiida_mlip.potentials.committee import AtomsBatch, CommitteePotential
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.neighbours import neighbour_list, pad_neighbours

__all__ = (
    "FrameSet",
    "bootstrap_weights",
    "energy_statistics",
    "fit_normalisation",
    "frame_fingerprints",
    "frame_groups",
    "member_losses",
    "new_frame_mask",
    "stratified_split",
)


class FrameSet:
    """Frames with their neighbour slots, ready to be cut into batches."""

    def __init__(self, frames: Frames, model: CommitteePotential) -> None:
        self.set_labels(frames, model)
        self.neighbours, self.vectors = [], []
        far = 2 * model.cutoff + 1.0
        for index in range(self.n_frames):
            start, stop = frames.offsets[index], frames.offsets[index + 1]
            positions = frames.positions[start:stop]
            centre, neighbour, shifts = neighbour_list(
                positions, frames.cells[index], frames.pbc[index], model.neighbour_cutoff
            )
            slots, slot_shifts = pad_neighbours(centre, neighbour, shifts, len(positions), far)
            self.neighbours.append(slots)
            self.vectors.append(positions[slots] - positions[:, None, :] + slot_shifts)

    def set_labels(self, frames: Frames, model) -> None:
        """The labels and what the loss needs of every frame; ``model`` maps atomic numbers to species."""
        frames.validate(require_labels=True)
        self.frames = frames
        self.n_frames = len(frames)
        self.natoms = frames.natoms_per_frame
        self.species = model.species_of(frames.numbers).cpu().numpy()
        self.has_stress = frames.has_stress & frames.pbc.all(axis=1)
        self.volumes = np.abs(np.linalg.det(frames.cells))
        stress = frames.stress if frames.stress is not None else np.full((self.n_frames, 6), np.nan)
        virial = np.where(self.has_stress[:, None], stress, 0.0) * (self.volumes / self.natoms)[:, None]
        self.virial_per_atom = virial[:, [0, 5, 4, 5, 1, 3, 4, 3, 2]].reshape(-1, 3, 3)

    def atom_index(self, indices: np.ndarray) -> np.ndarray:
        """Indices into the frames' atoms of the atoms of frames ``indices``, in order."""
        return np.concatenate(
            [np.arange(self.frames.offsets[i], self.frames.offsets[i + 1]) for i in indices]
        )

    def targets(self, indices: np.ndarray, device, dtype) -> dict[str, torch.Tensor]:
        """The labels of frames ``indices`` as tensors, what :func:`member_losses` compares with."""
        atom_index = self.atom_index(indices)
        return {
            "energy": torch.as_tensor(self.frames.energy[indices], dtype=dtype, device=device),
            "forces": torch.as_tensor(self.frames.forces[atom_index], dtype=dtype, device=device),
            "virial_per_atom": torch.as_tensor(self.virial_per_atom[indices], dtype=dtype, device=device),
            "has_stress": torch.as_tensor(self.has_stress[indices], device=device),
            "natoms": torch.as_tensor(self.natoms[indices], dtype=dtype, device=device),
            "volumes": torch.as_tensor(self.volumes[indices], dtype=dtype, device=device),
        }

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
        atom_index = self.atom_index(indices)
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
        return batch, self.targets(indices, device, dtype)

    def batches(self, batch_size: int, order: np.ndarray | None = None):
        order = np.arange(self.n_frames) if order is None else order
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


def member_losses(
    output: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    batch: AtomsBatch,
    config,
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


def fit_normalisation(model: CommitteePotential, data: FrameSet) -> None:
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
    references, scale = energy_statistics(data, len(model.elements))
    with torch.no_grad():
        model.feature_mean.copy_(mean.to(model.feature_mean))
        model.feature_std.copy_(std.to(model.feature_std))
        model.reference_energies.copy_(torch.as_tensor(references).to(model.reference_energies))
        model.energy_scale.fill_(scale)


def energy_statistics(data: FrameSet, n_species: int) -> tuple[np.ndarray, float]:
    """Per-element reference energies (eV, least squares on the composition) and the energy scale (eV).

    The scale is the RMS force component of the frames (eV/Angstrom, read as eV per Angstrom of
    displacement), or the spread of the residual energy per atom when the forces vanish.
    """
    composition = np.zeros((data.n_frames, n_species))
    np.add.at(composition, (np.repeat(np.arange(data.n_frames), data.natoms), data.species), 1.0)
    references = np.linalg.lstsq(composition, data.frames.energy, rcond=None)[0]
    force_scale = float(np.sqrt(np.mean(data.frames.forces**2)))
    residual = (data.frames.energy - composition @ references) / data.natoms
    scale = force_scale if force_scale > 1e-6 else max(float(np.std(residual)), 1e-3)
    return references, scale


def bootstrap_weights(n_frames: int, committee_size: int, seed: int, enabled: bool) -> np.ndarray:
    """(K, n_frames) how many times each member draws each frame."""
    if not enabled:
        return np.ones((committee_size, n_frames))
    weights = np.zeros((committee_size, n_frames))
    for k in range(committee_size):
        draws = np.random.default_rng([seed, k]).integers(0, n_frames, n_frames)
        weights[k] = np.bincount(draws, minlength=n_frames)
    return weights


def frame_fingerprints(frames: Frames) -> list[str]:
    """One short hash per frame of its atomic numbers, positions and cell (rounded to 1e-5 Angstrom).

    What a model file records of its training set (metadata ``training_frames``), so that a warm
    start knows which frames of its dataset the parent has not seen: the new labels.
    """
    out = []
    for index in range(len(frames)):
        start, stop = frames.offsets[index], frames.offsets[index + 1]
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(np.ascontiguousarray(frames.numbers[start:stop], dtype=np.int64).tobytes())
        digest.update(np.round(frames.positions[start:stop], 5).astype(np.float64).tobytes())
        digest.update(np.round(frames.cells[index], 5).astype(np.float64).tobytes())
        out.append(digest.hexdigest()[:16])
    return out


def new_frame_mask(frames: Frames, known: Iterable[str]) -> np.ndarray:
    """(n_frames,) bool: the frames whose fingerprint is not in ``known`` (a parent's training frames)."""
    known = set(known)
    return np.array([fingerprint not in known for fingerprint in frame_fingerprints(frames)], dtype=bool)


def frame_groups(frames: Frames, new: np.ndarray | None = None) -> np.ndarray:
    """(n_frames,) group label of each frame for the stratified split.

    A frame's group is its ``source_uuid`` (the labelling job it came from: each dataset version
    adds the labels of its own jobs), prefixed with ``new:`` for the frames a parent committee has
    not seen (``new``), so that the validation split always holds some of the new labels.
    """
    sources = np.array([str(source) for source in frames.source_uuid], dtype=object)
    if new is not None:
        sources = np.where(np.asarray(new, dtype=bool), "new:" + sources, "old:" + sources)
    return sources


def stratified_split(
    frames: Frames, valid_fraction: float, rng: np.random.Generator, groups: np.ndarray | None = None
) -> tuple[Frames, Frames | None]:
    """Hold out ``valid_fraction`` of the frames of every group (at least one of a group of 2 or more).

    Parameters
    ----------
    frames : Frames
    valid_fraction : float
        In [0, 1); 0 gives no validation set.
    rng : numpy Generator
    groups : (n_frames,) array, optional
        Group of each frame (:func:`frame_groups`); one group by default.

    Returns
    -------
    (train, valid) : the two subsets (``valid`` is ``None`` when nothing is held out). A group of a
    single frame stays in the training set.
    """
    n = len(frames)
    if valid_fraction <= 0 or n < 2:
        return frames, None
    groups = np.zeros(n, dtype=object) if groups is None else np.asarray(groups, dtype=object)
    held = []
    for group in sorted(set(groups.tolist()), key=str):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, int(round(valid_fraction * len(members)))))
        held.extend(rng.permutation(members)[:count].tolist())
    if not held:  # only single-frame groups: hold out from all of them together
        held = rng.permutation(n)[: max(1, int(round(valid_fraction * n)))].tolist()
    held = np.sort(np.asarray(held, dtype=np.int64))
    kept = np.setdiff1d(np.arange(n), held)
    return frames.subset(kept), frames.subset(held)
