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
        TrainConfig.from_dict(values)


def test_yaml_style_numbers_are_accepted():
    assert TrainConfig.from_dict({"lr": "1e-3"}).lr == 1e-3


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
