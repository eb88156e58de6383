"""``ActiveLearningWorkChain`` (``mlip.active_learning``): grow a committee potential until it is trusted.

One iteration: explore (MD with the committee, ``ExplorationWorkChain``) -> select (a batch by the
``selection`` strategy, ``SelectCalculation``) -> label (``LabellingWorkChain``: ASE or Quantum
ESPRESSO) -> calibrate the uncertainty on the new labels -> merge (a new ``DatasetData`` version)
-> train (``TrainingWorkChain``, warm-started) -> the properties of ``convergence.properties``, if any
(``property_convergence.py``) -> check convergence. Without an initial dataset, rattled and
strained copies of the structures are labelled first, and a first committee is trained.

The loop follows the concurrent-learning scheme of DP-GEN (Zhang et al., Comput. Phys. Commun. 253,
107206 (2020)); the D-optimal strategies are those of Podryabinkin & Shapeev (Comput. Mater. Sci.
140, 171 (2017)).
"""

from __future__ import annotations

import math
import tempfile
import time

from aiida import orm
from aiida.engine import ToContext, WorkChain, if_, while_

from aiida_mlip.calculations.explore import ExploreCalculation
from aiida_mlip.calculations.select import SelectCalculation
from aiida_mlip.calculations.train import TrainCalculation
from aiida_mlip.data.dataset import DatasetData, merge_datasets
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.history import close_record, exploration_fields, new_record
from aiida_mlip.learning.convergence import ALL_FAILED, NO_NEW_LABELS, decide
from aiida_mlip.learning.settings import ActiveLearningSettings
from aiida_mlip.selection.trust import TrustWindow
from aiida_mlip.workflows.active_learning_inputs import (
    builder_from_protocol,
    explore_parameters,
    generate_initial_structures,
    validate_inputs,
)
from aiida_mlip.workflows.calibration import CalibrationMixin
from aiida_mlip.workflows.concurrency import validate_max_concurrent
from aiida_mlip.workflows.exploration import ExplorationWorkChain
from aiida_mlip.workflows.failures import describe_failure
from aiida_mlip.workflows.generation import GenerationMixin
from aiida_mlip.workflows.labelling import LabellingWorkChain
from aiida_mlip.workflows.property_convergence import PropertyConvergenceMixin, join_structures
from aiida_mlip.workflows.protocol import ProtocolMixin
from aiida_mlip.workflows.training import TrainingWorkChain

__all__ = ("ActiveLearningWorkChain",)


def _span(node: orm.ProcessNode) -> float:
    """Seconds between the creation of a process and its last change (its end, once finished)."""
    return max(0.0, (node.mtime - node.ctime).total_seconds())


class ActiveLearningWorkChain(
    ProtocolMixin, CalibrationMixin, PropertyConvergenceMixin, GenerationMixin, WorkChain
):
    """Grow a committee potential by active learning, every step recorded in the provenance graph."""

    _protocol_file = "active_learning.yaml"
    _settings_model = ActiveLearningSettings

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "structures",
            valid_type=StructureSetData,
            help="Initial structures; exploration starts from them.",
        )
        spec.input("dataset", valid_type=DatasetData, required=False, help="An initial labelled dataset.")
        spec.input("potential", valid_type=PotentialData, required=False, help="An initial committee.")
        spec.input("parent_model", valid_type=PotentialData, required=False, help="Fine-tune from it.")
        spec.input(
            "initial",
            valid_type=orm.Dict,
            required=False,
            help="Without a dataset: `copies_per_structure`, `rattle` (Angstrom), `strain`, `seed`.",
        )
        spec.input(
            "exploration",
            valid_type=orm.Dict,
            help="`md`: ExploreParameters shared by all jobs; `schedule`: per iteration a mapping with "
            "`temperatures` (K, an entry [start, stop] ramps), optional `pressures` (GPa) and MD overrides; "
            "`watch_gamma` (default false): also classify frames by the extrapolation grade.",
        )
        spec.input(
            "trust",
            valid_type=orm.Dict,
            help="Trust window `lo`, `hi` of the max force deviation, eV/Angstrom; with "
            "`target_force_error` (eV/Angstrom) each calibration sets the next iteration's window.",
        )
        spec.input(
            "selection",
            valid_type=orm.Dict,
            help="`strategy` (default random), `windowed`, `budget` per iteration, options.",
        )
        spec.input(
            "convergence",
            valid_type=orm.Dict,
            help="ConvergenceSettings: `accurate_fraction` (over all checked frames, failed included), "
            "`patience` (iterations in a row that reach it), `max_iterations`, `max_force_rmse` "
            "(eV/Angstrom, validation) or null, `properties` (quantities that must settle) or null.",
        )
        spec.input(
            "warm_start",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help="Start each training from the previous committee.",
        )
        spec.input(
            "warm_start_parameters",
            valid_type=orm.Dict,
            required=False,
            help="Training parameters that replace those of `train.parameters` on a warm start "
            "(typically a lower `lr`: a trained committee needs a gentler step).",
        )
        spec.expose_inputs(
            ExploreCalculation,
            namespace="explore",
            exclude=("potential", "structures", "parameters", "training_set"),
            namespace_options={"help": "Code and options of the exploration jobs."},
        )
        spec.input(
            "explore.max_concurrent",
            valid_type=orm.Int,
            required=False,
            validator=validate_max_concurrent,
            help="Most exploration jobs running at once (see ExplorationWorkChain.max_concurrent).",
        )
        spec.expose_inputs(
            SelectCalculation,
            namespace="select",
            exclude=("pool", "potential", "training_set", "parameters"),
            namespace_options={"help": "Code and options of the selection job."},
        )
        spec.expose_inputs(
            LabellingWorkChain,
            namespace="label",
            exclude=("structures",),
            namespace_options={"help": "The labeller: `ase` or `pw`, and the failure budget."},
        )
        spec.expose_inputs(
            TrainCalculation,
            namespace="train",
            exclude=("dataset", "parent_potential", "parent_model"),
            namespace_options={"help": "Code, options and `parameters` of the training jobs."},
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.needs_initial_dataset)(cls.label_initial, cls.inspect_initial),
            if_(cls.needs_initial_potential)(cls.run_training, cls.inspect_training),
            while_(cls.should_iterate)(
                cls.run_exploration,
                cls.inspect_exploration,
                if_(cls.has_candidates)(cls.run_selection, cls.inspect_selection),
                # the selection, and the probes of convergence.properties when some are due
                if_(cls.has_selection)(
                    cls.run_labelling,
                    cls.inspect_labelling,
                    cls.run_training,
                    cls.inspect_training,
                    if_(cls.should_retrain_from_scratch)(cls.retrain_from_scratch, cls.inspect_training),
                ),
                if_(cls.converges_on_properties)(cls.compute_properties),
                cls.check_convergence,
            ),
            cls.results,
        )
        spec.output("potential", valid_type=PotentialData, help="The final committee.")
        spec.output("dataset", valid_type=DatasetData, help="The final training dataset.")
        spec.output(
            "history",
            valid_type=orm.Dict,
            help="`iterations`: one record per iteration (see aiida_mlip.history).",
        )
        spec.output("history_plot", valid_type=orm.SinglefileData, required=False, help="PNG of the history.")
        spec.output_namespace(
            "calibration",
            valid_type=orm.Dict,
            dynamic=True,
            help="Per iteration (`iteration_N`): the committee's force deviation calibrated on the new "
            "labels before retraining (`fit` and the per-frame `pairs`, eV/Angstrom).",
        )
        spec.output_namespace(
            "reliability_diagram",
            valid_type=orm.SinglefileData,
            dynamic=True,
            help="Per iteration (`iteration_N`): PNG of calibrated predicted vs observed max force error.",
        )
        spec.exit_code(
            401,
            "ERROR_INITIAL_LABELLING_FAILED",
            message="Labelling the initial structures failed: {message}",
        )
        spec.exit_code(402, "ERROR_TRAINING_FAILED", message="Training failed: {message}")
        spec.exit_code(403, "ERROR_EXPLORATION_FAILED", message="Exploration failed: {message}")
        spec.exit_code(404, "ERROR_SELECTION_FAILED", message="Selection failed: {message}")
        spec.exit_code(405, "ERROR_LABELLING_FAILED", message="Labelling failed: {message}")
        spec.exit_code(
            406,
            "ERROR_EXPLORATION_ALL_FAILED",
            message="Not converged after {iterations} iteration(s): {reason}; the last potential and "
            "dataset are output.",
        )
        spec.exit_code(
            407,
            "ERROR_NOT_CONVERGED_NO_NEW_LABELS",
            message="Not converged after {iterations} iteration(s): {reason}; the last potential and "
            "dataset are output.",
        )
        spec.exit_code(
            410,
            "ERROR_MAXIMUM_ITERATIONS_EXCEEDED",
            message="Not converged after {iterations} iteration(s): {reason}; the last potential and "
            "dataset are output.",
        )

    # ------------------------------------------------------------------ protocol
    @classmethod
    def get_builder_from_protocol(
        cls,
        structures,
        labeller: dict,
        codes: dict | None = None,
        protocol: str | None = None,
        overrides: dict | None = None,
        dataset=None,
        potential=None,
        options: dict | None = None,
    ):
        """A builder filled from a protocol: see :func:`~aiida_mlip.workflows.active_learning_inputs.builder_from_protocol`."""
        return builder_from_protocol(
            cls, structures, labeller, codes, protocol, overrides, dataset, potential, options
        )

    # ------------------------------------------------------------------ steps
    def setup(self):
        self.ctx.iteration = 0
        self.ctx.decision = None
        self.ctx.calibration = None  # the latest calibration output: its pairs join the next fit
        self.ctx.history = []
        self.ctx.dataset = self.inputs.get("dataset")
        self.ctx.potential, self.ctx.potential_metrics = self.inputs.get("potential"), None
        self.ctx.record = {}
        self.ctx.retrain_from_scratch = False
        trust = TrustWindow.from_mapping(self.inputs.trust.get_dict())
        self.ctx.window = {"lo": trust.lo, "hi": trust.hi, "source": "fixed"}

    def needs_initial_dataset(self):
        return self.ctx.dataset is None and self.ctx.potential is None

    def needs_initial_potential(self):
        return self.ctx.potential is None

    def _labelling_inputs(self, structures):
        return {**self.exposed_inputs(LabellingWorkChain, namespace="label"), "structures": structures}

    def label_initial(self):
        """Label rattled and strained copies of the structures to train the first committee."""
        initial = (
            self.inputs.initial
            if "initial" in self.inputs
            else orm.Dict({"copies_per_structure": 8, "rattle": 0.05, "strain": 0.03, "seed": 0})
        )
        structures = generate_initial_structures(self.inputs.structures, initial)
        self.report(f"labelling {structures.n_frames} initial structures")
        inputs = self._labelling_inputs(structures)
        inputs["metadata"] = {"call_link_label": "label_initial"}
        return ToContext(initial_labels=self.submit(LabellingWorkChain, **inputs))

    def inspect_initial(self):
        node = self.ctx.initial_labels
        if "dataset" not in node.outputs:
            return self.exit_codes.ERROR_INITIAL_LABELLING_FAILED.format(
                message=node.exit_message or "no labels"
            )
        if not node.is_finished_ok:
            self.report(
                f"initial labelling: {node.exit_message}; going on with the {node.outputs.dataset.n_frames} labels"
            )
        self.ctx.dataset = node.outputs.dataset
        return None

    def _submit_training(self, parent):
        inputs = {"train": self.exposed_inputs(TrainCalculation, namespace="train")}
        inputs["train"]["dataset"] = self.ctx.dataset
        label = f"train_{self.ctx.iteration}"
        if parent is not None:
            inputs["train"]["parent_potential"] = parent
            if "warm_start_parameters" in self.inputs:
                parameters = {
                    **inputs["train"]["parameters"].get_dict(),
                    **self.inputs.warm_start_parameters.get_dict(),
                }
                inputs["train"]["parameters"] = orm.Dict(parameters)
        elif self.ctx.potential is not None:
            label += "_from_scratch"
        elif "parent_model" in self.inputs:  # the first committee: fine-tuned from the parent model
            inputs["train"]["parent_model"] = self.inputs.parent_model
        inputs["metadata"] = {"call_link_label": label}
        self.report(
            f"training on dataset <{self.ctx.dataset.pk}> ({self.ctx.dataset.n_frames} frames)"
            + (f", warm start from <{parent.pk}>" if parent is not None else "")
        )
        return ToContext(training=self.submit(TrainingWorkChain, **inputs))

    def run_training(self):
        """Train the committee on the current dataset (warm start from the last one when asked)."""
        warm = self.ctx.potential is not None and self.inputs.warm_start.value
        return self._submit_training(self.ctx.potential if warm else None)

    def should_retrain_from_scratch(self):
        return self.ctx.retrain_from_scratch

    def retrain_from_scratch(self):
        """The warm start could not beat its parent: train once more, from newly initialised weights."""
        self.ctx.retrain_from_scratch = False
        self.ctx.record["retrained_from_scratch"] = True
        return self._submit_training(None)

    def inspect_training(self):
        node = self.ctx.training
        if not node.is_finished_ok or "potential" not in node.outputs:
            self._attach_outputs()
            return self.exit_codes.ERROR_TRAINING_FAILED.format(message=describe_failure(node))
        metrics = node.outputs.metrics.get_dict() if "metrics" in node.outputs else {}
        status = metrics.get("status", "ok")
        self.ctx.record.setdefault("training_status", status)
        times = self.ctx.record.setdefault("times", {})
        times["train"] = times.get("train", 0.0) + _span(node)
        warm = (
            self.ctx.potential is not None
        )  # a fine-tuned first committee is kept, as in the AiiDA-free loop
        if status == "no_improvement" and warm and not self.ctx.record.get("retrained_from_scratch"):
            self.report(
                f"training <{node.pk}>: no_improvement: the warm-started committee did not beat its parent "
                f"on the validation frames (best epoch {metrics.get('best_epoch')} of {metrics.get('epochs')}); "
                "retraining once from scratch"
            )
            self.ctx.retrain_from_scratch = True
            return None
        self.ctx.potential = node.outputs.potential
        # its validation pairs join the next calibration
        self.ctx.potential_metrics = node.outputs.metrics if "metrics" in node.outputs else None
        valid = metrics.get("valid", {}).get("mean") or metrics.get("train", {}).get("mean") or {}
        self.ctx.record.update(
            rmse_energy=valid.get("energy_per_atom"),
            rmse_forces=valid.get("forces"),
            n_train_frames=self.ctx.dataset.n_frames,
            training_epochs=metrics.get("epochs"),
        )
        if "new_frames" in metrics:
            self.ctx.record["new_frames"] = metrics["new_frames"]
        self._event(
            "train",
            status=status,
            rmse_energy=valid.get("energy_per_atom"),
            rmse_forces=valid.get("forces"),
            n_train_frames=self.ctx.dataset.n_frames,
            seconds=_span(node),
        )
        return None

    def should_iterate(self):
        return self.ctx.decision is None or not self.ctx.decision["stop"]

    def run_exploration(self):
        """Explore with the current committee at this iteration's temperatures (generated structures too)."""
        self.ctx.iteration += 1
        self.ctx.iteration_start = time.time()
        self.ctx.record = new_record(self.ctx.iteration)
        self.ctx.record["trust"] = dict(self.ctx.window)
        self.ctx.selected = None
        exploration = self.inputs.exploration.get_dict()
        schedule = exploration["schedule"]
        entry = schedule[min(self.ctx.iteration - 1, len(schedule) - 1)]
        parameters = explore_parameters(exploration.get("md", {}), entry, self.ctx.window)
        # fresh velocities and Langevin noise each iteration: the same seed would retrace similar paths
        parameters["seed"] = int(parameters.get("seed", 0)) + 1000 * (self.ctx.iteration - 1)
        inputs = {
            "potential": self.ctx.potential,
            # with those of exploration.generate so far, at most its max_share of the walkers
            "structures": self._walker_structures(self._exploration_structures()),
            "temperatures": orm.List(list(entry["temperatures"])),
            "parameters": orm.Dict(parameters),
            "explore": self.exposed_inputs(ExploreCalculation, namespace="explore"),
            "metadata": {"call_link_label": f"explore_{self.ctx.iteration}"},
        }
        if entry.get("pressures"):
            inputs["pressures"] = orm.List(list(entry["pressures"]))
        if "max_concurrent" in self.inputs.explore:
            inputs["max_concurrent"] = self.inputs.explore.max_concurrent
        if self.ctx.dataset is not None and exploration.get("watch_gamma", False):
            inputs["training_set"] = self.ctx.dataset
        self.report(
            f"iteration {self.ctx.iteration}: exploring at {entry['temperatures']} K, trust window "
            f"{self.ctx.window['lo']:.3f}-{self.ctx.window['hi']:.3f} eV/A ({self.ctx.window['source']})"
        )
        return ToContext(exploration=self.submit(ExplorationWorkChain, **inputs))

    def inspect_exploration(self):
        node = self.ctx.exploration
        if "summary" not in node.outputs:
            self._attach_outputs()
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(message=describe_failure(node))
        summary = node.outputs.summary.get_dict()
        self.ctx.record.update(exploration_fields(summary))
        self.ctx.record["times"]["explore"] = _span(node)
        self.ctx.candidates = node.outputs.candidates if "candidates" in node.outputs else None
        self._event(
            "explore", counts=summary["counts"], n_candidates=summary["n_candidates"], seconds=_span(node)
        )
        return None

    def has_candidates(self):
        return self.ctx.candidates is not None

    def run_selection(self):
        """Pick this iteration's batch among the candidates."""
        parameters = dict(self.inputs.selection.get_dict())
        parameters["trust"] = {"lo": self.ctx.window["lo"], "hi": self.ctx.window["hi"]}
        parameters.setdefault("seed", self.ctx.iteration)
        inputs = self.exposed_inputs(SelectCalculation, namespace="select")
        inputs.update(pool=self.ctx.candidates, potential=self.ctx.potential, parameters=orm.Dict(parameters))
        if self.ctx.dataset is not None:
            inputs["training_set"] = self.ctx.dataset
        inputs["metadata"] = {**inputs.get("metadata", {}), "call_link_label": f"select_{self.ctx.iteration}"}
        return ToContext(selection=self.submit(SelectCalculation, **inputs))

    def inspect_selection(self):
        node = self.ctx.selection
        if not node.is_finished_ok:
            self._attach_outputs()
            return self.exit_codes.ERROR_SELECTION_FAILED.format(
                message=node.exit_message or f"exit {node.exit_status}"
            )
        self.ctx.selected = node.outputs.selected if "selected" in node.outputs else None
        self.ctx.record["n_selected"] = self.ctx.selected.n_frames if self.ctx.selected is not None else 0
        self.ctx.record["times"]["select"] = _span(node)
        self._event("select", n_selected=self.ctx.record["n_selected"], seconds=_span(node))
        return None

    def has_selection(self):
        return self.ctx.selected is not None or self.ctx.get("probes") is not None

    def run_labelling(self):
        structures, probes = self.ctx.selected, self.ctx.get("probes")
        what = f"{structures.n_frames} selected" if structures is not None else "no selected"
        if probes is not None:  # made after the last iteration's properties (convergence.properties)
            what += f" and {probes.n_frames} probe"
            structures = probes if structures is None else join_structures(structures, probes)
            self.ctx.record["n_probes"] = probes.n_frames
            self.ctx.probes = None
        inputs = self._labelling_inputs(structures)
        inputs["metadata"] = {"call_link_label": f"label_{self.ctx.iteration}"}
        self.report(f"labelling {what} structures")
        return ToContext(labelling=self.submit(LabellingWorkChain, **inputs))

    def inspect_labelling(self):
        """Calibrate the committee on the new labels, merge them into a new dataset version.

        Too many labelling failures stop the run.
        """
        node = self.ctx.labelling
        failures = node.outputs.failures["failures"] if "failures" in node.outputs else []
        self.ctx.record.update(n_label_failures=len(failures))
        self.ctx.record["times"]["label"] = _span(node)
        if "dataset" in node.outputs:
            new = node.outputs.dataset
            self.ctx.record["n_labelled"] = new.n_frames
            if self.ctx.potential is not None:
                self._calibrate(new)
            if self.ctx.dataset is None:
                self.ctx.dataset = new
            else:
                self.ctx.dataset = merge_datasets(
                    self.ctx.dataset, **{f"iteration_{self.ctx.iteration}": new}
                )
        self._event(
            "label", n_labelled=self.ctx.record.get("n_labelled", 0), errors=failures, seconds=_span(node)
        )
        if not node.is_finished_ok:
            self._attach_outputs()
            return self.exit_codes.ERROR_LABELLING_FAILED.format(
                message=node.exit_message or f"exit {node.exit_status}"
            )
        return None

    def check_convergence(self):
        """Record the iteration and let :func:`aiida_mlip.learning.convergence.decide` judge it."""
        record = close_record(
            self.ctx.record,
            self.ctx.history,
            self.ctx.dataset.n_frames if self.ctx.dataset is not None else 0,
            time.time() - self.ctx.iteration_start,
        )
        stages = len(self.inputs.exploration.get_dict()["schedule"])
        decision = decide(record, self.ctx.history, self.inputs.convergence.get_dict(), stages).to_dict()
        record["convergence"] = decision
        self.ctx.decision = decision
        self.ctx.history.append(dict(record))
        self.node.base.extras.set("history", self.ctx.history)
        self._event("iteration", converged=decision["converged"], **record)
        self.report(
            f"iteration {record['iteration']}: accurate {record['accurate_fraction']:.3f} "
            f"({record['n_failed']} of {record['n_explored']} frames failed), "
            f"candidates {record.get('n_candidates', 0)}, labelled {record['n_labelled']}, "
            f"force RMSE {1000 * (record.get('rmse_forces') or math.nan):.1f} meV/A, "
            f"overhead {record['overhead']:.1f} s -> {decision['criterion']}: {decision['reason']}"
        )

    def _event(self, step: str, **fields) -> None:
        """Publish a progress event (RabbitMQ profiles; a no-op elsewhere, never an error)."""
        from aiida_mlip.events import publish

        publish(
            {
                "run": self.node.pk,
                "uuid": self.node.uuid,
                "step": step,
                "iteration": self.ctx.iteration,
                **fields,
            }
        )

    def _attach_outputs(self):
        """Output what exists so far (also on failure: nothing computed is lost)."""
        if self.ctx.potential is not None and "potential" not in self.outputs:
            self.out("potential", self.ctx.potential)
        if self.ctx.dataset is not None and "dataset" not in self.outputs:
            self.out("dataset", self.ctx.dataset)
        if "history" not in self.outputs:
            ending = {"iterations": self.ctx.history}
            if self.ctx.decision is not None:
                ending["ended"] = {
                    key: self.ctx.decision[key] for key in ("converged", "criterion", "reason")
                }
            self.out("history", orm.Dict(ending).store())

    def results(self):
        self._attach_outputs()
        decision = self.ctx.decision
        self._event("finished", converged=decision["converged"], iterations=self.ctx.iteration)
        if self.ctx.history:
            from aiida_mlip.history import plot_history

            with tempfile.TemporaryDirectory() as tmp:
                path = f"{tmp}/history.png"
                plot_history(self.ctx.history, path, title=f"Active learning <{self.node.pk}>")
                self.out("history_plot", orm.SinglefileData(path).store())
        if decision["converged"]:
            self.report(
                f"converged after {self.ctx.iteration} iteration(s): potential <{self.ctx.potential.pk}>; "
                f"{decision['reason']}"
            )
            return None
        self.report(f"not converged after {self.ctx.iteration} iteration(s): {decision['reason']}")
        exit_code = {
            ALL_FAILED: self.exit_codes.ERROR_EXPLORATION_ALL_FAILED,
            NO_NEW_LABELS: self.exit_codes.ERROR_NOT_CONVERGED_NO_NEW_LABELS,
        }.get(decision["criterion"], self.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED)
        return exit_code.format(iterations=self.ctx.iteration, reason=decision["reason"])
