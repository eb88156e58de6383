"""What a committee predicts on labelled frames, and how far from the labels.

Used by the training (:mod:`aiida_mlip.potentials.train`: its metrics and the validation split's
calibration pairs) and by the AiiDA-free loop's test sets. Units: eV, Angstrom, eV/Angstrom,
eV/Angstrom^3 for stress.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols

from aiida_mlip.potentials.committee import CommitteePotential
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.training_data import FrameSet

__all__ = ("error_pairs", "evaluate_frames", "metrics_of", "predict")


def predict(model: CommitteePotential, data: FrameSet, batch_size: int = 16) -> dict[str, np.ndarray]:
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


def metrics_of(prediction: dict[str, np.ndarray], data: FrameSet) -> dict[str, dict[str, float | None]]:
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


def evaluate_frames(
    model: CommitteePotential, frames: Frames, batch_size: int = 16, frame_set=FrameSet
) -> dict[str, Any]:
    """RMSE of the committee mean and of each member on labelled frames.

    ``frame_set(frames, model)`` cuts the frames into batches for the model (the backend's
    :class:`~aiida_mlip.potentials.train.ModelKind` ``frame_set``; the built-in one by default).

    Returns
    -------
    dict
        ``{"mean": {"energy_per_atom": eV/atom, "forces": eV/Angstrom, "stress": eV/Angstrom^3 or None},
        "member_0": {...}, ...}``
    """
    data = frame_set(frames, model)
    return metrics_of(predict(model, data, batch_size), data)


def error_pairs(prediction: dict[str, np.ndarray], frames: Frames) -> dict[str, list]:
    """Per frame: the committee's largest per-atom force deviation and the largest error of its mean force.

    The same quantities as :func:`aiida_mlip.learning.calibration.calibration_pairs` (there from a
    calculator, here from the trained committee's predictions): ``predicted`` is ``max_i eps_i`` with
    ``eps_i = sqrt(< |F_i - <F_i>|^2 >)`` over the members, ``observed`` is ``max_i |<F_i> - F_i^ref|``
    (both eV/Angstrom), ``symbols`` the element of the atom where the error is largest. On the
    validation split, frames no member was trained on, these are calibration pairs of this committee
    (Musil et al., J. Chem. Theory Comput. 15, 906 (2019), calibrate on a validation set).
    """
    forces = prediction["forces"]
    mean = forces.mean(axis=0)
    deviation = np.sqrt(((forces - mean) ** 2).sum(axis=2).mean(axis=0))
    error = np.linalg.norm(mean - frames.forces, axis=1)
    symbols = [chemical_symbols[number] for number in frames.numbers]
    predicted, observed, worst_symbols = [], [], []
    for start, stop in zip(frames.offsets[:-1], frames.offsets[1:], strict=True):
        worst = start + int(np.argmax(error[start:stop]))
        predicted.append(float(deviation[start:stop].max()))
        observed.append(float(error[worst]))
        worst_symbols.append(str(symbols[worst]))
    return {"predicted": predicted, "observed": observed, "symbols": worst_symbols}
