"""``aiida-mlip neb``: the vacancy hop's rounds printed, exit code 410 when rounds run out, refused inputs."""

from __future__ import annotations

import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.workflows.neb import NebActiveLearningWorkChain
from tests.calculations.conftest import (  # noqa: F401  (a committee of 3 trained in seconds)
    aluminium_dataset,
    tiny_model_file,
    tiny_potential,
)
from tests.properties.test_neb import vacancy_hop
from tests.workflows.test_neb import vacancy_committee  # noqa: F401  (a bulk committee, its dataset)


def invoke(*args):
    return CliRunner().invoke(cmd_root, [str(arg) for arg in args])


@pytest.fixture
def end_points(tmp_path):
    """The vacancy hop's initial and final states as extended XYZ files."""
    initial, final = vacancy_hop()
    paths = tmp_path / "initial.xyz", tmp_path / "final.xyz"
    initial.calc = None
    initial.write(paths[0])
    final.write(paths[1])
    return paths


def test_untrusted_path_without_rounds_left_is_exit_410(vacancy_committee, end_points):  # noqa: F811
    """No refinement round allowed: the committee's NEB is reported, untrusted, with its rounds table."""
    potential, dataset, *_ = vacancy_committee
    result = invoke("neb", potential.pk, *end_points, "--labeller", "emt", "--max-rounds", 0)
    assert result.exit_code == 1, result.output
    query = orm.QueryBuilder().append(
        orm.WorkChainNode, filters={"attributes.process_label": "NebActiveLearningWorkChain"}, project="*"
    )
    node = query.order_by({orm.WorkChainNode: {"id": "desc"}}).first(flat=True)
    assert node.exit_status == NebActiveLearningWorkChain.exit_codes.ERROR_NOT_TRUSTED_AFTER_MAX_ROUNDS.status
    assert (
        "exit 410 The path is still untrusted after 0 refinement round(s): images [0, 1, 2, 3, 4]"
        in result.output
    )
    # the dataset is the potential's training set (no --dataset); nothing was labelled
    assert node.inputs.dataset.uuid == dataset.uuid == node.outputs.dataset.uuid
    assert node.outputs.potential.uuid == potential.uuid
    barrier = node.outputs.barrier.get_dict()
    (record,) = barrier["rounds"]
    assert f"{record['barrier']:.3f} +- {record['barrier_spread']:.3f}" in result.output
    assert "NOT trusted" in result.output and "threshold 0.15 eV/A" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--images", 2],
            "refused: input `settings`: invalid settings: `neb.images`: a nudged elastic band needs",
        ),
        (
            ["--threshold", -1],
            "refused: input `settings`: invalid settings: `threshold`: Input should be greater",
        ),
        (["--labeller", "lj"], "unknown labeller 'lj'"),
    ],
)
def test_bad_input_is_one_line(tiny_potential, aluminium_dataset, end_points, arguments, message):  # noqa: F811
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    result = invoke("neb", tiny_potential.pk, *end_points, "--dataset", aluminium_dataset.pk, *arguments)
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_potential_without_a_stored_training_set_needs_dataset(tiny_potential, end_points):  # noqa: F811
    result = invoke("neb", tiny_potential.pk, *end_points)
    assert result.exit_code != 0
    assert "does not name a stored training dataset: give it with --dataset PK" in result.output


def test_mismatched_end_points_are_refused(tiny_potential, aluminium_dataset, end_points, tmp_path):  # noqa: F811
    initial, final = vacancy_hop()
    final[1:].write(tmp_path / "short.xyz")
    result = invoke(
        "neb", tiny_potential.pk, end_points[0], tmp_path / "short.xyz", "--dataset", aluminium_dataset.pk
    )
    assert result.exit_code != 0
    assert r"refused: the NEB end points have different numbers of atoms (31 and 30)" in result.output
