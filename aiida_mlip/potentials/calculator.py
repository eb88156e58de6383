"""ASE calculator for a committee potential: mean energy, forces and stress, plus the committee spread.

Anything that speaks ASE (molecular dynamics, optimisers, NEB, phonopy through ASE) can run the
committee through :class:`CommitteeCalculator`. The committee spread, the uncertainty estimate that
the active-learning loop watches, is evaluated on every ``spread_every``-th call only, since it costs
one more batched pass through the descriptor; on the other calls only the committee mean is computed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from aiida_mlip.potentials.committee import CommitteePotential, load_committee, resolve_device
from aiida_mlip.potentials.neighbours import VerletList

__all__ = ("CommitteeCalculator", "load_calculator", "resolve_device")

SPREAD_KEYS = (
    "committee_energy",
    "committee_forces",
    "force_deviation",
    "max_force_deviation",
    "energy_deviation",
)


class CommitteeCalculator(Calculator):
    """ASE calculator for a :class:`~.committee.CommitteePotential` (or any committee of a backend).

    The model of another backend (:mod:`~.backends`, e.g. the MACE committee of
    :mod:`~.backends.mace_model`) serves as well when it answers ``batch(positions, numbers, cell,
    pbc, slots=...)``, ``forward`` with the keys of ``CommitteePotential.forward``, ``member(k)`` and
    ``invariant_features(batch)``.

    ``energy``, ``free_energy``, ``energies`` (per atom), ``forces`` and ``stress`` (3D-periodic
    cells only, Voigt order, eV/Angstrom^3, ASE sign) are the committee mean. When the spread is
    evaluated on a call, ``self.results`` also holds:

    - ``committee_energy`` (K,) eV: every member's total energy;
    - ``committee_forces`` (K, N, 3) eV/Angstrom;
    - ``force_deviation`` (N,) eV/Angstrom: ``sqrt(mean_k |F_ik - <F_i>|^2)``;
    - ``max_force_deviation`` float, eV/Angstrom;
    - ``energy_deviation`` float, eV: standard deviation over members of the total energy.

    Parameters
    ----------
    model
        The committee, or the path of a model file of the built-in committee.
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``... Asking for
        CUDA where none is visible raises ``RuntimeError``.
    spread_every
        Evaluate the committee spread on the first call and then on every ``spread_every``-th call;
        the other calls return only the mean (faster). 1: every call.
    dtype
        ``"float32"`` (default) or ``"float64"``.
    skin
        Verlet skin in Angstrom: the neighbour list is built with ``cutoff + skin`` and reused until
        an atom has moved by more than ``skin / 2`` or the cell changes.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: CommitteePotential | str | os.PathLike,
        device: str | torch.device = "auto",
        spread_every: int = 1,
        dtype: str | torch.dtype = "float32",
        skin: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if int(spread_every) < 1:
            raise ValueError(f"spread_every must be >= 1, got {spread_every}")
        self.device = resolve_device(device)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if not isinstance(model, torch.nn.Module):
            model = load_committee(model)
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.spread_every = int(spread_every)
        self.neighbours = VerletList(self.model.cutoff, skin)
        self.calls = 0

    @property
    def elements(self) -> list[str]:
        """Chemical symbols the model knows."""
        return list(self.model.elements)

    @property
    def cutoff(self) -> float:
        """Angstrom."""
        return self.model.cutoff

    @property
    def committee_size(self) -> int:
        return self.model.committee_size

    def member_calculators(self) -> list[CommitteeCalculator]:
        """One calculator per committee member (same device, dtype and skin), to compute a property per member.

        Each is a :class:`CommitteeCalculator` over a committee of one
        (:meth:`~.committee.CommitteePotential.member`): its ``energy``, ``forces`` and ``stress``
        are that member's alone.
        """
        return [
            CommitteeCalculator(
                self.model.member(k), device=self.device, dtype=self.model.dtype, skin=self.neighbours.skin
            )
            for k in range(self.committee_size)
        ]

    def _batch(self, atoms: Atoms, neighbours: VerletList | None = None):
        slots = (neighbours or self.neighbours).update(atoms.positions, atoms.cell.array, atoms.pbc)
        return self.model.batch(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc, slots=slots)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        with_spread = self.calls % self.spread_every == 0
        self.calls += 1
        results = self.evaluate_many([self.atoms], [self.neighbours], spread=with_spread)[0]
        if isinstance(results, Exception):
            raise results
        self.results = results

    def evaluate_many(
        self, configurations: Sequence[Atoms], neighbours: Sequence[VerletList], spread: bool = True
    ) -> list[dict | Exception]:
        """Evaluate several configurations in one forward pass of the model (a batch of B graphs).

        The results of configuration ``b`` are those :meth:`calculate` leaves in ``self.results``
        for it alone (the committee mean, and with ``spread`` the committee spread), to the
        precision of the dtype: each configuration is its own graph in the batch, nothing couples
        them. Used by lockstep walkers (:mod:`aiida_mlip.exploration.lockstep`).

        Parameters
        ----------
        configurations
            B configurations (positions in Angstrom); not modified.
        neighbours
            One :class:`~.neighbours.VerletList` per configuration (each walker keeps its own).
        spread
            Evaluate every member (the committee spread) or only the mean.

        Returns
        -------
        list
            Per configuration its results dict, or the exception that configuration raised (its
            neighbour list or packing failed, e.g. on non-finite positions; or the whole pass
            failed); the others are evaluated all the same.
        """
        answers: list[dict | Exception] = []
        batches, good = [], []
        for atoms, verlet in zip(configurations, neighbours, strict=True):
            try:
                batches.append(self._batch(atoms, verlet))
                good.append(len(answers))
                answers.append({})
            except Exception as error:  # this configuration alone is broken
                answers.append(error)
        if not batches:
            return answers
        periodic = [bool(configurations[index].pbc.all()) for index in good]
        try:
            with torch.no_grad():
                output = self.model(
                    self.model.join(batches) if len(batches) > 1 else batches[0],
                    committee=spread,
                    forces=True,
                    strain_derivative=any(periodic),
                )
            energy = output["energy"].double().cpu().numpy()
            atomic = output["atomic_energies"].double().cpu().numpy()
            forces = output["forces"].double().cpu().numpy()
            strain = output["strain_derivative"].double().cpu().numpy() if any(periodic) else None
        except Exception as error:  # the pass failed: every configuration of it gets the error
            for index in good:
                answers[index] = error
            return answers
        start = 0
        for frame, index in enumerate(good):
            atoms = configurations[index]
            atoms_slice = slice(start, start + len(atoms))
            start += len(atoms)
            answers[index] = _frame_results(
                energy[..., frame],
                atomic[..., atoms_slice],
                forces[..., atoms_slice, :],
                strain[..., frame, :, :] if periodic[frame] else None,
                atoms.get_volume() if periodic[frame] else None,
                spread,
            )
        return answers

    def get_features(self, atoms: Atoms | None = None, kind: str = "hidden") -> np.ndarray:
        """Per-atom features for D-optimal (MaxVol) selection and extrapolation grades.

        Parameters
        ----------
        atoms
            The configuration (default: the calculator's atoms).
        kind
            ``"hidden"`` (default): the last hidden layer of every member, concatenated, shape
            (N, K H). Each member's atomic energy is linear in its last layer's weights with
            exactly these features as regressors, so D-optimality on them is D-optimality of the
            committee's final linear fits (the "linear in parameters" view of Podryabinkin and
            Shapeev, Comput. Mater. Sci. 140, 171 (2017), applied to the last layer).
            ``"descriptor"``: the model's invariant features (:meth:`~.committee.CommitteePotential.invariant_features`:
            for the built-in committee the standardised power spectrum, shape (N, F), independent of the readouts).

        Returns
        -------
        (N, F) float64
        """
        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ValueError("no atoms given")
        if kind not in ("hidden", "descriptor"):
            raise ValueError(f"kind must be 'hidden' or 'descriptor', got {kind!r}")
        batch = self.model.batch(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
        with torch.no_grad():
            if kind == "descriptor":
                values = self.model.invariant_features(batch)
            else:
                hidden = self.model(batch, forces=False, hidden_features=True)["hidden"]
                values = hidden.permute(1, 0, 2).reshape(len(atoms), -1)
        return values.double().cpu().numpy()


def _frame_results(energy, atomic, forces, strain, volume, spread: bool) -> dict:
    """The calculator results of one configuration from its slice of the model's output.

    ``energy`` ([K]) eV, ``atomic`` ([K,] N) eV, ``forces`` ([K,] N, 3) eV/Angstrom, ``strain``
    ([K,] 3, 3) eV or None (not 3D-periodic), ``volume`` Angstrom^3; a leading K when ``spread``.
    """
    results = {}
    if spread:
        mean_forces = forces.mean(0)
        deviation = np.sqrt(((forces - mean_forces) ** 2).sum(-1).mean(0))
        results.update(
            committee_energy=energy,
            committee_forces=forces,
            force_deviation=deviation,
            max_force_deviation=float(deviation.max()) if len(deviation) else 0.0,
            energy_deviation=float(energy.std()),
        )
        energy, atomic, forces = energy.mean(0), atomic.mean(0), mean_forces
        strain = strain.mean(0) if strain is not None else None
    results.update(energy=float(energy), free_energy=float(energy), energies=atomic, forces=forces)
    if strain is not None:
        stress = strain / volume
        results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return results


def load_calculator(
    path: str | os.PathLike, device: str | torch.device = "auto", spread_every: int = 1, **kwargs
) -> CommitteeCalculator:
    """Read a committee model file and return its ASE calculator.

    Parameters
    ----------
    path
        Model file written by :func:`~.committee.save_committee` (its weights digest is checked).
    device
        ``"auto"``: CUDA if available, else CPU.
    spread_every
        See :class:`CommitteeCalculator`.
    **kwargs
        Passed to :class:`CommitteeCalculator` (``dtype``, ``skin``, ...).
    """
    return CommitteeCalculator(load_committee(path), device=device, spread_every=spread_every, **kwargs)
