"""The quick-start demo that ``make demo`` runs: active learning of aluminium with the EMT oracle.

On the embedded default profile (SQLite + ZeroMQ, made by ``verdi presto`` if missing), it grows a
committee potential for fcc aluminium from one cubic cell, with ASE's EMT calculator as the
"DFT" labeller, until converged. Then it labels a separate held-out set (EMT MD at 300-900 K,
generated here independently of the training pool) and prints the final errors on it, the
iteration table, and where the plot and the exported potential are.

Each iteration calibrates the committee's force deviation on the frames it labels (which that
committee never saw); at the end the latest calibration is checked on the held-out set: the share of
frames whose calibrated max force error is within a factor of 2 of the observed one, and the rank
correlation of deviation and error.

Run: ``python -m aiida_mlip.demo [--profile NAME] [--output demo-output] [--target-force-error 0.3]``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

#: The demo's settings over the ``fast`` protocol (units: K, fs, eV/Angstrom); the trust window and
#: break threshold are the defaults (:class:`~aiida_mlip.selection.trust.TrustWindow`).
DEMO_OVERRIDES = {
    "initial": {"copies_per_structure": 24, "rattle": 0.15, "strain": 0.04},
    "exploration": {
        "md": {"steps": 400, "timestep": 2.0, "check_interval": 10, "walkers": 1},
        "schedule": [
            {"temperatures": [300, 600]},
            {"temperatures": [600, 900]},
            {"temperatures": [[300, 900]]},
        ],
    },
    "selection": {"budget": 10},
    "convergence": {"accurate_fraction": 0.9, "patience": 1, "max_iterations": 8},
    "training": {
        "committee_size": 4,
        "n_radial": 6,
        "l_max": 2,
        "hidden": 32,
        "max_epochs": 60,
        "patience": 20,
        "cutoff": 5.0,
        "batch_size": 4,
        "lr": 0.005,
        "seed": 0,
    },
}


def held_out_set(count: int = 30, seed: int = 1234):
    """EMT-labelled frames of 32-atom Al from Langevin MD at 300, 600 and 900 K (not seen in training)."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    from aiida_mlip.exploration.md import thermalize_momenta

    rng = np.random.default_rng(seed)
    images = []
    per_temperature = count // 3
    for temperature in (300, 600, 900):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
        atoms.calc = EMT()
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        dynamics = Langevin(
            atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False
        )
        dynamics.run(200)
        for _ in range(per_temperature):
            dynamics.run(20)
            frame = atoms.copy()
            frame.calc = EMT()
            frame.get_forces()
            images.append(frame)
    return images


def test_errors(potential, images) -> dict:
    """Energy (eV/atom) and force (eV/Angstrom) RMSE of the committee mean on ``images``."""
    calculator = potential.get_calculator(device="cpu")
    energy_errors, force_errors = [], []
    for atoms in images:
        reference_energy = atoms.get_potential_energy()
        reference_forces = atoms.get_forces()
        trial = atoms.copy()
        trial.calc = calculator
        energy_errors.append((trial.get_potential_energy() - reference_energy) / len(atoms))
        force_errors.append((trial.get_forces() - reference_forces).ravel())
    return {
        "energy_rmse": float(np.sqrt(np.mean(np.square(energy_errors)))),
        "force_rmse": float(np.sqrt(np.mean(np.square(np.concatenate(force_errors))))),
    }


def calibration_check(potential, images, calibration: dict | None = None) -> dict:
    """How well calibrated committee deviations predict the final committee's per-frame max force error.

    Two calibrations are judged on ``images``, frames the committee was never trained on:

    * ``recorded``: the given one (the run's latest, fitted on the labels of every iteration so far,
      each predicted by the committee before it was labelled, i.e. on *selected* frames);
    * ``two_fold``: one fitted on each half of ``images`` (even / odd frames) predicting the other
      half, the way the work chain fits one on frames the committee never saw.

    Parameters
    ----------
    potential
        The final committee (``PotentialData``).
    images
        Labelled frames the committee was not trained on (reference forces in eV/Angstrom); at
        least 20, so that each half has the 10 pairs a fit needs.
    calibration
        A ``Calibration.to_dict()`` (the ``fit`` of a ``calibration`` output of the run), or None.

    Returns
    -------
    dict
        ``n_frames``; ``spearman``: rank correlation of the committee's max force deviation with the
        observed max force error; per judged calibration (``recorded``, ``two_fold``) the fraction of
        frames whose calibrated prediction is within a factor of 2 of the observed error
        (``within_factor_2``) and the median of observed over predicted (``median_ratio``).
    """
    from scipy.stats import spearmanr

    from aiida_mlip.learning.calibration import (
        Calibration,
        CalibrationPairs,
        calibration_pairs,
        fit_calibration,
    )

    pairs = calibration_pairs(potential.get_calculator(device="cpu", spread_every=1), images)

    def subset(indices):
        return CalibrationPairs(
            pairs.predicted[indices], pairs.observed[indices], tuple(pairs.symbols[i] for i in indices)
        )

    def judged(ratio):
        return {
            "within_factor_2": float(np.mean((ratio >= 0.5) & (ratio <= 2.0))),
            "median_ratio": float(np.median(ratio)),
        }

    def ratios(fit, part):
        predicted = [
            fit.predict(value, symbol) for value, symbol in zip(part.predicted, part.symbols, strict=True)
        ]
        return part.observed / np.asarray(predicted)

    result = {
        "n_frames": len(pairs),
        "spearman": float(spearmanr(pairs.predicted, pairs.observed).statistic),
    }
    if calibration is not None:
        result["recorded"] = judged(ratios(Calibration.from_dict(calibration), pairs))
    halves = [np.arange(0, len(pairs), 2), np.arange(1, len(pairs), 2)]
    result["two_fold"] = judged(
        np.concatenate(
            [
                ratios(fit_calibration(subset(fit_on)), subset(test_on))
                for fit_on, test_on in (halves, halves[::-1])
            ]
        )
    )
    return result


def latest_calibration(results) -> tuple[str, dict] | None:
    """The newest calibration of a run that is not a fallback: (iteration key, fit), or None."""
    calibrations = results.get("calibration", {})
    for key in sorted(calibrations, key=lambda name: int(name.rsplit("_", 1)[1]), reverse=True):
        fit = calibrations[key]["fit"]
        if not fit["fallback"]:
            return key, fit
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="aiida-mlip quick-start demo: active learning of Al with EMT"
    )
    parser.add_argument("--profile", default=None, help="AiiDA profile (default: the default profile)")
    parser.add_argument(
        "--output", default="demo-output", type=pathlib.Path, help="folder for the plot and model"
    )
    parser.add_argument("--protocol", default="fast", choices=["fast", "balanced", "precise"])
    parser.add_argument(
        "--target-force-error",
        type=float,
        default=None,
        help="eV/Angstrom: derive each iteration's trust window from the latest calibration for this "
        "per-frame max force error (default: the fixed window)",
    )
    args = parser.parse_args(argv)
    overrides = {key: dict(value) for key, value in DEMO_OVERRIDES.items()}
    if args.target_force_error is not None:
        overrides.setdefault("trust", {})["target_force_error"] = args.target_force_error

    from aiida import load_profile

    profile = load_profile(args.profile)
    from aiida.common.log import configure_logging
    from ase.build import bulk

    from aiida_mlip.codes import get_or_create_localhost, register_engine_codes
    from aiida_mlip.foreground import run_get_node
    from aiida_mlip.history import format_history
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    configure_logging(with_orm=True)  # print the work chains' reports as they happen
    print(
        f"profile {profile.name}: storage {profile.storage_backend}, broker {profile.process_control_backend}"
    )
    start = time.perf_counter()
    # the engine executables as codes on a computer of its own that polls its jobs every half second
    computer = get_or_create_localhost("aiida-mlip-localhost")
    codes = register_engine_codes(computer, log=lambda *_: None)
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        codes=codes,
        protocol=args.protocol,
        overrides=overrides,
    )
    results, node = run_get_node(builder)
    elapsed = time.perf_counter() - start

    history = results["history"]["iterations"]
    print("\n" + format_history(history))
    args.output.mkdir(parents=True, exist_ok=True)
    if "history_plot" in results:
        (args.output / "history.png").write_bytes(results["history_plot"].get_content(mode="rb"))
    potential = results["potential"]
    potential.export(args.output / "aluminium.safetensors", overwrite=True)

    held_out = held_out_set()
    errors = test_errors(potential, held_out)
    status = "converged" if node.is_finished_ok else f"NOT converged ({node.exit_message})"
    print(
        f"\nActiveLearningWorkChain<{node.pk}> {status} after {len(history)} iteration(s) in {elapsed:.0f} s; "
        f"{results['dataset'].n_frames} labelled frames in dataset <{results['dataset'].pk}>"
    )
    print(
        f"held-out EMT test set (30 frames, MD at 300/600/900 K): energy RMSE {1000 * errors['energy_rmse']:.2f} "
        f"meV/atom, force RMSE {1000 * errors['force_rmse']:.1f} meV/A"
    )
    for record in history:
        calibration = record.get("calibration")
        text = (
            "no new labels to calibrate on"
            if not calibration
            else f"calibration factor {calibration['factor']:.2f}, exponent {calibration['exponent']:.2f} "
            f"on {calibration['n_pairs']} pairs ({calibration['n_new_pairs']} new, "
            f"{calibration.get('n_validation_pairs', 0)} validation)"
            + (" (fallback)" if calibration["fallback"] else "")
            + f", rank correlation {calibration['spearman']:.2f}"
        )
        trust = record.get("trust", {})
        print(
            f"iteration {record['iteration']}: trust window {trust.get('lo', float('nan')):.3f}-"
            f"{trust.get('hi', float('nan')):.3f} eV/A ({trust.get('source', '?')}); {text}"
        )
    latest = latest_calibration(results)
    check = calibration_check(potential, held_out, latest[1] if latest else None)
    recorded = (
        f"with the run's calibration of {latest[0]} (factor {latest[1]['factor']:.2f}, exponent "
        f"{latest[1]['exponent']:.2f}, {latest[1]['n_pairs']} pairs): calibrated max force error "
        f"within a factor of 2 of the observed one for {100 * check['recorded']['within_factor_2']:.0f}% "
        f"of frames (median observed/predicted {check['recorded']['median_ratio']:.2f}); "
        if latest
        else "no calibration of the run had enough pairs; "
    )
    print(
        f"held-out calibration check ({check['n_frames']} frames): rank correlation of deviation and max "
        f"force error {check['spearman']:.2f}; {recorded}"
        f"{100 * check['two_fold']['within_factor_2']:.0f}% with a calibration fitted on the other half "
        f"of the held-out frames (two-fold)"
    )
    print(
        f"plot: {args.output / 'history.png'}; potential: {args.output / 'aluminium.safetensors'} "
        f"(aiida_mlip.potentials.load_calculator loads it without AiiDA)"
    )
    print(f"provenance: aiida-mlip lineage {potential.pk}; aiida-mlip status {node.pk}")
    return 0 if node.is_finished_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
