"""The active-learning loop without AiiDA: explore, select, label, calibrate, retrain, until converged.

:func:`run_active_learning` runs the iteration of ``ActiveLearningWorkChain`` in one process, on the
same science-layer glue the engine executables and the work chain use, so that a benchmark measures
what the platform does:

1. initial structures (:func:`aiida_mlip.learning.initial.initial_structures`), labelled and
   trained on when no dataset is given;
2. exploration: committee MD per schedule entry and temperature
   (:func:`aiida_mlip.exploration.md.explore`); its pool is every non-exploded frame at or above
   the trust window's ``lo``;
3. selection (:func:`aiida_mlip.selection.batch.select_batch`) within the budget, with the training
   set as the active set and as the reference for near-duplicates;
4. labelling with an ASE calculator (:func:`aiida_mlip.engine.label.label_frames`);
5. calibration of the committee's deviation against the new labels it never saw
   (:mod:`aiida_mlip.learning.calibration`), which sets the next window when the ``trust`` block
   has a ``target_force_error``;
6. retraining (:func:`aiida_mlip.potentials.train.train_committee`), warm-started from the last
   committee, from scratch once when the warm start reports ``no_improvement`` (the first committee
   is fine-tuned from ``training.parent_model`` when one is given, as in the work chain);
7. with ``convergence.properties``, the properties of each new committee (every member, through
   :func:`aiida_mlip.properties.validation.validate_property`, as the work chain's
   ``compute_property``), recorded by :func:`aiida_mlip.history.property_fields`;
8. the convergence decision (:func:`aiida_mlip.learning.convergence.decide`).

This is the concurrent-learning scheme of DP-GEN (Zhang et al., Comput. Phys. Commun. 253, 107206
(2020)) with the D-optimal selection of Podryabinkin & Shapeev (Comput. Mater. Sci. 140, 171 (2017)).

Units: Angstrom, eV, eV/Angstrom, K, fs, seconds.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from aiida_mlip.engine.label import label_frames
from aiida_mlip.exploration.generator_settings import GenerateSettings
from aiida_mlip.exploration.generators import generate
from aiida_mlip.exploration.md import explore
from aiida_mlip.exploration.parameters import ExploreParameters
from aiida_mlip.history import close_record, exploration_fields, new_record, property_fields
from aiida_mlip.learning.calibration import (
    CalibrationPairs,
    calibration_pairs,
    fit_with_validation,
    validation_pairs,
)
from aiida_mlip.learning.convergence import ConvergenceSettings, decide
from aiida_mlip.learning.initial import InitialSettings, initial_structures
from aiida_mlip.learning.property_convergence import (
    PropertyConvergenceSettings,
    probes_due,
    property_probes,
)
from aiida_mlip.potentials.backends import get_backend
from aiida_mlip.potentials.calculator import CommitteeCalculator
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.train import TrainConfig, evaluate_frames, train_committee
from aiida_mlip.selection.batch import select_batch
from aiida_mlip.selection.settings import SelectionSettings
from aiida_mlip.selection.trust import CLASS_NAMES, TrustWindow
from aiida_mlip.settings import SettingsError, suggest

__all__ = ("LoopSettings", "run_active_learning")

_BLOCKS = (
    "initial",
    "exploration",
    "trust",
    "selection",
    "convergence",
    "training",
    "warm_start",
    "warm_start_parameters",
)


@dataclass
class LoopSettings:
    """The blocks of an active-learning run, each read through its own settings model.

    Built by :meth:`from_mapping` from the same mapping as the work chain's protocol inputs:
    ``initial``, ``exploration`` (``md`` and ``schedule``, a list of entries with ``temperatures``
    in K, iteration ``i`` using entry ``min(i, len - 1)``), ``trust`` (eV/Angstrom), ``selection``,
    ``convergence``, ``training``, ``warm_start`` and ``warm_start_parameters`` (training keys that
    replace ``training``'s when continuing from the last committee); ``exploration.generate``
    (:class:`~aiida_mlip.exploration.generator_settings.GenerateSettings`) adds generated start
    structures at chosen iterations, as the work chain does.
    """

    initial: InitialSettings = field(default_factory=InitialSettings)
    md: dict[str, Any] = field(default_factory=dict)
    schedule: list[dict[str, Any]] = field(default_factory=lambda: [{"temperatures": [300.0]}])
    trust: TrustWindow = field(default_factory=TrustWindow)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    convergence: ConvergenceSettings = field(default_factory=ConvergenceSettings)
    training: dict[str, Any] = field(default_factory=dict)
    warm_start: bool = True
    warm_start_parameters: dict[str, Any] = field(default_factory=dict)
    generate: GenerateSettings | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> LoopSettings:
        """Read and check every block; unknown keys raise :class:`~aiida_mlip.settings.SettingsError`."""
        values = dict(values or {})
        for key in values:
            if key not in _BLOCKS:
                raise SettingsError(f"unknown key `{key}`{suggest(key, _BLOCKS)}")
        exploration = dict(values.get("exploration") or {})
        unknown = set(exploration) - {"md", "schedule", "watch_gamma", "generate"}
        if unknown:
            key = sorted(unknown)[0]
            raise SettingsError(
                f"unknown key `exploration.{key}`{suggest(key, ['md', 'schedule', 'generate'])}"
            )
        if exploration.get("watch_gamma"):
            raise SettingsError(
                "`exploration.watch_gamma`: the AiiDA-free loop watches the committee deviation only"
            )
        schedule = [dict(entry) for entry in exploration.get("schedule") or [{"temperatures": [300.0]}]]
        for number, entry in enumerate(schedule):
            if not entry.get("temperatures"):
                raise SettingsError(f"exploration schedule entry {number} has no temperatures")
        training = dict(values.get("training") or {})
        warm_start_parameters = dict(values.get("warm_start_parameters") or {})
        TrainConfig.from_mapping(training, where="training")
        TrainConfig.from_mapping({**training, **warm_start_parameters}, where="warm_start_parameters")
        settings = cls(
            initial=InitialSettings.from_mapping(values.get("initial")),
            md=dict(exploration.get("md") or {}),
            schedule=schedule,
            trust=TrustWindow.from_mapping(values.get("trust")),
            selection=SelectionSettings.from_mapping(values.get("selection")),
            convergence=ConvergenceSettings.from_mapping(values.get("convergence")),
            training=training,
            warm_start=bool(values.get("warm_start", True)),
            warm_start_parameters=warm_start_parameters,
        )
        if exploration.get("generate") is not None:
            settings.generate = GenerateSettings.from_mapping(exploration["generate"])
            settings.generate.check(cutoff=TrainConfig.from_mapping(training).cutoff)
        for iteration in range(
            1, len(schedule) + 1
        ):  # every exploration job's parameters, before anything runs
            settings.exploration_jobs(iteration, settings.trust, seed=0)
        return settings

    def exploration_jobs(self, iteration: int, window: TrustWindow, seed: int) -> list[ExploreParameters]:
        """The MD parameters of each exploration job of ``iteration`` (from 1): one per temperature (K)
        and pressure (GPa) of its schedule entry, as the work chain runs one job per pair."""
        entry = self.schedule[min(iteration - 1, len(self.schedule) - 1)]
        base = {
            **self.md,
            **{key: value for key, value in entry.items() if key not in ("temperatures", "pressures")},
        }
        pairs = [(t, p) for t in entry["temperatures"] for p in entry.get("pressures") or [None]]
        jobs = []
        for index, (temperature, pressure) in enumerate(pairs):
            values = {**base, "temperature": temperature, "trust": window.to_dict()}
            if pressure is not None:
                values["pressure"] = pressure
            values["seed"] = int(base.get("seed", 0)) + 1000 * seed + 100 * iteration + 10 * index
            jobs.append(ExploreParameters.from_mapping(values, where="exploration.md"))
        return jobs


def _labeller_settings(labeller) -> dict:
    """The ``aiida-mlip-label`` settings of an ASE calculator class or a labeller mapping."""
    if isinstance(labeller, type):
        return {"calculator": f"{labeller.__module__}.{labeller.__qualname__}"}
    if isinstance(labeller, Mapping):
        return dict(labeller)
    raise TypeError(
        "labeller must be an ASE calculator class (e.g. ase.calculators.emt.EMT) or a mapping "
        f"{{'calculator': import path, 'kwargs': {{...}}}}, got {type(labeller).__name__}"
    )


def _quiet(*_, **__) -> None:
    return None


def _label(images: Sequence[Atoms], labeller: dict, config_type=None) -> tuple[Frames | None, int]:
    """Labelled frames (None when none could be) and the number of failed ones."""
    if not images:
        return None, 0
    frames = Frames.from_atoms(list(images), require_labels=False, config_type=config_type)
    labelled, _, failures = label_frames(frames, labeller, log=_quiet)
    return labelled, len(failures)


def _test_frames(test_sets) -> dict[str, Frames]:
    frames = {}
    for name, images in (test_sets or {}).items():
        frames[name] = images if isinstance(images, Frames) else Frames.from_atoms(list(images))
    return frames


def _model_kind(training: Mapping[str, Any]):
    """The :class:`~aiida_mlip.potentials.train.ModelKind` of the ``training.backend`` (``TrainConfig``'s default)."""
    return get_backend(TrainConfig.from_mapping(training).backend).model_kind()


def _test_errors(model, test_sets: Mapping[str, Frames], kind) -> dict[str, float]:
    """Force RMSE of the committee mean on each test set, eV/Angstrom."""
    return {
        name: float(evaluate_frames(model, frames, frame_set=kind.frame_set)["mean"]["forces"])
        for name, frames in test_sets.items()
    }


def _train(dataset: Frames, config: dict, init, device: str, parent_frames=None):
    result = train_committee(
        dataset,
        config,
        init=init,
        device=device,
        log=None,
        parent_frames=parent_frames,
        kind=_model_kind(config),
    )
    return result, result.metrics


def run_active_learning(
    structures: Sequence[Atoms],
    labeller,
    settings: LoopSettings | Mapping[str, Any] | None = None,
    strategy: str | None = None,
    seed: int = 0,
    test_sets: Mapping[str, Sequence[Atoms] | Frames] | None = None,
    dataset: Frames | None = None,
    model=None,
    device: str = "cpu",
    log: Callable[[str], Any] | None = print,
) -> list[dict]:
    """Grow a committee potential by active learning, in this process; return one record per iteration.

    Parameters
    ----------
    structures
        Start structures of the exploration walkers (and of the initial set).
    labeller
        The reference: an ASE calculator class (``EMT``) or the ``aiida-mlip-label`` mapping
        ``{"calculator": "ase.calculators.emt.EMT", "kwargs": {...}}``.
    settings
        :class:`LoopSettings` or the mapping of blocks it reads.
    strategy
        Replaces ``selection.strategy`` (one of :data:`aiida_mlip.selection.strategies.STRATEGIES`).
        Whether it selects inside the trust window first is ``selection.windowed``.
    seed
        Seed of the run: it shifts the MD seeds and sets the selection's and the training's. The
        initial structures keep ``initial.seed``, so runs with different seeds share them.
    test_sets
        Name -> labelled frames (energy eV, forces eV/Angstrom); the force RMSE of the committee
        mean on each is recorded after every training.
    dataset, model
        Start from these labelled frames (and this committee) instead of labelling the initial
        structures (and training on them).
    device
        Torch device for training and MD.
    log
        Receives one line per step; None for silence.

    Returns
    -------
    list of dict
        One record per iteration, with the keys of :mod:`aiida_mlip.history` and:
        ``labels_origin`` (where the selection took the frames from, e.g. ``{"in_window": 6,
        "top_up_above_hi": 2}``), ``stop_reason`` (of the selection), ``n_labels_total`` (frames in
        the dataset after the iteration), ``test_rmse_forces`` (name -> eV/Angstrom),
        ``calibration`` (the fit on the new labels of this and all earlier iterations, each frame
        predicted by the committee before it was labelled),
        ``trust`` (``lo``, ``hi``, ``source``), ``training_status`` (of the warm start),
        ``retrained_from_scratch`` (after a ``no_improvement``), ``epochs_run``, ``new_frames`` (warm
        start: the new labels' count and force RMSE before and after training, eV/Angstrom),
        ``convergence`` (the decision) and ``times`` (explore, select, label, calibrate, train,
        test; seconds), ``n_generated`` (start structures generated in the iteration, with
        ``exploration.generate``) and ``n_generated_explored`` (the generated structures explored,
        at most ``exploration.generate.max_share`` of the walkers), ``generated_relaxations`` (the
        record of each random packing relaxed with the iteration's committee, see
        :func:`~aiida_mlip.exploration.random_search.relax`). Record 0 is the initial training.

    Raises
    ------
    SettingsError
        For a bad settings block, before anything runs (``convergence.properties`` included: the
        structure index, the phonon supercell against the cutoff, the quantities the structure has).
    """
    log = log or _quiet
    settings = settings if isinstance(settings, LoopSettings) else LoopSettings.from_mapping(settings)
    properties = settings.convergence.properties
    if properties is not None:
        cutoff = model.cutoff if model is not None else TrainConfig.from_mapping(settings.training).cutoff
        property_atoms = properties.check_structures(list(structures), cutoff=cutoff)
    judged_model, judged = None, None  # the committee whose properties were last computed, and them
    probed, probes = set(), []  # properties probed so far; the probe structures the next iteration labels
    chosen = {**settings.selection.model_dump(mode="json", exclude_unset=True), "seed": seed}
    selection = SelectionSettings.from_mapping({**chosen, **({"strategy": strategy} if strategy else {})})
    labeller = _labeller_settings(labeller)
    tests = _test_frames(test_sets)
    training = {**settings.training, "seed": seed}
    # training.parent_model: the first committee is fine-tuned from it, the later ones are not
    first_training, training = training, {k: v for k, v in training.items() if k != "parent_model"}
    if first_training.get("parent_model") is not None:
        _check_parent(first_training, structures, dataset, model)
    history: list[dict] = []

    start = time.perf_counter()
    record = {"iteration": 0, "times": {}, "n_selected": 0, "n_labelled": 0, "n_label_failures": 0}
    if dataset is None:
        images = initial_structures(structures, settings.initial)
        dataset, failed = _label(images, labeller)
        if dataset is None:
            raise RuntimeError(f"the labeller failed on all {len(images)} initial structures")
        record.update(n_labelled=len(dataset), n_label_failures=failed)
        record["labels_origin"] = {"initial": len(dataset)}
    record["times"]["label"] = time.perf_counter() - start
    known_frames = None  # fingerprints of the frames the current committee was trained on
    # every adopted committee's pairs on its own validation split, for the calibration
    validation = CalibrationPairs.concatenate([])
    if model is None:
        began = time.perf_counter()
        result, metrics = _train(dataset, first_training, None, device)
        model, known_frames = result.model, result.training_frames
        validation = validation_pairs(metrics)
        record["times"]["train"] = time.perf_counter() - began
        record.update(_training_fields(metrics, result.status))
    began = time.perf_counter()
    record["test_rmse_forces"] = _test_errors(model, tests, _model_kind(training))
    record["times"]["test"] = time.perf_counter() - began
    record["n_labels_total"] = len(dataset)
    record["n_train_frames"] = len(dataset)
    record["wall_time"] = time.perf_counter() - start
    log(_summary(record))
    initial_record = record

    window, source = settings.trust, "fixed"
    pooled = CalibrationPairs.concatenate([])
    parents, generated = list(structures), []  # the start structures, and those generated so far
    if settings.generate is not None:
        settings.generate.check(n_structures=len(parents))
    for iteration in range(1, settings.convergence.max_iterations + 1):
        start = time.perf_counter()
        record = new_record(iteration)
        calculator = CommitteeCalculator(model, device=device, spread_every=1)
        if settings.generate is not None:  # random packings are relaxed with this iteration's committee
            made = generate(parents, settings.generate, iteration, calculator)
            generated += made
            record["n_generated"] = len(made)
            relaxed = [atoms.info["relaxation"] for atoms in made if "relaxation" in atoms.info]
            if relaxed:
                record["generated_relaxations"] = relaxed
        record["trust"] = {"lo": window.lo, "hi": window.hi, "source": source}

        walkers = []
        for parameters in settings.exploration_jobs(iteration, window, seed):
            walkers += explore(parents, calculator, parameters, log=None).walkers
            # one job per generated structure, as the work chain; at most generate.max_share of the walkers
            explored = (
                settings.generate.explored(len(generated), parameters.walkers, parameters.walkers, iteration)
                if generated
                else []
            )
            record["n_generated_explored"] = len(explored)
            for number in explored:
                job = parameters.model_copy(update={"seed": parameters.seed + 7919 * (number + 1)})
                walkers += explore([generated[number]], calculator, job, log=None).walkers
        pool = [(atoms, check) for walker in walkers for atoms, check in walker.candidates]
        counts = {name: sum(walker.counts[name] for walker in walkers) for name in CLASS_NAMES}
        record.update(exploration_fields({"counts": counts, "n_candidates": len(pool)}))
        record["walker_stops"] = [walker.stop_reason for walker in walkers]
        record["times"]["explore"] = time.perf_counter() - start

        began = time.perf_counter()
        picked = []
        if pool:
            images = [atoms for atoms, _ in pool]
            scores = {"max_force_deviation": np.array([check.max_force_deviation for _, check in pool])}
            outcome = select_batch(
                images,
                selection,
                window,
                calculator=calculator,
                scores=scores,
                training=dataset.to_atoms(),
            )
            picked = [images[index] for index in outcome.indices]
            record["labels_origin"] = dict(outcome.info.get("origin", {}))
            record["selection_stop_reason"] = outcome.info.get("stop_reason")
        else:
            record["labels_origin"] = {}
            record["selection_stop_reason"] = "empty pool"
        record["n_selected"] = len(picked)
        record["times"]["select"] = time.perf_counter() - began

        began = time.perf_counter()
        tags = [
            f"iteration{iteration}_walker{atoms.info['walker']}_step{atoms.info['step']}" for atoms in picked
        ]
        if probes:  # the structures of the properties whose spread was too large, as the work chain
            tags += [
                f"iteration{iteration}_probe_{atoms.info['probe']}_{n}" for n, atoms in enumerate(probes)
            ]
            record["labels_origin"]["probes"] = record["n_probes"] = len(probes)
            picked, probes = picked + probes, []
        labelled, failed = _label(picked, labeller, tags)
        record.update(n_labelled=0 if labelled is None else len(labelled), n_label_failures=failed)
        record["times"]["label"] = time.perf_counter() - began

        if labelled is not None:
            began = time.perf_counter()
            # pooled with the earlier iterations' pairs, as the work chain's calibrate_uncertainty does
            new_pairs = calibration_pairs(calculator, labelled.to_atoms())
            pooled = CalibrationPairs.concatenate([pooled, new_pairs])
            # with this committee's validation pairs, as the work chain's calibrate_uncertainty does
            calibration, _ = fit_with_validation(pooled, validation)
            record["calibration"] = {
                **calibration.to_dict(),
                "n_new_pairs": len(new_pairs),
                "n_validation_pairs": len(validation),
            }
            record["times"]["calibrate"] = time.perf_counter() - began
            target = getattr(settings.trust, "target_force_error", None)
            if target is not None and not calibration.fallback:
                lo, hi = calibration.window_for(target)
                window = TrustWindow(lo=lo, hi=hi)
                source = f"calibration of iteration {iteration} for target {target:g} eV/A"

            began = time.perf_counter()
            dataset = Frames.concatenate([dataset, labelled])
            config = {**training, **settings.warm_start_parameters} if settings.warm_start else training
            if settings.warm_start:
                result, metrics = _train(dataset, config, model, device, parent_frames=known_frames)
            else:
                result, metrics = _train(dataset, config, None, device)
            record.update(_training_fields(metrics, result.status))
            retrained = False
            if result.status == "no_improvement":  # as the work chain: retrain from scratch once
                result, metrics = _train(dataset, training, None, device)
                retrained = True
            if result.status in ("ok", "no_improvement"):
                model, known_frames = result.model, result.training_frames
                validation = validation_pairs(metrics)  # the next calibration's committee
            if retrained:
                record.update(
                    {
                        key: value
                        for key, value in _training_fields(metrics, result.status).items()
                        if key != "training_status"
                    }
                )
            record["retrained_from_scratch"] = retrained
            record["times"]["train"] = time.perf_counter() - began

        began = time.perf_counter()
        record["test_rmse_forces"] = _test_errors(model, tests, _model_kind(training))
        record["times"]["test"] = time.perf_counter() - began
        record["n_labels_total"] = len(dataset)
        if properties is not None:
            began = time.perf_counter()
            if model is not judged_model:  # an unchanged committee carries its values over
                judged = _property_fields(model, property_atoms, properties, judged, device)
                judged_model = model
            record["properties"] = judged
            due = probes_due(judged, properties, probed)
            if due:
                probes = [
                    image for name in due for image in property_probes(name, property_atoms, properties)
                ]
                probed.update(due)
                record["probes_due"] = {name: sum(a.info["probe"] == name for a in probes) for name in due}
            record["times"]["properties"] = time.perf_counter() - began
        decision = decide(record, history, settings.convergence, len(settings.schedule))
        record["convergence"] = decision.to_dict()
        close_record(record, [initial_record, *history], len(dataset), time.perf_counter() - start)
        history.append(record)
        log(_summary(record))
        if decision.stop:
            break
    return [initial_record, *history]


def _check_parent(training: Mapping[str, Any], structures, dataset: Frames | None, model) -> None:
    """``training.parent_model`` must know every element of the structures and the dataset (SettingsError)."""
    from aiida_mlip.potentials.parent_model import ParentModelError, check_parent_elements

    if model is not None:
        raise SettingsError("give either a start `model` or training.parent_model to fine-tune from")
    elements = {symbol for atoms in structures for symbol in atoms.get_chemical_symbols()}
    elements |= set(dataset.elements) if dataset is not None else set()
    config = TrainConfig.from_mapping(training, where="training")
    try:
        check_parent_elements(config.parent_model, config.backend, elements)
    except ParentModelError as exception:
        raise SettingsError(str(exception)) from None


def _property_fields(
    model, atoms: Atoms, settings: PropertyConvergenceSettings, previous: dict | None, device: str
) -> dict:
    """The ``properties`` record entry of ``model``: every member computes each property (float64)."""
    from aiida_mlip.properties.validation import ValidationSettings, validate_property

    # a copy: the calculator moves its model to float64, and the loop trains and explores in float32
    calculator = CommitteeCalculator(copy.deepcopy(model), device=device, dtype="float64")
    values = ValidationSettings.from_mapping(settings.validation_settings())
    rows, failures = [], {}
    for name in settings.properties:
        try:
            rows += validate_property(name, atoms, calculator, values, cutoff=model.cutoff).rows
        except Exception as exception:  # a failed property is recorded; the quantity is not within tolerance
            failures[name] = f"{type(exception).__name__}: {' '.join(str(exception).split())}"
    return property_fields(rows, failures, previous, settings.quantities)


def _training_fields(metrics: Mapping[str, Any], status: str) -> dict[str, Any]:
    valid = metrics.get("valid", {}).get("mean") or metrics.get("train", {}).get("mean") or {}
    fields = {
        "training_status": status,
        "epochs_run": metrics.get("epochs_run", metrics.get("epochs")),
        "rmse_forces": valid.get("forces"),
        "rmse_energy": valid.get("energy_per_atom"),
    }
    new = metrics.get("new_frames")
    if new:  # warm start: the new labels' force RMSE (eV/Angstrom) under the parent and after training
        fields["new_frames"] = {
            key: new.get(key) for key in ("n", "n_valid", "forces_before", "forces_after")
        }
    return fields


def _summary(record: Mapping[str, Any]) -> str:
    tests = ", ".join(
        f"{name} {1000 * value:.0f}" for name, value in record.get("test_rmse_forces", {}).items()
    )
    text = (
        f"iteration {record['iteration']}: {record.get('n_labelled', 0)} labelled "
        f"({record.get('labels_origin', {})}), {record.get('n_labels_total')} in all"
    )
    if record["iteration"]:
        text += (
            f"; explored {record.get('n_explored', 0)} (accurate {record.get('accurate_fraction', 0.0):.2f}, "
            f"failed {record.get('n_failed', 0)})"
        )
    if tests:
        text += f"; test force RMSE meV/A: {tests}"
    if "convergence" in record:
        text += f"; {record['convergence']['criterion']}"
    return text
