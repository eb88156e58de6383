"""The two model backends on the same data: force RMSE on a separate test set and training time.

Training set: the 200 EMT aluminium frames of the potential tests (32/31-atom cells, MD at 300-1200 K,
strained and vacancy cells; ``tests/potentials/emt_data.training_set``), 10 % held out for early
stopping. Test set: 60 frames of other trajectories (``test_set``). Both committees have K = 4
members, cutoff 5 Angstrom, the same loss (energy, forces, stress), optimiser, learning-rate schedule,
batch size and number of epochs; the built-in committee has the ``balanced`` protocol's architecture,
MACE the small default of ``training.mace`` (16 invariant channels, 2 interactions, correlation 2).

Prints a markdown table (the README's, section "Model backends"). Needs mace-torch
(``pip install 'aiida-mlip[mace]'``). Run: ``python benchmarks/bench_backends.py [--epochs 30]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

COMMON = {
    "committee_size": 4,
    "cutoff": 5.0,
    "batch_size": 4,
    "lr": 5e-3,
    "valid_fraction": 0.1,
    "patience": 1000,
    "seed": 0,
}
ARCHITECTURES = {
    "builtin": {"n_radial": 6, "l_max": 3, "hidden": 32},  # the `balanced` protocol
    "mace": {"mace": {"channels": 16, "max_L": 0, "correlation": 2, "interactions": 2}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="builtin,mace")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)

    from aiida_mlip.potentials.backends import get_backend
    from aiida_mlip.potentials.evaluation import evaluate_frames
    from aiida_mlip.potentials.train import TrainConfig
    from tests.potentials.emt_data import test_set, training_set

    started = time.perf_counter()
    train, test = training_set(seed=0), test_set(seed=1000)
    print(
        f"{len(train)} training frames, {len(test)} test frames labelled by EMT in "
        f"{time.perf_counter() - started:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    for name in arguments.backends.split(","):
        backend = get_backend(name)
        config = TrainConfig.from_mapping(
            {**COMMON, **ARCHITECTURES[name], "backend": name, "max_epochs": arguments.epochs}
        )
        started = time.perf_counter()
        result = backend.train(
            train, config, device="cpu", log=lambda line, name=name: print(f"[{name}] {line}", flush=True)
        )
        seconds = time.perf_counter() - started
        errors = evaluate_frames(result.model, test, frame_set=backend.model_kind().frame_set)
        members = [errors[f"member_{k}"]["forces"] for k in range(config.committee_size)]
        parameters = sum(p.numel() for p in result.model.parameters())
        rows.append(
            (
                name,
                backend.version(),
                parameters,
                result.metrics["epochs_run"],
                seconds,
                seconds / result.metrics["epochs_run"],
                1000 * errors["mean"]["forces"],
                1000 * sum(members) / len(members),
                1000 * errors["mean"]["energy_per_atom"],
            )
        )
    print()
    print(
        "| backend | version | parameters (K = 4) | epochs | training time (s) | s/epoch "
        "| test force RMSE, committee mean (meV/A) | mean member force RMSE (meV/A) | test energy RMSE (meV/atom) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, version, parameters, epochs, seconds, per_epoch, mean, member, energy in rows:
        print(
            f"| {name} | {version} | {parameters:,} | {epochs} | {seconds:.0f} | {per_epoch:.1f} "
            f"| {mean:.1f} | {member:.1f} | {energy:.2f} |"
        )


if __name__ == "__main__":
    main()
