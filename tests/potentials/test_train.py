"""Training: configuration checks, accuracy on EMT aluminium, committee spread, warm start, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_mlip.potentials.train import TrainConfig, evaluate_frames, train_committee, write_learning_curve


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": -1e-3}, "lr"),
        ({"committee_size": 0}, "committee_size"),
        ({"learning_rate": 1e-3}, "unknown"),
        ({"scheduler": "linear"}, "scheduler"),
        ({"valid_fraction": 1.5}, "valid_fraction"),
        ({"lr": "fast"}, "lr"),
    ],
)
def test_bad_configurations_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_mapping(values)


def test_yaml_style_numbers_are_accepted():
    assert TrainConfig.from_mapping({"lr": "1e-3"}).lr == 1e-3


def test_committee_reaches_the_accuracy_target(trained, al_test, tmp_path):
    """Committee-mean force RMSE on a separate EMT test set below 40 meV/Angstrom."""
    metrics = evaluate_frames(trained.model, al_test)
    print("test-set RMSE (committee mean):", metrics["mean"])
    assert trained.status == "ok"
    assert metrics["mean"]["forces"] < 0.040
    assert metrics["mean"]["energy_per_atom"] < 0.005
    assert metrics["mean"]["stress"] < 0.002
    members = [metrics[f"member_{k}"]["forces"] for k in range(4)]
    assert metrics["mean"]["forces"] <= max(members)
    for split in ("train", "valid"):
        assert set(trained.metrics[split]) == {"mean", "member_0", "member_1", "member_2", "member_3"}
    assert trained.metrics["device"] == "cpu" and trained.metrics["epochs"] == len(trained.history)
    write_learning_curve(trained.history, tmp_path / "curve.csv")
    assert (tmp_path / "curve.csv").read_text().startswith("epoch,lr,train_loss,valid_loss")


def test_spread_is_larger_away_from_the_training_data(cold_frames):
    """Trained on 300 K frames, the committee disagrees more on 1500 K frames than on new 300 K frames."""
    result = train_committee(cold_frames["train"], {"max_epochs": 8, "hidden": 32, "seed": 3}, log=None)
    model = result.model

    def mean_force_spread(frames):
        batch_deviation = []
        for atoms in frames.to_atoms():
            with torch.no_grad():
                output = model(model.batch(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc))
            forces = output["forces"].double().numpy()
            batch_deviation.append(np.sqrt(((forces - forces.mean(0)) ** 2).sum(-1).mean(0)).mean())
        return float(np.mean(batch_deviation))

    like, unlike = mean_force_spread(cold_frames["like"]), mean_force_spread(cold_frames["unlike"])
    print(
        f"mean force deviation: 300 K {1e3 * like:.1f} meV/A, 1500 K {1e3 * unlike:.1f} meV/A, ratio {unlike / like:.2f}"
    )
    assert unlike > 1.5 * like


def test_training_is_deterministic_and_warm_starts(al_test):
    frames = al_test.subset(np.arange(0, 60, 5))
    config = {"max_epochs": 2, "hidden": 8, "committee_size": 2, "seed": 11}
    first = train_committee(frames, config, log=None)
    second = train_committee(frames, config, log=None)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name
    lines = []
    warm = train_committee(
        frames, {**config, "max_epochs": 1, "lr": 1e-4}, init=first.model, log=lines.append
    )
    assert any("warm start" in line for line in lines)
    # the warm start begins where the first run ended, not from scratch
    assert warm.history[0]["valid_loss"] < 2 * first.history[-1]["valid_loss"]
    with pytest.raises(ValueError, match="knows"):
        from aiida_mlip.potentials.frames import Frames

        copper = Frames.from_atoms([atoms for atoms in frames.to_atoms()])
        copper.numbers[:] = 29
        train_committee(copper, config, init=first.model, log=None)


def test_cuda_request_without_a_gpu_is_a_clear_error(al_test):
    if torch.cuda.is_available():
        assert (
            train_committee(al_test.subset([0, 1, 2]), {"max_epochs": 1}, device="cuda", log=None).status
            == "ok"
        )
    else:
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            train_committee(al_test.subset([0, 1, 2]), {"max_epochs": 1}, device="cuda", log=None)


def test_warm_start_never_drops_the_new_labels(cold_frames):
    """The planted failure: a parent that fits the old frames, validated on old frames only.

    Before the fix the parent's weights came back with status "ok" and best epoch 0 whenever no
    epoch beat the parent on that split. Now training runs at least ``min_epochs``, the weights are
    the best *trained* epoch's, and the new frames' force error drops.
    """
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import frame_fingerprints
    from aiida_mlip.potentials.training_data import frame_groups, stratified_split
    from tests.potentials.emt_data import md_frames

    old = cold_frames["train"]
    old.source_uuid[:] = "label-job-1"
    new = Frames.from_atoms(md_frames(1200, 8, seed=21))
    new.source_uuid[:] = "label-job-2"
    config = {"committee_size": 2, "hidden": 16, "n_radial": 5, "l_max": 2, "seed": 5, "batch_size": 8}
    parent = train_committee(old, {**config, "max_epochs": 12, "lr": 1e-2}, log=None)
    dataset = Frames.concatenate([old, new])

    warm = train_committee(
        dataset,
        {**config, "max_epochs": 5, "min_epochs": 5, "lr": 2e-3, "patience": 1},
        valid=old.subset(np.arange(8)),  # old frames only: the parent already fits them
        init=parent.model,
        parent_frames=frame_fingerprints(old),
        log=None,
    )
    metrics = warm.metrics
    assert metrics["epochs_run"] == 5 == len(warm.history)  # patience 1 did not stop it before min_epochs
    assert metrics["best_epoch"] >= 1  # never the untouched parent
    assert warm.status in ("ok", "no_improvement") and metrics["status"] == warm.status
    new_errors = metrics["new_frames"]
    assert new_errors["n"] == 8 and new_errors["identified_by"] == "parent_frames given by the caller"
    print(
        "new-frame force RMSE before/after (eV/A):", new_errors["forces_before"], new_errors["forces_after"]
    )
    assert new_errors["forces_after"] < 0.8 * new_errors["forces_before"]
    changed = any(
        not torch.equal(value, parent.model.state_dict()[name])
        for name, value in warm.model.state_dict().items()
    )
    assert changed

    # the committee object carries its training frames: a warm start from it knows the new ones
    assert warm.model.training_frames == warm.training_frames
    assert len(warm.training_frames) == len(dataset) + 8  # trained and validated on
    again = train_committee(
        Frames.concatenate([dataset, new.subset([0])]),
        {**config, "max_epochs": 1, "min_epochs": 1},
        init=parent.model,
        log=None,
    )
    assert again.metrics["new_frames"]["n"] == 9  # the parent object knew only the old frames
    assert (
        again.metrics["new_frames"]["identified_by"]
        == "training_frames carried by the parent committee object"
    )

    # without a given validation set the split is stratified: the new frames are in it
    groups = frame_groups(dataset, np.arange(len(dataset)) >= len(old))
    train, valid = stratified_split(dataset, 0.1, np.random.default_rng(0), groups)
    assert set(valid.source_uuid) == {"label-job-1", "label-job-2"}
    assert len(train) + len(valid) == len(dataset)
    assert (valid.source_uuid == "label-job-2").sum() == 1 and (valid.source_uuid == "label-job-1").sum() == 4
