"""Training time per epoch: 1,000 EMT-labelled 32-atom aluminium structures, committee of 4.

Measures the wall time of training epochs (batch size 4 frames, energies + forces + stress in the
loss) on the CPU with 2 threads, and on CUDA when a GPU is visible; says so when it is not.
Prints a markdown table. Run: ``.venv/bin/python benchmarks/bench_training.py``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
torch.set_num_threads(2)

EPOCHS = 2


def dataset():
    from aiida_mlip.potentials.frames import Frames
    from tests.potentials.emt_data import md_frames

    images = []
    for index, temperature in enumerate((300, 600, 900, 1200)):
        images += md_frames(temperature, 250, seed=50 + index, interval=2, equilibrate=10)
    return Frames.from_atoms(images)


def main():
    from aiida_mlip.potentials.train import train_committee

    started = time.perf_counter()
    frames = dataset()
    print(
        f"{len(frames)} frames, {frames.n_atoms} atoms labelled by EMT in {time.perf_counter() - started:.0f} s; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    else:
        print("CUDA is not available on this machine: the GPU row is not measured, training runs on the CPU.")
    rows = []
    for device in devices:
        config = {"max_epochs": EPOCHS, "committee_size": 4, "batch_size": 4, "valid_fraction": 0.1}
        result = train_committee(frames, config, device=device, log=print)
        times = [row["seconds"] for row in result.history]
        rows.append((device, min(times), sum(times) / len(times), result.metrics["valid"]["mean"]["forces"]))
    print()
    print(
        "| device | frames (train) | best s/epoch | mean s/epoch | valid force RMSE after 2 epochs (meV/A) |"
    )
    print("|---|---:|---:|---:|---:|")
    for device, best, mean, force in rows:
        print(f"| {device} | {int(0.9 * len(frames))} | {best:.1f} | {mean:.1f} | {1e3 * force:.0f} |")
    if not torch.cuda.is_available():
        print("| cuda | - | CUDA not available | - | - |")


if __name__ == "__main__":
    main()
