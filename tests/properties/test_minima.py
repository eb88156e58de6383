"""Spurious minima: a committee trained for one epoch holds aluminium where EMT pushes it away; EMT itself has none."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.potentials.calculator import CommitteeCalculator
from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.minima import CONFIG_TYPE, MinimaSettings, spurious_minima, start_structures
from aiida_mlip.properties.validation import ValidationSettings, check_inputs
from aiida_mlip.settings import SettingsError

#: Few, short relaxations of the 4-atom cubic cell: two rattled starts and one random.
SETTINGS = {"rattled": 2, "random": 1, "steps": 80, "force_threshold": 0.2}


def aluminium():
    return bulk("Al", "fcc", a=4.05, cubic=True)


def test_a_poorly_trained_committee_has_spurious_minima(poor_model_file):
    calculator = CommitteeCalculator(poor_model_file, device="cpu", dtype="float64")
    found = spurious_minima(aluminium(), calculator, SETTINGS, reference=EMT())
    assert [minimum.start for minimum in found.minima] == ["rattled", "rattled", "random"]
    assert found.converged, [minimum.record() for minimum in found.minima]
    for minimum in found.converged:  # a minimum of the potential: its own forces below fmax
        assert minimum.max_force < 0.05 and minimum.max_force_deviation > 0
    assert found.spurious, [minimum.record() for minimum in found.minima]
    for minimum in found.spurious:
        forces = _emt_forces(minimum.atoms)
        largest = np.linalg.norm(forces, axis=1).max()
        assert minimum.reference_max_force == pytest.approx(largest, rel=1e-12)
        assert largest > SETTINGS["force_threshold"]
    scalars = found.scalars()
    assert scalars["n_minima"] == len(found.converged) and scalars["n_spurious"] == len(found.spurious) >= 1
    assert scalars["max_reference_force"] > SETTINGS["force_threshold"]
    frames = found.spurious_frames()
    assert len(frames) == len(found.spurious) and set(frames.config_type) == {CONFIG_TYPE}
    for index, minimum in enumerate(found.spurious):  # labelled with EMT's energy, forces and stress
        reference = minimum.atoms.copy()
        reference.calc = EMT()
        assert frames.energy[index] == pytest.approx(reference.get_potential_energy(), abs=1e-10)
        forces = frames.forces[frames.offsets[index] : frames.offsets[index + 1]]
        assert np.allclose(forces, reference.get_forces(), atol=1e-10)
        assert frames.has_stress[index]
    assert found.details()["relaxed_with"] == "committee mean"


def _emt_forces(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    return atoms.get_forces()


def test_emt_relaxed_with_itself_has_no_spurious_minimum():
    found = spurious_minima(aluminium(), EMT(), SETTINGS, reference=EMT())
    assert found.converged and not found.spurious and found.spurious_frames() is None
    for minimum in found.converged:
        assert minimum.reference_max_force == pytest.approx(minimum.max_force, abs=1e-12)
        assert minimum.max_force_deviation is None  # EMT has no committee


def test_without_a_reference_the_minima_and_their_spread_only(poor_model_file):
    calculator = CommitteeCalculator(poor_model_file, device="cpu", dtype="float64")
    found = spurious_minima(aluminium(), calculator, {"rattled": 1, "random": 0, "steps": 80})
    assert set(found.scalars()) == {"n_minima", "max_force_deviation"}
    assert found.minima[0].spurious is None and found.spurious_frames() is None
    minima = found.minima_frames()
    assert len(minima) == len(found.converged) and not minima.is_labelled


def test_start_structures_keep_atoms_apart():
    atoms = aluminium()
    starts = start_structures(atoms, MinimaSettings(rattled=3, random=5, seed=2))
    assert [kind for kind, _ in starts] == ["rattled"] * 3 + ["random"] * 5
    for _, start in starts:
        assert start.get_chemical_symbols() == atoms.get_chemical_symbols()
        assert np.allclose(start.cell.array, atoms.cell.array)
    for _, start in starts[3:]:  # 0.7 of the fcc nearest-neighbour distance, 2.86 Angstrom
        assert start.get_all_distances(mic=True)[np.triu_indices(4, 1)].min() >= 0.7 * 4.05 / 2**0.5 - 1e-9


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rattled": 0, "random": 0}, "`minima` needs at least one start structure"),
        ({"force_threshold": -0.1}, "`minima.force_threshold`: Input should be greater than 0"),
        ({"rattle": 0}, "`minima.rattle`: Input should be greater than 0"),
        ({"threshold": 0.3}, r"unknown key `minima.threshold`; did you mean `force_threshold`\?"),
    ],
)
def test_bad_settings_are_refused(values, message):
    with pytest.raises(SettingsError, match=message):
        ValidationSettings.from_mapping({"properties": ["minima"], "minima": values})


def test_inputs_are_checked():
    settings = ValidationSettings.from_mapping({"properties": ["minima", "cutoff"]})
    molecule = aluminium()
    molecule.pbc = False
    with pytest.raises(
        PropertyInputError, match="random start structures of `minima` need a crystal periodic"
    ):
        check_inputs(settings, molecule)
    check_inputs(
        settings.model_copy(update={"properties": ["minima"], "minima": MinimaSettings(random=0)}), molecule
    )
    with pytest.raises(PropertyInputError, match="`cutoff.shortenings`: 1 Angstrom is not shorter than"):
        check_inputs(settings, aluminium(), cutoff=1.0)
    with pytest.raises(PropertyInputError, match=r"needs the built-in committee.*backend: mace"):
        check_inputs(settings, aluminium(), cutoff=5.0, backend="mace")
