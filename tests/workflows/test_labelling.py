"""``LabellingWorkChain`` with the ASE labeller, run for real on localhost."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.workflows.labelling import LabellingWorkChain


def structures(count, bad=()):
    rng = np.random.default_rng(3)
    images = []
    for index in range(count):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True)
        atoms.positions += rng.normal(0, 0.04, atoms.positions.shape)
        if index in bad:
            atoms.set_chemical_symbols(["Al", "Al", "Al", "Li"])
        images.append(atoms)
    return StructureSetData.from_atoms(images)


@pytest.fixture
def builder(engine_code):
    def factory(structure_set, **extra):
        builder = LabellingWorkChain.get_builder()
        builder.structures = structure_set
        builder.ase.code = engine_code("mlip.label")
        # trial off: these tests exercise failures in the jobs (Li), which the submission trial refuses
        builder.ase.labeller = orm.Dict({"calculator": "ase.calculators.emt.EMT", "trial": False})
        for key, value in extra.items():
            setattr(builder, key, value)
        return builder

    return factory


def test_labels_in_parallel_jobs_and_reports_failures(builder):
    results, node = run_get_node(
        builder(
            structures(5, bad=(3,)), max_structures_per_job=orm.Int(2), max_failure_fraction=orm.Float(0.25)
        )
    )
    assert node.is_finished_ok, node.exit_message
    assert results["dataset"].n_frames == 4
    assert [failure["index"] for failure in results["failures"]["failures"]] == [3]
    jobs = [link.node for link in node.base.links.get_outgoing(link_label_filter="label_%").all()]
    assert len(jobs) == 3
    # every frame of the dataset names the job that labelled it
    assert set(results["dataset"].get_frames().source_uuid) <= {job.uuid for job in jobs}


def test_too_many_failures_fail_the_work_chain_but_keep_labels(builder):
    results, node = run_get_node(builder(structures(3, bad=(0, 2)), max_failure_fraction=orm.Float(0.5)))
    assert node.exit_status == LabellingWorkChain.exit_codes.ERROR_TOO_MANY_FAILURES.status
    assert results["dataset"].n_frames == 1
    assert len(results["failures"]["failures"]) == 2


def test_bad_fraction_is_refused(builder):
    with pytest.raises(ValueError, match="max_failure_fraction"):
        run_get_node(builder(structures(1), max_failure_fraction=orm.Float(1.5)))
