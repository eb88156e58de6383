"""``ActiveLearningWorkChain`` (``mlip.active_learning``): grow a committee potential until it is trusted.

One iteration: explore (MD with the committee, ``ExplorationWorkChain``) -> select (a de-duplicated,
D-optimal batch among the frames in the trust window, ``SelectCalculation``) -> label
(``LabellingWorkChain``: an ASE calculator or Quantum ESPRESSO) -> merge (a new ``DatasetData``
version, ``merge_datasets``) -> train (``TrainingWorkChain``, warm-started from the last committee)
-> check convergence. Without an initial dataset, rattled and strained copies of the structures are
labelled first; without an initial potential, a first committee is trained on them.

The loop follows the concurrent-learning scheme of DP-GEN (Zhang et al., Comput. Phys. Commun. 253,
107206 (2020)) with the D-optimal selection of Podryabinkin & Shapeev (Comput. Mater. Sci. 140, 171
(2017)).
"""

from __future__ import annotations

import math
import tempfile
import time

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_

from aiida_mlip.calculations.explore import ExploreCalculation
from aiida_mlip.calculations.select import SelectCalculation
from aiida_mlip.calculations.select import validate_parameters as validate_selection_parameters
from aiida_mlip.calculations.train import TrainCalculation
from aiida_mlip.data.dataset import DatasetData, merge_datasets
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.workflows.exploration import ExplorationWorkChain
from aiida_mlip.workflows.labelling import LabellingWorkChain
from aiida_mlip.workflows.protocol import ProtocolMixin
from aiida_mlip.workflows.training import TrainingWorkChain

__all__ = ("ActiveLearningWorkChain", "generate_initial_structures")


@calcfunction
def generate_initial_structures(structures: StructureSetData, parameters: orm.Dict) -> StructureSetData:
    """Return each structure followed by ``copies_per_structure`` rattled and strained copies of it.

    ``rattle``: standard deviation of the Gaussian displacements, Angstrom; ``strain``: largest
    component of the random symmetric strain; ``seed``: of the random numbers. The copies' amplitudes
    go linearly from a third of these values to the full values, so that the first committee sees
    both small and large distortions.
    """
    settings = parameters.get_dict()
    rng = np.random.default_rng(settings.get("seed", 0))
    images = []
    for index, atoms in enumerate(structures.get_atoms()):
        atoms.calc = None
        atoms.info["config_type"] = f"initial_{index}"
        images.append(atoms)
        copies = settings["copies_per_structure"]
        for number in range(copies):
            # amplitudes grow from a third of the given ones to the full ones: near and far from equilibrium
            scale = (1 + 2 * number / max(copies - 1, 1)) / 3
            copy = atoms.copy()
            strain = rng.uniform(-settings["strain"], settings["strain"], (3, 3)) * scale
            copy.set_cell(copy.cell.array @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
            copy.positions += rng.normal(0.0, settings["rattle"] * scale, copy.positions.shape)
            copy.info["config_type"] = f"initial_{index}_rattled"
            images.append(copy)
    return StructureSetData(Frames.from_atoms(images, require_labels=False))


def _explore_parameters(md: dict, entry: dict, trust: dict) -> dict:
    """The ExploreParameters of one job, without its temperature (set per job)."""
    parameters = dict(md)
    parameters.update(
        {key: value for key, value in entry.items() if key not in ("temperatures", "pressures")}
    )
    parameters.pop("watch_gamma", None)
    parameters.setdefault("trust_lo", trust["lo"])
    parameters.setdefault("trust_hi", trust["hi"])
    return parameters


def validate_inputs(inputs, _):
    """Check the loop's settings together, before anything runs."""
    from aiida_mlip.exploration.parameters import ExploreParameters

    trust = inputs["trust"].get_dict() if "trust" in inputs else {}
    lo, hi = trust.get("lo"), trust.get("hi")
    if lo is None or hi is None or not 0 <= lo < hi:
        return f"the trust window needs 0 <= lo < hi (eV/Angstrom), got lo={lo}, hi={hi}"
    if "selection" in inputs:
        message = validate_selection_parameters(inputs["selection"], None)
        if message:
            return message
    exploration = inputs["exploration"].get_dict() if "exploration" in inputs else {}
    schedule = exploration.get("schedule") or []
    if not schedule:
        return "the exploration schedule is empty: give at least one entry with `temperatures`"
    for number, entry in enumerate(schedule):
        if not entry.get("temperatures"):
            return f"exploration schedule entry {number} has no temperatures"
        for temperature in entry["temperatures"]:
            try:
                ExploreParameters.from_mapping(
                    dict(
                        _explore_parameters(exploration.get("md", {}), entry, trust), temperature=temperature
                    )
                )
            except ValueError as exception:
                return f"exploration schedule entry {number}: {exception}"
    convergence = inputs["convergence"].get_dict() if "convergence" in inputs else {}
    if not isinstance(convergence.get("max_iterations"), int) or convergence["max_iterations"] < 1:
        return f"convergence.max_iterations must be a positive integer, got {convergence.get('max_iterations')!r}"
    if not 0 < convergence.get("accurate_fraction", 0) <= 1:
        return (
            f"convergence.accurate_fraction must lie in (0, 1], got {convergence.get('accurate_fraction')!r}"
        )
    potential, structures = inputs.get("potential"), inputs.get("structures")
    if potential is not None and structures is not None:
        unknown = sorted(set(structures.elements) - set(potential.elements))
        if unknown:
            return f"the structures have elements {unknown} that the initial potential does not know"
    label = inputs.get("label", {})
    if structures is not None and "pw" in label:
        from aiida_mlip.workflows.pw_labels import validate_pw_inputs

        message = validate_pw_inputs(structures, label["pw"])
        if message:
            return f"pw labeller: {message}"
    if structures is not None and "labeller" in label.get("ase", {}):
        from aiida_mlip.calculations.label import validate_ase_labelling

        message = validate_ase_labelling(structures, label["ase"]["labeller"])
        if message:
            return f"ase labeller: {message}"
    if "initial" in inputs:
        initial = inputs["initial"].get_dict()
        if (
            initial.get("copies_per_structure", 0) < 1
            or initial.get("rattle", -1) < 0
            or initial.get("strain", -1) < 0
        ):
            return (
                f"initial needs copies_per_structure >= 1, rattle >= 0 (Angstrom), strain >= 0; got {initial}"
            )
    return None


def _span(node: orm.ProcessNode) -> float:
    """Seconds between the creation of a process and its last change (its end, once finished)."""
    return max(0.0, (node.mtime - node.ctime).total_seconds())


class ActiveLearningWorkChain(ProtocolMixin, WorkChain):
    """Grow a committee potential by active learning, every step recorded in the provenance graph."""

    _protocol_file = "active_learning.yaml"

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
            help="Trust window `lo`, `hi` of the max force deviation, eV/Angstrom.",
        )
        spec.input(
            "selection",
            valid_type=orm.Dict,
            help="`strategy` (default hybrid), `budget` per iteration, options.",
        )
        spec.input(
            "convergence",
            valid_type=orm.Dict,
            help="`accurate_fraction`, `patience` (iterations without candidates), `max_iterations`, "
            "`max_force_rmse` (eV/Angstrom, validation) or null.",
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
            exclude=("dataset", "parent_potential"),
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
                if_(cls.has_candidates)(
                    cls.run_selection,
                    cls.inspect_selection,
                    if_(cls.has_selection)(
                        cls.run_labelling, cls.inspect_labelling, cls.run_training, cls.inspect_training
                    ),
                ),
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
            410,
            "ERROR_MAXIMUM_ITERATIONS_EXCEEDED",
            message="Not converged after {iterations} iterations; the last potential and dataset are output.",
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
        """Return a builder filled from a protocol (``fast``, ``balanced``, ``precise``).

        Parameters
        ----------
        structures
            A ``StructureSetData``, or a list of ``StructureData`` or ASE ``Atoms``.
        labeller
            ``{"ase": {"calculator": "ase.calculators.emt.EMT", "kwargs": {...}}}``, or
            ``{"pw": {"code": <pw.x code>, "pseudo_family": "...", ...}}``.
        codes
            ``{"mlip.train": code, "mlip.explore": code, "mlip.select": code, "mlip.label": code}``;
            missing ones are registered on ``localhost`` (``aiida-mlip setup localhost``).
        overrides
            Merged over the protocol's inputs (``exploration``, ``trust``, ``selection``,
            ``convergence``, ``initial``, ``training`` (the training parameters), ``warm_start``).
        options
            Per-step ``metadata.options``: ``{"explore": {...}, "select": {...}, "label": {...}, "train": {...}}``
            (``queue_name``, ``account``, ``resources``, ``max_wallclock_seconds``,
            ``custom_scheduler_commands``...). ``train`` may also hold ``device`` (``auto``, ``cpu``,
            ``cuda``), which goes to the training's ``device`` input. The codes decide the computer of
            each step, so labelling can run on a CPU partition and training on a GPU node.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if codes is None or any(
            key not in codes for key in ("mlip.train", "mlip.explore", "mlip.select", "mlip.label")
        ):
            from aiida_mlip.cmdline.setup import get_or_create_localhost, register_engine_codes

            defaults = register_engine_codes(get_or_create_localhost(), log=lambda *_: None)
            codes = {**defaults, **(codes or {})}
        if not isinstance(structures, StructureSetData):
            images = [s.get_ase() if isinstance(s, orm.StructureData) else s for s in structures]
            structures = StructureSetData.from_atoms(images)
        options = options or {}
        builder = cls.get_builder()
        builder.structures = structures
        if dataset is not None:
            builder.dataset = dataset
        if potential is not None:
            builder.potential = potential
        for key in ("initial", "exploration", "trust", "selection", "convergence"):
            setattr(builder, key, orm.Dict(inputs[key]))
        builder.warm_start = orm.Bool(inputs.get("warm_start", True))
        if inputs.get("warm_start_parameters"):
            builder.warm_start_parameters = orm.Dict(inputs["warm_start_parameters"])
        builder.explore.code = codes["mlip.explore"]
        builder.select.code = codes["mlip.select"]
        builder.train.code = codes["mlip.train"]
        builder.train.parameters = orm.Dict(inputs["training"])
        for step in ("explore", "select", "train"):
            step_options = dict(options.get(step, {}))
            if step == "train" and "device" in step_options:
                builder.train.device = orm.Str(step_options.pop("device"))
            if step_options:
                builder[step].metadata.options = step_options
        if "ase" in labeller:
            builder.label.ase.code = codes["mlip.label"]
            builder.label.ase.labeller = orm.Dict(labeller["ase"])
            if "label" in options:
                builder.label.ase.metadata.options = options["label"]
        elif "pw" in labeller:
            for key, value in labeller["pw"].items():
                builder.label.pw[key] = (
                    orm.Str(value)
                    if isinstance(value, str)
                    else (orm.Dict(value) if isinstance(value, dict) else value)
                )
            if "label" in options:
                builder.label.pw.options = orm.Dict(options["label"])
        else:
            raise ValueError("labeller must have an `ase` or a `pw` entry")
        return builder

    # ------------------------------------------------------------------ steps
    def setup(self):
        self.ctx.iteration = 0
        self.ctx.quiet_iterations = 0
        self.ctx.converged = False
        self.ctx.history = []
        self.ctx.dataset = self.inputs.get("dataset")
        self.ctx.potential = self.inputs.get("potential")
        self.ctx.record = {}

    def needs_initial_dataset(self):
        return self.ctx.dataset is None and self.ctx.potential is None

    def needs_initial_potential(self):
        return self.ctx.potential is None

    def _labelling_inputs(self, structures):
        inputs = self.exposed_inputs(LabellingWorkChain, namespace="label")
        inputs["structures"] = structures
        return inputs

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

    def run_training(self):
        """Train the committee on the current dataset (warm start from the last one when asked)."""
        inputs = {"train": self.exposed_inputs(TrainCalculation, namespace="train")}
        inputs["train"]["dataset"] = self.ctx.dataset
        if self.ctx.potential is not None and self.inputs.warm_start.value:
            inputs["train"]["parent_potential"] = self.ctx.potential
            if "warm_start_parameters" in self.inputs:
                parameters = {
                    **inputs["train"]["parameters"].get_dict(),
                    **self.inputs.warm_start_parameters.get_dict(),
                }
                inputs["train"]["parameters"] = orm.Dict(parameters)
        inputs["metadata"] = {"call_link_label": f"train_{self.ctx.iteration}"}
        self.report(f"training on dataset <{self.ctx.dataset.pk}> ({self.ctx.dataset.n_frames} frames)")
        return ToContext(training=self.submit(TrainingWorkChain, **inputs))

    def inspect_training(self):
        node = self.ctx.training
        if not node.is_finished_ok or "potential" not in node.outputs:
            self._attach_outputs()
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                message=node.exit_message or f"exit {node.exit_status}"
            )
        self.ctx.potential = node.outputs.potential
        metrics = node.outputs.metrics.get_dict() if "metrics" in node.outputs else {}
        valid = metrics.get("valid", {}).get("mean") or metrics.get("train", {}).get("mean") or {}
        self.ctx.record.update(
            rmse_energy=valid.get("energy_per_atom"),
            rmse_forces=valid.get("forces"),
            n_train_frames=self.ctx.dataset.n_frames,
        )
        self.ctx.record.setdefault("times", {})["train"] = _span(node)
        self._event(
            "train",
            rmse_energy=valid.get("energy_per_atom"),
            rmse_forces=valid.get("forces"),
            n_train_frames=self.ctx.dataset.n_frames,
            seconds=_span(node),
        )
        return None

    def should_iterate(self):
        return not self.ctx.converged and self.ctx.iteration < self.inputs.convergence["max_iterations"]

    def run_exploration(self):
        """Explore with the current committee at this iteration's temperatures."""
        self.ctx.iteration += 1
        self.ctx.iteration_start = time.time()
        self.ctx.record = {
            "iteration": self.ctx.iteration,
            "times": {},
            "n_selected": 0,
            "n_labelled": 0,
            "n_label_failures": 0,
        }
        exploration = self.inputs.exploration.get_dict()
        schedule = exploration["schedule"]
        entry = schedule[min(self.ctx.iteration - 1, len(schedule) - 1)]
        parameters = _explore_parameters(exploration.get("md", {}), entry, self.inputs.trust.get_dict())
        # fresh velocities and Langevin noise each iteration: the same seed would retrace similar paths
        parameters["seed"] = int(parameters.get("seed", 0)) + 1000 * (self.ctx.iteration - 1)
        inputs = {
            "potential": self.ctx.potential,
            "structures": self.inputs.structures,
            "temperatures": orm.List(list(entry["temperatures"])),
            "parameters": orm.Dict(parameters),
            "explore": self.exposed_inputs(ExploreCalculation, namespace="explore"),
            "metadata": {"call_link_label": f"explore_{self.ctx.iteration}"},
        }
        if entry.get("pressures"):
            inputs["pressures"] = orm.List(list(entry["pressures"]))
        if self.ctx.dataset is not None and exploration.get("watch_gamma", False):
            inputs["training_set"] = self.ctx.dataset
        self.report(f"iteration {self.ctx.iteration}: exploring at {entry['temperatures']} K")
        return ToContext(exploration=self.submit(ExplorationWorkChain, **inputs))

    def inspect_exploration(self):
        node = self.ctx.exploration
        if "summary" not in node.outputs:
            self._attach_outputs()
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(
                message=node.exit_message or f"exit {node.exit_status}"
            )
        summary = node.outputs.summary.get_dict()
        counts = summary["counts"]
        self.ctx.record.update(
            n_explored=summary["n_checked"],
            n_accurate=counts["accurate"],
            n_candidate=counts["candidate"],
            n_failed=counts["failed"],
            accurate_fraction=summary["accurate_fraction"],
            n_candidates=summary["n_candidates"],
        )
        self.ctx.record["times"]["explore"] = _span(node)
        self.ctx.candidates = node.outputs.candidates if "candidates" in node.outputs else None
        self._event("explore", counts=counts, n_candidates=summary["n_candidates"], seconds=_span(node))
        return None

    def has_candidates(self):
        return self.ctx.candidates is not None

    def run_selection(self):
        """Pick this iteration's batch among the candidates."""
        trust = self.inputs.trust.get_dict()
        parameters = dict(self.inputs.selection.get_dict())
        parameters.setdefault("lo", trust["lo"])
        parameters.setdefault("hi", trust["hi"])
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
        return self.ctx.selected is not None

    def run_labelling(self):
        inputs = self._labelling_inputs(self.ctx.selected)
        inputs["metadata"] = {"call_link_label": f"label_{self.ctx.iteration}"}
        self.report(f"labelling {self.ctx.selected.n_frames} selected structures")
        return ToContext(labelling=self.submit(LabellingWorkChain, **inputs))

    def inspect_labelling(self):
        """Merge the new labels into a new dataset version; too many failures stop the run."""
        node = self.ctx.labelling
        failures = node.outputs.failures["failures"] if "failures" in node.outputs else []
        self.ctx.record.update(n_label_failures=len(failures))
        self.ctx.record["times"]["label"] = _span(node)
        if "dataset" in node.outputs:
            new = node.outputs.dataset
            self.ctx.record["n_labelled"] = new.n_frames
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
        """Converged: the accurate fraction is reached, or no candidates for `patience` iterations; and the RMSE, if set."""
        convergence = self.inputs.convergence.get_dict()
        record = self.ctx.record
        quiet = record.get("n_candidates", 0) == 0 or record.get("n_selected", 0) == 0
        self.ctx.quiet_iterations = self.ctx.quiet_iterations + 1 if quiet else 0
        rmse_ok = convergence.get("max_force_rmse") is None or (
            self.ctx.history
            and self.ctx.history[-1].get("rmse_forces") is not None
            and self._last_rmse() <= convergence["max_force_rmse"]
        )
        self.ctx.converged = rmse_ok and (
            record.get("accurate_fraction", 0.0) >= convergence["accurate_fraction"]
            or self.ctx.quiet_iterations >= convergence.get("patience", 1)
        )
        if "rmse_forces" not in record and self.ctx.history:
            for key in ("rmse_energy", "rmse_forces", "n_train_frames"):
                record[key] = self.ctx.history[-1].get(key)
        wall = time.time() - self.ctx.iteration_start
        record["wall_time"] = wall
        record["overhead"] = max(0.0, wall - sum(record["times"].values()))
        record.setdefault("n_train_frames", self.ctx.dataset.n_frames if self.ctx.dataset is not None else 0)
        self.ctx.history.append(dict(record))
        self.node.base.extras.set("history", self.ctx.history)
        self._event("iteration", converged=self.ctx.converged, **record)
        self.report(
            f"iteration {record['iteration']}: accurate {record.get('accurate_fraction', 0):.3f}, "
            f"candidates {record.get('n_candidates', 0)}, labelled {record['n_labelled']}, "
            f"force RMSE {1000 * (record.get('rmse_forces') or math.nan):.1f} meV/A, "
            f"overhead {record['overhead']:.1f} s" + (" -> converged" if self.ctx.converged else "")
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

    def _last_rmse(self):
        values = [record.get("rmse_forces") for record in self.ctx.history + [self.ctx.record]]
        values = [value for value in values if value is not None]
        return values[-1] if values else math.inf

    def _attach_outputs(self):
        """Output what exists so far (also on failure: nothing computed is lost)."""
        if self.ctx.potential is not None and "potential" not in self.outputs:
            self.out("potential", self.ctx.potential)
        if self.ctx.dataset is not None and "dataset" not in self.outputs:
            self.out("dataset", self.ctx.dataset)
        if "history" not in self.outputs:
            self.out("history", orm.Dict({"iterations": self.ctx.history}).store())

    def results(self):
        self._attach_outputs()
        self._event("finished", converged=self.ctx.converged, iterations=self.ctx.iteration)
        if self.ctx.history:
            from aiida_mlip.history import plot_history

            with tempfile.TemporaryDirectory() as tmp:
                path = f"{tmp}/history.png"
                plot_history(self.ctx.history, path, title=f"Active learning <{self.node.pk}>")
                self.out("history_plot", orm.SinglefileData(path).store())
        if not self.ctx.converged:
            return self.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.format(iterations=self.ctx.iteration)
        self.report(f"converged after {self.ctx.iteration} iteration(s): potential <{self.ctx.potential.pk}>")
        return None
