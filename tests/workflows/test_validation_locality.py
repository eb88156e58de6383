"""``ValidationWorkChain`` with ``cutoff`` and ``minima``: the training set as an input, spurious minima for the loop.

The values must be the kernels' own (``aiida_mlip.properties.cutoff`` / ``minima``) and the
spurious minima a ``DatasetData`` the active-learning work chain takes as its ``dataset``.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.foreground import run_get_node
from aiida_mlip.potentials.committee import load_committee
from aiida_mlip.properties.cutoff import cutoff_sensitivity
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from tests.calculations.conftest import emt_aluminium_images
from tests.properties.conftest import poor_model_file  # noqa: F401  (a committee trained for one epoch)
from tests.workflows.test_validation import EMT_REFERENCE, builder_for, rows_of

CUTOFF = {"properties": ["cutoff"], "cutoff": {"shortenings": [0, 0.5, 1.0]}}
MINIMA = {
    "properties": ["minima"],
    "minima": {"rattled": 2, "random": 1, "steps": 80, "force_threshold": 0.2},
}


def cubic_aluminium() -> orm.StructureData:
    return orm.StructureData(ase=bulk("Al", "fcc", a=4.05, cubic=True)).store()


@pytest.fixture(scope="module")
def training_set(aiida_profile):
    """The frames ``tiny_model_file`` was trained on, as a stored DatasetData."""
    return DatasetData.from_atoms(emt_aluminium_images(24, seed=5)).store()


@pytest.fixture(scope="module")
def trained_potential(training_set, tiny_model_file):
    """The tiny committee, recording its training set as the loop's potentials do."""
    return PotentialData(file=tiny_model_file, training_set_uuid=training_set.uuid).store()


def test_cutoff_check_on_the_potentials_training_set(trained_potential, training_set, tiny_model_file):
    _, node = run_get_node(builder_for(trained_potential, cubic_aluminium(), CUTOFF))
    assert node.is_finished_ok, node.exit_message
    rows = rows_of(node.outputs.comparison.get_dict(), "cutoff")
    assert list(rows) == [
        f"{kind}_change_{delta}" for delta in ("0", "0.5", "1") for kind in ("energy", "force")
    ]
    assert rows["energy_change_0"]["mean"] == 0 and rows["force_change_0"]["mean"] == 0
    assert 0 < rows["energy_change_0.5"]["mean"] < rows["energy_change_1"]["mean"]
    assert 0 < rows["force_change_0.5"]["mean"] < rows["force_change_1"]["mean"]
    assert rows["force_change_1"]["unit"] == "meV/Angstrom" and rows["energy_change_1"]["unit"] == "meV/atom"
    assert all(row["within_tolerance"] is None and row["reference"] is None for row in rows.values())
    # the kernel's values, on the training set the potential names
    direct = cutoff_sensitivity(
        load_committee(tiny_model_file).double(), training_set.get_frames(), CUTOFF["cutoff"]
    )
    assert rows["force_change_1"]["members"] == pytest.approx(direct.force_change[2].tolist(), rel=1e-6)
    calculation = node.base.links.get_outgoing(link_label_filter="cutoff").one().node
    assert calculation.base.links.get_incoming().get_node_by_label("dataset").uuid == training_set.uuid
    details = node.outputs.comparison["properties"]["cutoff"]["details"]
    assert details["shortened_cutoffs"] == [4.0, 3.5, 3.0] and details["n_frames"] == 24


def test_cutoff_check_on_given_frames(trained_potential):
    frames = DatasetData.from_atoms(emt_aluminium_images(6, seed=11)).store()
    builder = builder_for(trained_potential, cubic_aluminium(), CUTOFF)
    builder.dataset = frames
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert node.outputs.comparison["properties"]["cutoff"]["details"]["n_frames"] == 6


def test_spurious_minima_are_a_dataset_for_the_loop(aiida_profile, poor_model_file):  # noqa: F811
    potential = PotentialData(file=poor_model_file).store()
    _, node = run_get_node(builder_for(potential, cubic_aluminium(), MINIMA, EMT_REFERENCE))
    assert node.is_finished_ok, node.exit_message
    rows = rows_of(node.outputs.comparison.get_dict(), "minima")
    assert set(rows) == {"n_minima", "n_spurious", "max_reference_force", "max_force_deviation"}
    assert rows["n_spurious"]["mean"] >= 1 and rows["max_reference_force"]["mean"] > 0.2
    found = node.outputs.spurious_minima
    assert isinstance(found, DatasetData) and found.n_frames == rows["n_spurious"]["mean"]
    assert found.label_settings == {"method": "ase", "calculator": "ase.calculators.emt.EMT", "kwargs": {}}
    frames = found.get_frames()
    for index, atoms in enumerate(frames.to_atoms()):
        reference = atoms.copy()
        reference.calc = EMT()
        forces = reference.get_forces()
        assert np.linalg.norm(forces, axis=1).max() > 0.2  # above the threshold: why it was flagged
        assert np.allclose(
            frames.forces[frames.offsets[index] : frames.offsets[index + 1]], forces, atol=1e-10
        )
    assert node.outputs.minima.n_frames == rows["n_minima"]["mean"]
    assert found.creator.process_label == "compute_property"
    # the active-learning work chain takes it as its initial dataset
    builder = ActiveLearningWorkChain.get_builder()
    builder.dataset = found
    assert builder.dataset.uuid == found.uuid
    assert ActiveLearningWorkChain.spec().inputs["dataset"].validate(found) is None


def test_minima_without_reference(aiida_profile, poor_model_file):  # noqa: F811
    potential = PotentialData(file=poor_model_file).store()
    settings = dict(MINIMA, minima={"rattled": 1, "random": 0, "steps": 80})
    _, node = run_get_node(builder_for(potential, cubic_aluminium(), settings))
    assert node.is_finished_ok, node.exit_message
    assert set(rows_of(node.outputs.comparison.get_dict(), "minima")) == {"n_minima", "max_force_deviation"}
    assert "spurious_minima" not in node.outputs


BAD_INPUTS = {
    "shortening at the cutoff": (
        {"properties": ["cutoff"], "cutoff": {"shortenings": [0.5, 4.0]}},
        "`cutoff.shortenings`: 4 Angstrom is not shorter than the potential's cutoff of 4 Angstrom",
    ),
    "negative shortening": (
        {"properties": ["cutoff"], "cutoff": {"shortenings": [-1]}},
        "a cutoff shortening is a length >= 0 Angstrom",
    ),
    "zero structures": (
        {"properties": ["minima"], "minima": {"rattled": 0, "random": 0}},
        "`minima` needs at least one start structure",
    ),
    "negative threshold": (
        {"properties": ["minima"], "minima": {"force_threshold": -0.5}},
        "`minima.force_threshold`: Input should be greater than 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_at_submission(trained_potential, case):
    settings, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        run_get_node(builder_for(trained_potential, cubic_aluminium(), settings))


def test_cutoff_without_frames_is_refused(tiny_model_file):
    potential = PotentialData(file=tiny_model_file).store()  # records no training set
    with pytest.raises(
        ValueError, match=r"`cutoff` needs labelled frames: potential <\d+> records no training set"
    ):
        run_get_node(builder_for(potential, cubic_aluminium(), CUTOFF))
