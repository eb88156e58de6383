"""``NebActiveLearningWorkChain`` (``mlip.neb``): a barrier the committee can be trusted on, by active learning along the path.

Each round runs the NEB with the committee (the ``neb_with_committee`` calcfunction: end points
relaxed with the committee, climbing-image NEB, every member's energy and the committee's largest
force deviation on each image; :mod:`aiida_mlip.properties.neb`). When every image is below the trust
threshold, the barrier (forward and reverse) and its committee spread are the result. Otherwise the
untrusted images are labelled (``LabellingWorkChain``: ASE calculator or pw.x), merged into a new
version of the dataset (``merge_datasets``, the calcfunction of the active-learning loop), the
committee is retrained from the current one (``TrainingWorkChain``, warm start) and the NEB runs
again, up to ``max_rounds`` times (see :mod:`aiida_mlip.learning.neb`).

The end points are relaxed with each round's committee (``neb.relax_endpoints``, on by default), so
the barrier is the committee's own; the labelled images are the committee's images. The NEB runs in
this process (a calcfunction), like the potential in ``ValidationWorkChain``.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, ToContext, WorkChain, calcfunction, while_

from aiida_mlip.data.dataset import DatasetData, merge_datasets
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.engine.label import check_elements
from aiida_mlip.learning.neb import NebLearningSettings, judge_path
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.properties.checks import PropertyInputError
from aiida_mlip.properties.neb import nudged_elastic_band
from aiida_mlip.properties.validation import ValidationSettings, check_inputs
from aiida_mlip.settings import SettingsError, settings_refusal
from aiida_mlip.workflows import labelling
from aiida_mlip.workflows.failures import describe_failure
from aiida_mlip.workflows.labelling import LabellingWorkChain
from aiida_mlip.workflows.training import TrainingWorkChain

__all__ = ("NebActiveLearningWorkChain", "collect_rounds", "neb_with_committee")

#: Exit status of ``neb_with_committee`` when the NEB kernel raised.
NEB_FAILED = 400


@calcfunction
def neb_with_committee(
    potential: PotentialData,
    initial: orm.StructureData,
    final: orm.StructureData,
    settings: orm.Dict,
    round_number: orm.Int,
):
    """The NEB of ``potential``'s committee from ``initial`` to ``final``, judged image by image.

    ``settings``: :class:`~aiida_mlip.learning.neb.NebLearningSettings`. Returns ``result`` (Dict: see
    :func:`~aiida_mlip.learning.neb.judge_path`; eV, eV/Angstrom), ``path`` (the relaxed images, end
    points included), ``energies`` (ArrayData: ``energies``, ``spread``, ``max_force_deviation`` of
    shape (n,), ``member_energies`` (K, n); eV relative to the initial state, eV/Angstrom) and, when
    some image is at or above the threshold, ``untrusted`` (those images, config type
    ``neb_round_{round_number}_image_{index}``). A kernel that raises gives exit status 400 with its message.
    """
    values = NebLearningSettings.from_mapping(settings.get_dict())
    try:
        committee = potential.get_calculator(device=values.device, dtype=values.dtype)
        found = nudged_elastic_band(initial.get_ase(), final.get_ase(), committee, values.neb)
        record = judge_path(found, values.threshold)
    except Exception as exception:  # any failure of the committee or the kernel is this round's failure
        return ExitCode(NEB_FAILED, f"{type(exception).__name__}: {' '.join(str(exception).split())}")
    images = [image.copy() for image in found.images]  # without the calculator: no labels
    energies = orm.ArrayData()
    energies.set_array("energies", np.asarray(found.energies, dtype=float))
    energies.set_array("spread", np.asarray(found.spread, dtype=float))
    energies.set_array("max_force_deviation", np.asarray(found.force_deviation, dtype=float))
    energies.set_array("member_energies", np.asarray(found.member_energies, dtype=float))
    outputs = {
        "result": orm.Dict(record),
        "path": StructureSetData(Frames.from_atoms(images, require_labels=False)),
        "energies": energies,
    }
    if record["untrusted"]:
        chosen = [images[index] for index in record["untrusted"]]
        types = [f"neb_round_{round_number.value}_image_{index}" for index in record["untrusted"]]
        outputs["untrusted"] = StructureSetData(
            Frames.from_atoms(chosen, require_labels=False, config_type=types)
        )
    return outputs


@calcfunction
def collect_rounds(labelled: orm.Dict, **results: orm.Dict) -> orm.Dict:
    """The ``barrier`` output: the last round's barriers and every round's record (``round_0``, ``round_1``, ...).

    ``labelled``: ``{round: {"n_labelled": int, "potential": uuid, "n_frames": int}}``, what the work
    chain did after (and with) each NEB.
    """
    extra = labelled.get_dict()
    rounds = []
    for key in sorted(results, key=lambda name: int(name.rsplit("_", 1)[1])):
        number = int(key.rsplit("_", 1)[1])
        rounds.append({"round": number, **results[key].get_dict(), **extra.get(str(number), {})})
    last = rounds[-1]
    summary = {
        key: last[key]
        for key in ("barrier", "reverse_barrier", "barrier_spread", "reverse_barrier_spread", "trusted")
    }
    summary.update(
        threshold=last["threshold"],
        n_rounds=len(rounds) - 1,
        n_labelled=sum(record.get("n_labelled", 0) for record in rounds),
        units={"energy": "eV", "force deviation": "eV/Angstrom"},
        rounds=rounds,
    )
    return orm.Dict(summary)


def validate_settings(value, _):
    """Unknown keys (with the nearest known one), fewer than 3 images, a threshold <= 0, ..."""
    return settings_refusal(NebLearningSettings, value)


def validate_inputs(inputs, _):
    """End points of the same atoms, elements and cell, all known to the potential; one labeller that can label them.

    The checks of the validation layer (:func:`aiida_mlip.properties.validation.check_inputs` for
    ``neb``) and of the labeller (an ASE calculator is tried on one atom of each element).
    """
    needed = ("potential", "dataset", "initial_structure", "final_structure")
    if any(name not in inputs for name in needed):
        return None
    try:
        settings = NebLearningSettings.from_node(inputs.get("settings"))
    except SettingsError:
        return None  # the port validator says why
    potential, initial = inputs["potential"], inputs["initial_structure"]
    try:
        check_inputs(
            ValidationSettings(properties=["neb"], neb=settings.neb),
            initial.get_ase(),
            elements=potential.elements,
            final=inputs["final_structure"].get_ase(),
        )
    except PropertyInputError as exception:
        return str(exception)
    unknown = sorted(set(inputs["dataset"].elements) - set(potential.elements))
    if unknown:
        return (
            f"the dataset holds {unknown}, which the potential (elements {potential.elements}) does not know"
        )
    label = inputs.get("label", {})
    message = labelling.validate_inputs(label, None)
    if message:
        return f"label: {message}"
    if "labeller" in label.get("ase", {}):
        try:
            check_elements(label["ase"]["labeller"].get_dict(), initial.get_symbols_set())
        except ValueError as exception:
            return f"label: invalid labeller: {exception}"
    return None


class NebActiveLearningWorkChain(WorkChain):
    """Refine a committee potential along an NEB path until every image is trusted; report the barrier."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("potential", valid_type=PotentialData, help="The committee to start from.")
        spec.input(
            "dataset",
            valid_type=DatasetData,
            help="The dataset the committee was trained on; the labels of the path are added to it.",
        )
        spec.input(
            "initial_structure",
            valid_type=orm.StructureData,
            help="The initial state of the path (relaxed with the committee before each NEB).",
        )
        spec.input(
            "final_structure",
            valid_type=orm.StructureData,
            help="The final state: the same atoms as the initial one, in the same order and cell.",
        )
        spec.input(
            "settings",
            valid_type=orm.Dict,
            required=False,
            validator=validate_settings,
            help="NebLearningSettings (aiida_mlip.learning.neb): `neb` (images >= 3, climb, fmax eV/A, "
            "steps, ...), `threshold` (eV/A, default the trust window's lo, 0.15), `max_rounds` (default 3), "
            "`device`, `dtype`.",
        )
        spec.expose_inputs(
            LabellingWorkChain,
            namespace="label",
            exclude=("structures",),
            namespace_options={"help": "The labeller of the untrusted images: `ase` or `pw`."},
        )
        spec.expose_inputs(
            TrainingWorkChain,
            namespace="training",
            exclude=("train.dataset", "train.parent_potential"),
            namespace_options={"help": "Code, options and `parameters` of the warm-started trainings."},
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            cls.run_neb,
            while_(cls.should_refine)(
                cls.run_labelling,
                cls.inspect_labelling,
                cls.run_training,
                cls.inspect_training,
                cls.run_neb,
            ),
            cls.results,
        )
        spec.output(
            "barrier",
            valid_type=orm.Dict,
            help="The last round's `barrier`, `reverse_barrier` and their committee spreads (eV), `trusted`; "
            "`rounds`: per round the barriers, per-image energies, spread and max force deviation (eV/A), "
            "the untrusted images and how many were labelled.",
        )
        spec.output("potential", valid_type=PotentialData, help="The last committee.")
        spec.output("dataset", valid_type=DatasetData, help="The dataset with every label of the path.")
        spec.output("path", valid_type=StructureSetData, help="The last round's relaxed path.")
        spec.output(
            "path_energies",
            valid_type=orm.ArrayData,
            help="The last round's per-image `energies`, `spread`, `member_energies` (eV, relative to the "
            "initial state) and `max_force_deviation` (eV/A).",
        )
        spec.exit_code(401, "ERROR_NEB_FAILED", message="The NEB of round {round} failed: {message}")
        spec.exit_code(402, "ERROR_LABELLING_FAILED", message="Labelling round {round} failed: {message}")
        spec.exit_code(403, "ERROR_TRAINING_FAILED", message="Training round {round} failed: {message}")
        spec.exit_code(
            410,
            "ERROR_NOT_TRUSTED_AFTER_MAX_ROUNDS",
            message="The path is still untrusted after {rounds} refinement round(s): images {images} have a "
            "force deviation up to {deviation:.3f} eV/A (threshold {threshold:g}); the last barrier, potential "
            "and dataset are output.",
        )

    def setup(self):
        """Read the settings; the first round starts from the input committee and dataset."""
        settings = NebLearningSettings.from_node(self.inputs.get("settings"))
        self.ctx.settings = settings.to_dict()  # a Dict node per NEB, stored as its input
        self.ctx.max_rounds = settings.max_rounds
        self.ctx.round = 0
        self.ctx.potential, self.ctx.dataset = self.inputs.potential, self.inputs.dataset
        self.ctx.results, self.ctx.extra = {}, {}
        self.ctx.neb = None
        self.report(
            f"NEB of {self.inputs.initial_structure.get_formula()} with potential <{self.ctx.potential.pk}> "
            f"(committee of {self.ctx.potential.committee_size}), {settings.neb.images} images; trusted below "
            f"{settings.threshold:g} eV/A, at most {settings.max_rounds} refinement round(s)"
        )

    def run_neb(self):
        """Run the NEB with the current committee and judge its images."""
        number = self.ctx.round
        _, node = neb_with_committee.run_get_node(
            potential=self.ctx.potential,
            initial=self.inputs.initial_structure,
            final=self.inputs.final_structure,
            settings=orm.Dict(self.ctx.settings),
            round_number=orm.Int(number),
            metadata={"call_link_label": f"neb_{number}"},
        )
        if not node.is_finished_ok:
            self._attach_outputs()
            return self.exit_codes.ERROR_NEB_FAILED.format(
                round=number, message=node.exit_message or f"exit status {node.exit_status}"
            )
        self.ctx.neb = node
        result = node.outputs.result
        self.ctx.results[f"round_{number}"] = result
        self.ctx.extra[str(number)] = {
            "potential": self.ctx.potential.uuid,
            "n_frames": self.ctx.dataset.n_frames,
            "n_labelled": 0,
        }
        deviation = result["max_force_deviation"]
        self.report(
            f"round {number}: barrier {result['barrier']:.3f} +- {result['barrier_spread']:.3f} eV (reverse "
            f"{result['reverse_barrier']:.3f} +- {result['reverse_barrier_spread']:.3f}), max force deviation "
            f"per image {' '.join(f'{value:.3f}' for value in deviation)} eV/A; "
            + (f"untrusted images {result['untrusted']}" if result["untrusted"] else "every image trusted")
            + ("" if result["converged"] else "; the path did not reach fmax within the steps")
            + f" ({node.process_label}<{node.pk}>)"
        )
        return None

    def should_refine(self):
        """An image is untrusted and rounds are left."""
        return not self.ctx.neb.outputs.result["trusted"] and self.ctx.round < self.ctx.max_rounds

    def run_labelling(self):
        """Label the untrusted images of the last NEB."""
        self.ctx.round += 1
        inputs = self.exposed_inputs(LabellingWorkChain, namespace="label")
        inputs["structures"] = self.ctx.neb.outputs.untrusted
        inputs["metadata"] = {"call_link_label": f"label_{self.ctx.round}"}
        self.report(f"round {self.ctx.round}: labelling {inputs['structures'].n_frames} untrusted image(s)")
        return ToContext(labelling=self.submit(LabellingWorkChain, **inputs))

    def inspect_labelling(self):
        """Merge the new labels into a new dataset version; too many failures stop the run."""
        node = self.ctx.labelling
        if "dataset" in node.outputs:  # the labels computed are kept, also when too many failed
            labels = node.outputs.dataset
            self.ctx.dataset = merge_datasets(
                self.ctx.dataset,
                **{f"round_{self.ctx.round}": labels},
                metadata={"call_link_label": f"merge_{self.ctx.round}"},
            )
            self.ctx.extra[str(self.ctx.round - 1)]["n_labelled"] = labels.n_frames
        if not node.is_finished_ok or "dataset" not in node.outputs:
            self._attach_outputs()
            return self.exit_codes.ERROR_LABELLING_FAILED.format(
                round=self.ctx.round, message=describe_failure(node)
            )
        return None

    def run_training(self):
        """Retrain the committee on the new dataset version, warm-started from the current committee."""
        inputs = self.exposed_inputs(TrainingWorkChain, namespace="training")
        inputs["train"] = {
            **inputs["train"],
            "dataset": self.ctx.dataset,
            "parent_potential": self.ctx.potential,
        }
        inputs["metadata"] = {"call_link_label": f"train_{self.ctx.round}"}
        self.report(
            f"round {self.ctx.round}: training on dataset <{self.ctx.dataset.pk}> ({self.ctx.dataset.n_frames} "
            f"frames), warm start from <{self.ctx.potential.pk}>"
        )
        return ToContext(training=self.submit(TrainingWorkChain, **inputs))

    def inspect_training(self):
        node = self.ctx.training
        if not node.is_finished_ok or "potential" not in node.outputs:
            self._attach_outputs()
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                round=self.ctx.round, message=describe_failure(node)
            )
        status = node.outputs.metrics.get("status", "ok") if "metrics" in node.outputs else "ok"
        if status != "ok":
            self.report(f"training <{node.pk}>: {status}; going on with its committee")
        self.ctx.potential = node.outputs.potential
        return None

    def _attach_outputs(self):
        """Output what exists so far (also on failure: nothing computed is lost)."""
        if "potential" not in self.outputs:
            self.out("potential", self.ctx.potential)
        if "dataset" not in self.outputs:
            self.out("dataset", self.ctx.dataset)
        if self.ctx.results and "barrier" not in self.outputs:
            barrier = collect_rounds(
                labelled=orm.Dict(self.ctx.extra), **self.ctx.results, metadata={"call_link_label": "barrier"}
            )
            self.out("barrier", barrier)
        if self.ctx.neb is not None and "path" not in self.outputs:
            self.out("path", self.ctx.neb.outputs.path)
            self.out("path_energies", self.ctx.neb.outputs.energies)

    def results(self):
        """Output the barrier and the last committee; a path still untrusted is exit code 410."""
        self._attach_outputs()
        result = self.ctx.neb.outputs.result
        if result["trusted"]:
            self.report(
                f"trusted after {self.ctx.round} refinement round(s): barrier {result['barrier']:.3f} +- "
                f"{result['barrier_spread']:.3f} eV, reverse {result['reverse_barrier']:.3f} +- "
                f"{result['reverse_barrier_spread']:.3f} eV"
            )
            return None
        deviation = result["max_force_deviation"]
        return self.exit_codes.ERROR_NOT_TRUSTED_AFTER_MAX_ROUNDS.format(
            rounds=self.ctx.round,
            images=result["untrusted"],
            deviation=max(deviation),
            threshold=result["threshold"],
        )
