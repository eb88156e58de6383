"""``aiida-mlip-train``: train a committee potential from files, write files. No AiiDA needed.

The config's ``backend`` (``builtin``, the default, or ``mace``) picks the model
(:mod:`aiida_mlip.potentials.backends`); everything below holds for both.

Usage::

    aiida-mlip-train --dataset dataset.h5 --config config.yaml [--init model.safetensors]
                     [--valid valid.h5] [--output-dir .] [--device auto]

Inputs
    ``--dataset``: labelled frames, :meth:`Frames.write_hdf5` format (``.h5``/``.hdf5``) or extended
    XYZ (``.extxyz``/``.xyz``). ``--valid``: optional validation frames (otherwise
    ``valid_fraction`` of the dataset is held out). ``--config``: YAML or JSON mapping of training
    settings. ``--init``: a model file to warm start from (e.g. an earlier ``checkpoint.safetensors``).

Config keys (all optional; units Angstrom, eV), see :class:`aiida_mlip.potentials.train.TrainConfig`:
    backend ("builtin" | "mace"), mace (the MACE architecture block), parent_model (null: a model
    file to fine-tune from when no --init is given, see :mod:`aiida_mlip.potentials.parent_model`), committee_size (4), cutoff (5.0), n_radial (8), l_max (3), species_channels (null: min(elements, 3)),
    hidden (64), repulsion_radius (null), max_epochs (200), min_epochs (10), batch_size (4), lr (5e-3),
    min_lr (5e-5), optimizer ("adamw" | "adam"), weight_decay (0), scheduler ("cosine" | "plateau" |
    "constant"), energy_weight (10), forces_weight (1), stress_weight (1), valid_fraction (0.1),
    patience (50), bootstrap (true), gradient_clip (10), divergence_factor (1000), seed (0),
    dtype ("float32" | "float64"). Unknown keys are an error.

Outputs (in ``--output-dir``)
    ``model.safetensors`` (the committee, best validation epoch; only when training succeeded),
    ``checkpoint.safetensors`` (refreshed after every good epoch, a valid model file usable as
    ``--init`` to restart a run killed by a walltime), ``learning_curve.csv`` and ``metrics.json``
    (``status``: ``"ok"`` | ``"no_improvement"`` | ``"nan_loss"`` | ``"diverged"``, ``epochs_run``,
    ``best_epoch``, final learning rate, seconds per epoch, device, the RMSEs of
    :class:`~aiida_mlip.potentials.train.TrainResult` and, on a warm start, ``new_frames``: the
    force RMSE of the frames the parent had not seen, before and after). The model file's metadata
    records the fingerprints of the frames it was trained on (``training_frames``), which is how a
    later warm start from it tells its new frames. ``no_improvement`` (a warm start whose trained
    weights did not beat the parent's validation loss) still writes ``model.safetensors`` (the
    trained weights) and exits 0.

Devices
    ``--device auto`` (default) trains on CUDA when a GPU is visible and otherwise on the CPU, with a
    warning on stderr; ``--device cuda`` (or ``cuda:N``) without a visible GPU stops at once with exit
    code 5 and ``metrics.json`` ``{"status": "device_unavailable", "message": ...}``: a job sent to a GPU
    partition that landed on a node without one must not silently train for hours on its CPU.

Exit codes
    0 ok; 2 bad config, dataset or initial model, or a backend not installed here (message on
    stderr, naming the extra to install); 3 NaN loss; 4 diverged;
    5 the requested device is not available.
Progress lines (one per epoch) go to stdout, flushed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from aiida_mlip.engine.io import (
    EXIT_OK,
    InputError,
    read_labelled,
    read_mapping,
    report_bad_input,
)

EXIT_NAN_LOSS = 3
EXIT_DIVERGED = 4
EXIT_NO_DEVICE = 5
PROGRAM = "aiida-mlip-train"
_STATUS_EXIT = {
    "ok": EXIT_OK,
    "no_improvement": EXIT_OK,
    "nan_loss": EXIT_NAN_LOSS,
    "diverged": EXIT_DIVERGED,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiida-mlip-train",
        description="Train a committee potential (see the module docstring for the config keys).",
    )
    parser.add_argument("--dataset", required=True, help="labelled frames: .h5 (Frames) or .extxyz/.xyz")
    parser.add_argument("--config", required=True, help="training settings, YAML or JSON")
    parser.add_argument("--init", default=None, help="model file to warm start from")
    parser.add_argument("--valid", default=None, help="validation frames (default: hold out valid_fraction)")
    parser.add_argument("--output-dir", default=".", help="where to write the outputs (default: .)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the executable; returns (and, as a script, exits with) the exit code."""
    arguments = _parser().parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    output = Path(arguments.output_dir)
    device = check_device(arguments.device, output)
    if device is None:
        return EXIT_NO_DEVICE
    try:
        from aiida_mlip.potentials.train import TrainConfig

        try:
            config = TrainConfig.from_mapping(read_mapping(arguments.config, "config"))
        except InputError:
            raise
        except ValueError as exception:
            raise InputError(f"bad training configuration: {exception}") from exception
        train = read_labelled(arguments.dataset, minimum=2)
        valid = read_labelled(arguments.valid) if arguments.valid else None
        if arguments.init is not None and not Path(arguments.init).is_file():
            raise InputError(f"the initial model {arguments.init} does not exist")
        output.mkdir(parents=True, exist_ok=True)
    except InputError as exception:
        return report_bad_input(PROGRAM, exception)

    from aiida_mlip.potentials.backends import BackendUnavailable, get_backend
    from aiida_mlip.potentials.model_file import ModelFileError

    backend = get_backend(config.backend)
    started = time.perf_counter()
    try:
        backend.check_available()
        result = backend.train(
            train,
            config,
            valid=valid,
            init=arguments.init,
            device=device,
            log=log,
            checkpoint_path=output / "checkpoint.safetensors",
            curve_path=output / "learning_curve.csv",
        )
    except (ValueError, ModelFileError, RuntimeError, BackendUnavailable) as exception:
        return report_bad_input(PROGRAM, exception)
    metrics = dict(result.metrics)
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["config"] = config.to_dict()
    if result.status in ("ok", "no_improvement"):
        backend.save(
            result.model,
            output / "model.safetensors",
            {"training_metrics": _summary(metrics), "training_frames": result.training_frames},
        )
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    log(f"status: {result.status}; outputs in {output.resolve()}")
    return _STATUS_EXIT[result.status]


def check_device(requested: str, output: Path) -> str | None:
    """Return the torch device to train on, or ``None`` (reason on stderr and in metrics.json)."""
    import torch

    from aiida_mlip.potentials.committee import resolve_device

    try:
        device = resolve_device(requested)
    except RuntimeError as exception:
        message = str(exception)
        print(f"aiida-mlip-train: error: {message}", file=sys.stderr, flush=True)
        output.mkdir(parents=True, exist_ok=True)
        (output / "metrics.json").write_text(
            json.dumps({"status": "device_unavailable", "device": requested, "message": message}, indent=2)
        )
        return None
    if requested == "auto" and device.type == "cpu":
        print(
            f"aiida-mlip-train: warning: device 'auto': no CUDA device is visible "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); training on the CPU",
            file=sys.stderr,
            flush=True,
        )
    elif device.type == "cuda":
        print(f"aiida-mlip-train: training on {torch.cuda.get_device_name(device)}", flush=True)
    return str(device)


def _summary(metrics: dict) -> dict:
    """The committee-mean validation (or training) RMSEs, for the model file's metadata."""
    split = metrics.get("valid") or metrics.get("train") or {}
    return {"status": metrics["status"], "epochs": metrics["epochs_run"], **split.get("mean", {})}


if __name__ == "__main__":
    sys.exit(main())
