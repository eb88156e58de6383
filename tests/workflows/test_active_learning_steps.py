"""``ActiveLearningWorkChain`` outline steps called directly on a set-up instance (no jobs run).

The three false-convergence cases of issue 11 are planted here with the counts that were seen on
the old main: each now ends with a named non-zero exit code.
"""

import time
import types

import pytest
from aiida import orm

from aiida_mlip.history import exploration_fields, new_record
from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from tests.workflows.test_active_learning import al_builder

EXIT = ActiveLearningWorkChain.exit_codes


@pytest.fixture
def workchain(generate_workchain, engine_code):
    """A set-up ActiveLearningWorkChain with the fast protocol's convergence block (fraction 0.95)."""

    def factory(**overrides):
        builder = al_builder(
            engine_code,
            convergence={"accurate_fraction": 0.95, "patience": 1, "max_iterations": 6},
            **overrides,
        )
        process = generate_workchain(ActiveLearningWorkChain, builder)
        process.setup()
        return process

    return factory


def explored(process, iteration, accurate, candidate, failed, selected=0, labelled=0):
    """Put the context where it is after exploring (and selecting/labelling) in ``iteration``."""
    process.ctx.iteration = iteration
    process.ctx.iteration_start = time.time()
    process.ctx.record = new_record(iteration)
    counts = {"accurate": accurate, "candidate": candidate, "failed": failed}
    process.ctx.record.update(exploration_fields({"counts": counts, "n_candidates": candidate}))
    process.ctx.record.update(n_selected=selected, n_labelled=labelled)


def test_walker_exploding_at_first_check_ends_with_406(workchain):
    """(a) accurate 0.000: the only checked frame failed."""
    process = workchain()
    explored(process, 1, accurate=0, candidate=0, failed=1)
    process.check_convergence()
    assert not process.should_iterate()
    exit_code = process.results()
    assert exit_code.status == EXIT.ERROR_EXPLORATION_ALL_FAILED.status == 406
    assert "every walker failed" in exit_code.message
    history = process.outputs["history"].get_dict()
    assert history["ended"]["criterion"] == "all_failed" and not history["ended"]["converged"]
    assert history["iterations"][0]["convergence"]["accurate_fraction"] == 0.0


def test_readme_case_ends_with_407(workchain):
    """(c) `aiida-mlip launch Al.cif --protocol fast --labeller emt`: 3 explored, 2 failed, 0 labelled."""
    process = workchain()
    explored(process, 1, accurate=1, candidate=0, failed=2)
    process.check_convergence()
    assert not process.should_iterate()
    exit_code = process.results()
    assert exit_code.status == EXIT.ERROR_NOT_CONVERGED_NO_NEW_LABELS.status == 407
    assert "accurate fraction 0.333" in exit_code.message and "2 failed" in exit_code.message
    record = process.outputs["history"]["iterations"][0]
    assert record["accurate_fraction"] == pytest.approx(1 / 3)
    assert record["convergence"]["criterion"] == "no_new_labels"


def test_budget_zero_is_refused_at_submission(workchain):
    """(b) a budget of 0 labels nothing: refused before anything runs."""
    with pytest.raises(ValueError, match="budget"):
        workchain(selection={"budget": 0})


def test_learning_iterations_go_on_and_the_last_one_ends_with_410(workchain):
    process = workchain()
    for iteration in range(1, 7):
        explored(process, iteration, accurate=10, candidate=10, failed=2, selected=3, labelled=3)
        process.check_convergence()
        assert process.should_iterate() == (iteration < 6)
    exit_code = process.results()
    assert exit_code.status == EXIT.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status == 410
    assert "max_iterations" in exit_code.message


def test_accurate_iteration_converges_with_exit_0_and_names_the_criterion(workchain, tiny_potential):
    process = workchain()
    process.ctx.potential = tiny_potential
    explored(process, 1, accurate=96, candidate=3, failed=1)
    process.check_convergence()
    assert not process.should_iterate()
    assert process.results() is None
    ended = process.outputs["history"]["ended"]
    assert ended["converged"] and ended["criterion"] == "converged"
    assert "accurate fraction 0.960" in ended["reason"]


class _Outputs(dict):
    __getattr__ = dict.__getitem__


def _training(status, potential):
    metrics = orm.Dict({"status": status, "best_epoch": 0, "epochs": 12, "valid": {"mean": {"forces": 0.1}}})
    return types.SimpleNamespace(
        is_finished_ok=True,
        pk=0,
        exit_message=None,
        exit_status=0,
        outputs=_Outputs(potential=potential, metrics=metrics),
        ctime=0,
        mtime=0,
    )


def test_no_improvement_retrains_once_from_scratch(workchain, monkeypatch):
    import aiida_mlip.workflows.active_learning as module

    monkeypatch.setattr(module, "_span", lambda node: 1.0)
    process = workchain()
    parent, warm, scratch = orm.Int(1), orm.Int(2), orm.Int(3)
    process.ctx.potential = parent
    process.ctx.dataset = types.SimpleNamespace(n_frames=10, pk=0)
    explored(process, 1, accurate=5, candidate=5, failed=0, selected=3, labelled=3)

    process.ctx.training = _training("no_improvement", warm)
    process.inspect_training()
    assert process.should_retrain_from_scratch()
    assert process.ctx.potential is parent  # the warm start that could not beat its parent is not taken

    parents = []
    monkeypatch.setattr(process, "_submit_training", parents.append)
    process.retrain_from_scratch()
    assert parents == [None] and not process.should_retrain_from_scratch()

    process.ctx.training = _training("ok", scratch)
    process.inspect_training()
    assert process.ctx.potential is scratch and not process.should_retrain_from_scratch()
    record = process.ctx.record
    assert record["training_status"] == "no_improvement" and record["retrained_from_scratch"]
    assert record["times"]["train"] == 2.0


def test_calibration_is_an_output_with_provenance_and_sets_the_window(
    workchain, tiny_potential, aluminium_dataset
):
    """New labels calibrate the committee that has not seen them; a target error picks the next window."""
    from aiida_mlip.learning.calibration import Calibration

    process = workchain(trust={"lo": 0.02, "hi": 5.0, "target_force_error": 0.1})
    process.ctx.potential = tiny_potential
    explored(process, 1, accurate=5, candidate=11, failed=0, selected=16, labelled=16)
    process._calibrate(aluminium_dataset)

    calibration = process.outputs["calibration"]["iteration_1"]
    diagram = process.outputs["reliability_diagram"]["iteration_1"]
    creator = calibration.creator
    assert creator.process_label == "calibrate_uncertainty" and diagram.creator.pk == creator.pk
    assert {link.link_label: link.node.pk for link in creator.base.links.get_incoming().all()} == {
        "potential": tiny_potential.pk,
        "labels": aluminium_dataset.pk,
    }
    # (the CALL link from the work chain exists in a real run only: see test_active_learning.py)
    assert diagram.get_content(mode="rb")[:8] == b"\x89PNG\r\n\x1a\n"
    fit, pairs = calibration["fit"], calibration["pairs"]
    assert fit["n_pairs"] == len(pairs["predicted"]) == aluminium_dataset.n_frames
    assert not fit["fallback"] and fit["factor"] > 0

    # the history records it and the next window comes from it: predicted error at lo = target, hi = 5 lo
    summary = process.ctx.record["calibration"]
    assert summary["factor"] == pytest.approx(fit["factor"])
    assert summary["exponent"] == pytest.approx(fit["exponent"])
    assert summary["spearman"] == fit["spearman"]
    assert summary["n_new_pairs"] == summary["n_pairs"] == aluminium_dataset.n_frames
    window = process.ctx.window
    assert Calibration.from_dict(fit).predict(window["lo"]) == pytest.approx(0.1)
    assert window["hi"] == pytest.approx(5 * window["lo"])
    assert window["source"] == "calibration of iteration 1 for target 0.1 eV/A"

    # the next iteration's calibration pools these pairs with its own; the previous fit is an input
    explored(process, 2, accurate=5, candidate=11, failed=0, selected=16, labelled=16)
    process._calibrate(aluminium_dataset)
    second = process.outputs["calibration"]["iteration_2"]
    inputs = {link.link_label: link.node.pk for link in second.creator.base.links.get_incoming().all()}
    assert inputs["previous"] == calibration.pk
    assert (
        second["fit"]["n_pairs"] == len(second["pooled_pairs"]["predicted"]) == 2 * aluminium_dataset.n_frames
    )
    assert len(second["pairs"]["predicted"]) == aluminium_dataset.n_frames
    assert process.ctx.record["calibration"]["n_new_pairs"] == aluminium_dataset.n_frames


def test_too_few_calibration_pairs_keep_the_fixed_window(workchain, tiny_potential, aluminium_dataset):
    from aiida_mlip.data.dataset import DatasetData

    process = workchain(trust={"lo": 0.02, "hi": 5.0, "target_force_error": 0.1})
    process.ctx.potential = tiny_potential
    explored(process, 1, accurate=5, candidate=4, failed=0, selected=4, labelled=4)
    few = DatasetData.from_atoms(aluminium_dataset.get_atoms()[:4]).store()
    process._calibrate(few)
    assert process.outputs["calibration"]["iteration_1"]["fit"]["fallback"]
    assert process.ctx.window == {"lo": 0.02, "hi": 5.0, "source": "fixed"}


@pytest.mark.parametrize("target", [0.0, -0.1])
def test_target_force_error_must_be_positive(workchain, target):
    with pytest.raises(ValueError, match="target_force_error"):
        workchain(trust={"lo": 0.02, "hi": 5.0, "target_force_error": target})
