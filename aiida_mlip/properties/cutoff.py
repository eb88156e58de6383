"""Cutoff check: how much the committee's energies and forces on its training set move when its cutoff is shortened.

The trained committee is evaluated, not retrained, with its cutoff shortened by each ``delta`` of
the settings (0.5 and 1 Angstrom by default; what "shortened" means for the model:
:mod:`aiida_mlip.potentials.shortened`). For every member ``k`` and shortening ``delta``, over the
frames ``f`` (``N_f`` atoms) and all force components::

    energy_change = sqrt(mean_f [(E_k,delta(f) - E_k(f)) / N_f]^2)          meV/atom
    force_change  = sqrt(mean_{f,i,alpha} [F_k,delta - F_k]^2)             meV/Angstrom

reported as the committee mean +- spread over members (:class:`~.committee.Estimate`). Both are 0
at ``delta = 0`` and grow as the shortening removes more of the neighbourhood: small changes at 1
Angstrom say that the physics the committee learned is local well inside its cutoff. Beside them,
the root-mean-square error of the committee mean against the frames' labels at each cutoff
(``energy_rmse``, ``force_rmse``, same units) says whether the shorter committee would still fit.

No AiiDA import; the frames are :class:`~aiida_mlip.potentials.frames.Frames` (the potential's
training set, or any labelled frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydantic

from aiida_mlip.potentials.frames import Frames
from aiida_mlip.properties.checks import PropertyInputError, resolve_settings
from aiida_mlip.properties.committee import Estimate
from aiida_mlip.settings import Settings

__all__ = ("CutoffResult", "CutoffSettings", "check_shortenings", "cutoff_sensitivity", "quantity_names")

#: Frames per batch of the evaluation.
BATCH_SIZE = 16


class CutoffSettings(Settings):
    """Settings of :func:`cutoff_sensitivity` (block ``cutoff``).

    Attributes
    ----------
    shortenings
        Angstrom, each ``>= 0`` and below the potential's cutoff (checked against it); sorted, duplicates
        dropped. ``0`` gives the trained committee (a change of exactly 0).
    max_frames
        At most this many frames are evaluated: evenly spaced over the set when it holds more.
    """

    block = "cutoff"

    shortenings: list[float] = [0.5, 1.0]
    max_frames: int = pydantic.Field(1000, ge=1)

    @pydantic.field_validator("shortenings")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one cutoff shortening (Angstrom), e.g. [0.5, 1.0]")
        for shortening in value:
            if not np.isfinite(shortening) or shortening < 0:
                raise ValueError(f"a cutoff shortening is a length >= 0 Angstrom, got {shortening}")
        return sorted(set(float(shortening) for shortening in value))


def check_shortenings(settings: CutoffSettings, cutoff: float | None) -> None:
    """Raise :class:`PropertyInputError` for a shortening at or above the potential's ``cutoff`` (Angstrom)."""
    if cutoff is None:
        return
    too_long = [shortening for shortening in settings.shortenings if shortening >= cutoff]
    if too_long:
        raise PropertyInputError(
            f"`cutoff.shortenings`: {too_long[0]:g} Angstrom is not shorter than the potential's cutoff of "
            f"{cutoff:g} Angstrom: a shortening must leave a cutoff (e.g. 0.5 and 1)"
        )


def quantity_names(shortening: float) -> tuple[str, str]:
    """The table's names of the energy and force change at ``shortening``: ``energy_change_0.5``, ``force_change_0.5``."""
    return f"energy_change_{shortening:g}", f"force_change_{shortening:g}"


@dataclass
class CutoffResult:
    """The committee's predictions at shortened cutoffs, against its own at the trained one.

    Attributes
    ----------
    cutoff
        The trained cutoff, Angstrom.
    shortenings
        (S,) Angstrom.
    energy_change, force_change
        (S, K) meV/atom and meV/Angstrom, per shortening and member (see the module).
    energy_rmse, force_rmse
        (S + 1,) meV/atom and meV/Angstrom: error of the committee mean against the labels, at the
        trained cutoff and then at each shortening.
    n_frames, n_atoms
        Frames evaluated and their atoms.
    """

    cutoff: float
    shortenings: list[float]
    energy_change: np.ndarray
    force_change: np.ndarray
    energy_rmse: np.ndarray
    force_rmse: np.ndarray
    n_frames: int
    n_atoms: int

    def estimates(self) -> dict[str, Estimate]:
        """``{energy_change_<delta>, force_change_<delta>: Estimate}`` (meV/atom, meV/Angstrom), in shortening order."""
        found = {}
        for index, shortening in enumerate(self.shortenings):
            for name, values in zip(
                quantity_names(shortening), (self.energy_change[index], self.force_change[index]), strict=True
            ):
                found[name] = Estimate(
                    float(np.mean(values)), float(np.std(values)), tuple(map(float, values))
                )
        return found

    def details(self) -> dict:
        """JSON-able: the cutoffs evaluated and the errors against the labels at each."""
        return {
            "cutoff": self.cutoff,
            "shortenings": list(self.shortenings),
            "shortened_cutoffs": [self.cutoff - shortening for shortening in self.shortenings],
            "energy_rmse_meV_per_atom": self.energy_rmse.tolist(),
            "force_rmse_meV_per_angstrom": self.force_rmse.tolist(),
            "n_frames": self.n_frames,
            "n_atoms": self.n_atoms,
        }


def _predict(model, frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """Every member's energies (K, n_frames) in eV and forces (K, n_atoms, 3) in eV/Angstrom."""
    import torch

    from aiida_mlip.potentials.training_data import FrameSet

    data = FrameSet(frames, model)
    energies, forces = [], []
    with torch.no_grad():
        for indices in data.batches(BATCH_SIZE):
            batch, _ = data.batch(indices, model)
            output = model(batch, committee=True, forces=True)
            energies.append(output["energy"].double().cpu().numpy())
            forces.append(output["forces"].double().cpu().numpy())
    return np.concatenate(energies, 1), np.concatenate(forces, 1)


def _rms(values: np.ndarray, axis) -> np.ndarray:
    return np.sqrt(np.mean(values**2, axis=axis))


def cutoff_sensitivity(
    committee, frames: Frames, settings: CutoffSettings | dict | None = None
) -> CutoffResult:
    """Energies and forces of the committee on ``frames`` at each shortened cutoff, against the trained one.

    Parameters
    ----------
    committee
        The built-in committee (:class:`~aiida_mlip.potentials.committee.CommitteePotential`) or its
        calculator (:class:`~aiida_mlip.potentials.calculator.CommitteeCalculator`, whose ``model``
        is taken, with its device and dtype).
    frames
        Labelled frames (energy and forces), e.g. the potential's training set.
    settings
        :class:`CutoffSettings` or a mapping of its keys.

    Raises
    ------
    PropertyInputError
        Bad settings, a shortening at or above the cutoff, no frames, a MACE committee
        (:data:`~aiida_mlip.potentials.shortened.MACE_REFUSAL`), an element the committee does not know.
    """
    from aiida_mlip.potentials.committee import CommitteePotential
    from aiida_mlip.potentials.shortened import MACE_REFUSAL, shortened_committee

    settings = resolve_settings(CutoffSettings, settings)
    model = getattr(committee, "model", committee)
    if not isinstance(model, CommitteePotential):
        raise PropertyInputError(MACE_REFUSAL)
    check_shortenings(settings, model.cutoff)
    if len(frames) == 0:
        raise PropertyInputError("the cutoff check needs labelled frames; none were given")
    if len(frames) > settings.max_frames:
        frames = frames.subset(
            np.unique(np.linspace(0, len(frames) - 1, settings.max_frames).round().astype(int))
        )
    unknown = sorted(set(frames.elements) - set(model.elements))
    if unknown:
        raise PropertyInputError(f"the frames hold {unknown}, which the committee was not trained on")
    natoms = frames.natoms_per_frame
    energy, forces = _predict(model, frames)
    energy_change, force_change = [], []
    energy_rmse = [_rms((energy.mean(0) - frames.energy) / natoms, None)]
    force_rmse = [_rms(forces.mean(0) - frames.forces, None)]
    for shortening in settings.shortenings:
        short_energy, short_forces = _predict(shortened_committee(model, shortening), frames)
        energy_change.append(_rms((short_energy - energy) / natoms, 1))
        force_change.append(_rms((short_forces - forces).reshape(len(short_forces), -1), 1))
        energy_rmse.append(_rms((short_energy.mean(0) - frames.energy) / natoms, None))
        force_rmse.append(_rms(short_forces.mean(0) - frames.forces, None))
    return CutoffResult(
        cutoff=float(model.cutoff),
        shortenings=list(settings.shortenings),
        energy_change=1000 * np.array(energy_change),
        force_change=1000 * np.array(force_change),
        energy_rmse=1000 * np.array(energy_rmse),
        force_rmse=1000 * np.array(force_rmse),
        n_frames=len(frames),
        n_atoms=int(natoms.sum()),
    )
