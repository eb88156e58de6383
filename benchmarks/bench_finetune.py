"""Fine-tuning from a parent model against training from scratch: epochs to a held-out force RMSE.

The parent stands in for a foundation model: a committee (built-in, K = 4) or one MACE model saved as
mace-torch saves its models (``torch.save`` of the ``ScaleShiftMACE``), trained on EMT aluminium bulk
(32-atom cells, MD at 300-900 K and strained cells). The new task is a regime the parent never saw:
vacancy cells (31 atoms) at 1200 K, ``--train`` frames to train on and 30 held-out frames of other
trajectories. Both runs train a committee of K = 4 with the same settings (optimiser, cosine schedule,
learning rate, batch size, bootstrap resamples, ``--epochs`` epochs, no early stop); one starts from
``training.parent_model``, the other from random weights. After every epoch the committee mean's force
RMSE on the held-out frames is measured (through the training's checkpoint hook). The target is
``--target`` (meV/Angstrom) or, by default, 1.1 times the best the scratch run reached.

Prints a markdown table (the README's, section "Fine-tuning from a parent model"). Run:
``python benchmarks/bench_finetune.py [--backends builtin,mace] [--epochs 40] [--train 16]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

COMMON = {"cutoff": 5.0, "batch_size": 4, "lr": 5e-3, "patience": 1000, "seed": 0}
ARCHITECTURES = {
    "builtin": {"n_radial": 6, "l_max": 3, "hidden": 32},  # the `balanced` protocol
    "mace": {"mace": {"channels": 16, "max_L": 0, "correlation": 2, "interactions": 2}},
}


def parent_frames(n_per_set: int):
    """The parent's data: bulk Al at 300, 600 and 900 K and strained cells at 600 K."""
    from aiida_mlip.potentials.frames import Frames
    from tests.potentials.emt_data import md_frames

    images = []
    for index, temperature in enumerate((300, 600, 900)):
        images += md_frames(temperature, n_per_set, seed=500 + index)
    images += md_frames(600, n_per_set, seed=510, strain=0.04)
    return Frames.from_atoms(images)


def task_frames(n_train: int):
    """The new task: vacancy cells at 1200 K; training frames and 30 held-out ones."""
    from aiida_mlip.potentials.frames import Frames
    from tests.potentials.emt_data import md_frames

    train = Frames.from_atoms(md_frames(1200, n_train, seed=600, vacancy=True))
    test = Frames.from_atoms(
        md_frames(1200, 15, seed=601, vacancy=True) + md_frames(1200, 15, seed=602, vacancy=True)
    )
    return train, test


def curve(backend, train, test, config):
    """Held-out force RMSE (eV/Angstrom) after every epoch (entry 0: the starting weights) and seconds."""
    from aiida_mlip.potentials.evaluation import evaluate_frames
    from aiida_mlip.potentials.train import train_committee

    kind = backend.model_kind()
    rmse = []

    def measure(model, path, metadata):  # the checkpoint hook: called with the weights of every epoch
        rmse.append(evaluate_frames(model, test, frame_set=kind.frame_set)["mean"]["forces"])
        return ""

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        train_committee(
            train,
            config,
            device="cpu",
            log=None,
            checkpoint_path=Path(folder) / "checkpoint.safetensors",
            kind=dataclasses.replace(kind, save=measure),
        )
    return rmse, time.perf_counter() - started


def first_epoch_below(rmse: list[float], target: float) -> int | None:
    return next((epoch for epoch, value in enumerate(rmse) if value <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="builtin")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--parent-epochs", type=int, default=30)
    parser.add_argument("--parent-frames", type=int, default=20, help="per parent data set (4 sets)")
    parser.add_argument("--train", type=int, default=16, help="training frames of the new task")
    parser.add_argument("--target", type=float, default=None, help="meV/Angstrom")
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)

    from aiida_mlip.potentials.backends import get_backend
    from aiida_mlip.potentials.train import TrainConfig

    started = time.perf_counter()
    parents, (train, test) = parent_frames(arguments.parent_frames), task_frames(arguments.train)
    print(
        f"parent data {len(parents)} frames, task {len(train)} training + {len(test)} held-out frames, "
        f"labelled by EMT in {time.perf_counter() - started:.0f} s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    for name in arguments.backends.split(","):
        backend = get_backend(name)
        base = {**COMMON, **ARCHITECTURES[name], "backend": name}
        began = time.perf_counter()
        parent_size = 4 if name == "builtin" else 1
        result = backend.train(
            parents,
            TrainConfig.from_mapping(
                {**base, "committee_size": parent_size, "max_epochs": arguments.parent_epochs}
            ),
            device="cpu",
            log=None,
        )
        if name == "mace":  # as mace-torch saves a model: the pickled ScaleShiftMACE module
            path = folder / "parent.model"
            torch.save(result.model.members[0], path)
        else:
            path = folder / "parent.safetensors"
            backend.save(result.model, path, {"training_frames": result.training_frames})
        print(f"[{name}] parent trained in {time.perf_counter() - began:.0f} s -> {path.name}", flush=True)
        task = {**base, "committee_size": 4, "max_epochs": arguments.epochs, "min_epochs": arguments.epochs}
        tuned, tuned_seconds = curve(
            backend, train, test, TrainConfig.from_mapping({**task, "parent_model": str(path)})
        )
        scratch, scratch_seconds = curve(backend, train, test, TrainConfig.from_mapping(task))
        target = arguments.target / 1000 if arguments.target else 1.1 * min(scratch[1:])
        for label, rmse, seconds in (
            ("fine-tuned", tuned, tuned_seconds),
            ("scratch", scratch, scratch_seconds),
        ):
            print(f"[{name}] {label}: " + " ".join(f"{1000 * value:.0f}" for value in rmse), flush=True)
            rows.append((name, label, target, first_epoch_below(rmse, target), rmse, seconds))
    print()
    print(
        "| backend | start | target force RMSE (meV/A) | epochs to reach it | RMSE at epoch 0 (meV/A) "
        "| RMSE after 5 epochs | best RMSE (meV/A) | training time (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, label, target, epochs, rmse, seconds in rows:
        reached = "not reached" if epochs is None else str(epochs)
        print(
            f"| {name} | {label} | {1000 * target:.1f} | {reached} | {1000 * rmse[0]:.1f} "
            f"| {1000 * rmse[min(5, len(rmse) - 1)]:.1f} | {1000 * min(rmse[1:]):.1f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
