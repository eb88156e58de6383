"""``LabelCalculation`` runs ``aiida-mlip-label`` for real on localhost."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.calculations.label import LabelCalculation
from aiida_mlip.data.structures import StructureSetData


def rattled_aluminium(count, seed=0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True)
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        images.append(atoms)
    return images


@pytest.fixture
def label_builder(engine_code):
    def factory(images, labeller):
        builder = LabelCalculation.get_builder()
        builder.code = engine_code("mlip.label")
        builder.structures = StructureSetData.from_atoms(images)
        builder.labeller = orm.Dict(labeller)
        return builder

    return factory


def test_label_with_emt_matches_direct_evaluation(label_builder):
    images = rattled_aluminium(3)
    results, node = run_get_node(label_builder(images, {"calculator": "ase.calculators.emt.EMT"}))
    assert node.is_finished_ok, node.exit_message
    frames = results["labelled"].get_frames()
    assert len(frames) == 3
    for index, atoms in enumerate(images):
        atoms.calc = EMT()
        assert frames.energy[index] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(frames.forces[4 * index : 4 * index + 4], atoms.get_forces(), atol=1e-10)
        np.testing.assert_allclose(frames.stress[index], atoms.get_stress(), atol=1e-12)
    assert set(frames.source_uuid) == {node.uuid}
    assert results["labelled"].label_settings["calculator"] == "ase.calculators.emt.EMT"
    assert results["summary"]["n_labelled"] == 3
    assert "failures" not in results


def test_partial_failure_keeps_the_labelled_frames(label_builder):
    images = rattled_aluminium(3)
    images[1].set_chemical_symbols(["Al", "Al", "Al", "Li"])  # EMT has no parameters for Li
    # without the submission trial, the failure happens in the job, where it must not lose the others
    results, node = run_get_node(
        label_builder(images, {"calculator": "ase.calculators.emt.EMT", "trial": False})
    )
    assert node.exit_status == LabelCalculation.exit_codes.ERROR_SOME_LABELS_FAILED.status
    assert results["labelled"].n_frames == 2
    failures = results["failures"]["failures"]
    assert [failure["index"] for failure in failures] == [1]
    assert "Li" in failures[0]["error"]


def test_all_failed_gives_exit_code(label_builder):
    images = rattled_aluminium(1)
    images[0].set_chemical_symbols(["Li"] * 4)
    _, node = run_get_node(label_builder(images, {"calculator": "ase.calculators.emt.EMT", "trial": False}))
    assert node.exit_status == LabelCalculation.exit_codes.ERROR_ALL_LABELS_FAILED.status


@pytest.mark.parametrize(
    ("labeller", "message"),
    [
        ({"calculator": "ase.calculators.nonexistent.Calc"}, "cannot import module"),
        ({"calculator": "ase.calculators.emt.NotThere"}, "has no attribute 'NotThere'"),
        ({"calculator": "numpy.ndarray"}, "is not an ASE calculator class"),
        (
            {"calculator": "ase.calculators.emt.EMT", "properties": ["energy"]},
            "must include energy and forces",
        ),
        ({"calculator": "ase.calculators.emt.EMT", "trial": "yes"}, "'trial' must be true or false"),
    ],
)
def test_bad_labeller_is_refused_before_any_job(label_builder, labeller, message):
    before = orm.QueryBuilder().append(LabelCalculation).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(label_builder(rattled_aluminium(1), labeller))
    assert orm.QueryBuilder().append(LabelCalculation).count() == before


def test_empty_structures_cannot_exist():
    with pytest.raises(ValueError, match="no configurations"):
        StructureSetData.from_atoms([])


def _refused_before_any_node(builder, message):
    before = orm.QueryBuilder().append(orm.Node).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.Node).count() == before


def test_element_the_calculator_cannot_label_is_refused_at_submission(label_builder):
    images = rattled_aluminium(2)
    images[1].set_chemical_symbols(["Si"] * 4)
    builder = label_builder(images, {"calculator": "ase.calculators.emt.EMT"})
    builder.structures.store()
    _refused_before_any_node(
        builder, r"calculator ase.calculators.emt.EMT cannot label Si .*No EMT-potential for Si"
    )


def test_overlapping_atoms_are_refused_with_the_pw_distance(label_builder):
    from aiida_mlip.workflows.pw_labels import min_interatomic_distance

    images = rattled_aluminium(2)
    images[1].positions[1] = images[1].positions[0] + [0.1, 0.0, 0.0]
    builder = label_builder(images, {"calculator": "ase.calculators.emt.EMT"})
    builder.structures.store()
    below = min_interatomic_distance()
    _refused_before_any_node(
        builder, rf"frame 1: atoms 0 and 1 are 0.100 Angstrom apart .*below {below} Angstrom"
    )


def test_declared_element_list_replaces_the_trial():
    from ase.calculators.emt import EMT

    from aiida_mlip.engine.label import check_elements

    class DeclaredEMT(EMT):
        supported_elements = ("Al", "Cu")

    import sys
    import types

    module = types.ModuleType("declared_emt_module")
    module.DeclaredEMT = DeclaredEMT
    sys.modules["declared_emt_module"] = module
    try:
        check_elements({"calculator": "declared_emt_module.DeclaredEMT"}, ["Al", "Cu"])
        with pytest.raises(ValueError, match=r"cannot label \['Ni'\]: it supports \['Al', 'Cu'\]"):
            check_elements({"calculator": "declared_emt_module.DeclaredEMT"}, ["Al", "Ni"])
    finally:
        del sys.modules["declared_emt_module"]
