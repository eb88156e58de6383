"""``LabellingWorkChain`` (``mlip.labelling``): label a set of structures in parallel jobs.

Two labellers, exactly one per run:

``ase``
    ``LabelCalculation`` jobs, each labelling a chunk of structures with an ASE calculator.
``pw``
    Quantum ESPRESSO: one ``PwBaseWorkChain`` per structure (aiida-quantumespresso, with its SCF
    restart handlers), built from a protocol and an aiida-pseudo family
    (:mod:`aiida_mlip.workflows.pw_labels`).
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_

from aiida_mlip.calculations.label import LabelCalculation, validate_ase_labelling
from aiida_mlip.data.dataset import DatasetData, merge_datasets
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.workflows import pw_labels
from aiida_mlip.workflows.concurrency import resolve_max_concurrent, validate_max_concurrent
from aiida_mlip.workflows.failures import cause_from_text, cause_of, count_causes, describe_failure

__all__ = ("LabellingWorkChain", "split_structures")


@calcfunction
def split_structures(structures: StructureSetData, chunk_size: orm.Int) -> dict:
    """Split a set into consecutive chunks of at most ``chunk_size`` frames (``chunk_0``, ``chunk_1``, ...).

    Each chunk records ``first_index``, the index of its first frame in ``structures``.
    """
    frames = structures.get_frames()
    size = chunk_size.value
    chunks = {}
    for number, start in enumerate(range(0, len(frames), size)):
        chunk = StructureSetData(frames.subset(np.arange(start, min(start + size, len(frames)))))
        chunk.base.attributes.set("first_index", start)
        chunks[f"chunk_{number}"] = chunk
    return chunks


def validate_inputs(inputs, _):
    """Exactly one labeller, ``ase`` or ``pw``; a ``pw`` set-up must fit the structures (see ``validate_pw_inputs``)."""
    given = [name for name in ("ase", "pw") if inputs.get(name)]
    if not given:
        return "no labeller given: specify the `ase` namespace (code, labeller) or the `pw` one (code, pseudo_family)"
    if len(given) > 1:
        return "two labellers given: specify either the `ase` namespace or the `pw` one, not both"
    if given == ["pw"] and "structures" in inputs:
        return pw_labels.validate_pw_inputs(inputs["structures"], inputs["pw"])
    if given == ["ase"] and "structures" in inputs and "labeller" in inputs["ase"]:
        return validate_ase_labelling(inputs["structures"], inputs["ase"]["labeller"])
    return None


def validate_fraction(value, _):
    if value is not None and not 0.0 <= value.value <= 1.0:
        return f"max_failure_fraction must lie in [0, 1], got {value.value}"
    return None


def validate_chunk(value, _):
    if value is not None and value.value < 1:
        return f"max_structures_per_job must be at least 1, got {value.value}"
    return None


class LabellingWorkChain(WorkChain):
    """Label structures in parallel jobs (ASE calculator or pw.x) and collect one ``DatasetData``.

    The jobs are submitted in waves of at most ``max_concurrent`` (see
    :mod:`aiida_mlip.workflows.concurrency`). Structures whose labelling fails are reported in the
    ``failures`` output (their index in the input, the error, its one-line cause read from the job's
    output by :mod:`aiida_mlip.workflows.failures`, and the calculation; for ``pw`` also the
    ``PwBaseWorkChain`` as ``workchain``) and left out of the dataset. The work chain fails with
    ``ERROR_TOO_MANY_FAILURES`` when more than ``max_failure_fraction`` of them failed, quoting each
    distinct cause with its count, still returning every label that was computed.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structures", valid_type=StructureSetData, help="The configurations to label.")
        spec.input(
            "max_structures_per_job",
            valid_type=orm.Int,
            default=lambda: orm.Int(20),
            validator=validate_chunk,
            help="Structures per labelling job; the jobs run in parallel.",
        )
        spec.input(
            "max_failure_fraction",
            valid_type=orm.Float,
            default=lambda: orm.Float(0.2),
            validator=validate_fraction,
            help="Largest tolerated fraction of structures whose labelling fails.",
        )
        spec.input(
            "max_concurrent",
            valid_type=orm.Int,
            required=False,
            validator=validate_max_concurrent,
            help="Most labelling jobs (pw.x runs, LabelCalculations) running at once; they are submitted in "
            "waves. Default: the CPUs of a core.direct computer divided by the processes of one job; no cap "
            "on other schedulers.",
        )
        spec.expose_inputs(
            LabelCalculation,
            namespace="ase",
            exclude=("structures",),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "Label with an ASE calculator (LabelCalculation).",
            },
        )
        spec.input_namespace(
            "pw",
            required=False,
            populate_defaults=False,
            help="Label with Quantum ESPRESSO: one PwBaseWorkChain per structure.",
        )
        spec.input("pw.code", valid_type=orm.AbstractCode, help="The pw.x code (plugin quantumespresso.pw).")
        spec.input(
            "pw.pseudo_family",
            valid_type=orm.Str,
            help="Label of an aiida-pseudo family; its recommended cutoffs (Ry) set ecutwfc and ecutrho.",
        )
        spec.input(
            "pw.protocol",
            valid_type=orm.Str,
            default=lambda: orm.Str("fast"),
            help="Protocol of PwBaseWorkChain (fast, balanced, stringent): k-point density in 1/Angstrom, "
            "convergence thresholds, smearing width.",
        )
        spec.input(
            "pw.overrides",
            valid_type=orm.Dict,
            required=False,
            help="Overrides of PwBaseWorkChain.get_builder_from_protocol, e.g. {'kpoints_distance': 0.2, "
            "'pw': {'parameters': {'SYSTEM': {'ecutwfc': 50}}}}; tprnfor, tstress and an SCF are "
            "always on.",
        )
        spec.input(
            "pw.options",
            valid_type=orm.Dict,
            required=False,
            help="metadata.options of every PwCalculation: resources, max_wallclock_seconds (s), withmpi...",
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            if_(cls.labels_with_pw)(
                cls.prepare_pw,
                while_(cls.has_waiting_jobs)(cls.run_pw),
                cls.collect_pw,
            ).else_(
                cls.split,
                while_(cls.has_waiting_jobs)(cls.run_labelling),
                cls.collect,
            ),
        )
        spec.output("dataset", valid_type=DatasetData, required=False, help="Every label that was computed.")
        spec.output(
            "failures",
            valid_type=orm.Dict,
            help="`failures`: index, error, cause (one line, from the job's output) and calculation of each "
            "structure that could not be labelled.",
        )
        spec.exit_code(
            401,
            "ERROR_TOO_MANY_FAILURES",
            message="{failed} of {total} structures failed to be labelled (more than {fraction:.0%}): {causes}",
        )
        spec.exit_code(
            402,
            "ERROR_SUB_PROCESS_FAILED_LABELLING",
            message="The labelling job <{pk}> failed with exit status {status}: {message}",
        )

    def labels_with_pw(self):
        """Whether the ``pw`` labeller was chosen."""
        return bool(self.inputs.get("pw"))

    def has_waiting_jobs(self):
        """Whether jobs remain to be submitted (they go in waves of ``max_concurrent``)."""
        return bool(self.ctx.waiting)

    def _next_wave(self) -> list[int]:
        cap = self.ctx.max_concurrent or len(self.ctx.waiting)
        wave, self.ctx.waiting = self.ctx.waiting[:cap], self.ctx.waiting[cap:]
        return wave

    def _concurrency(self, total: int) -> str:
        cap = self.ctx.max_concurrent
        return f", at most {cap} at a time" if cap is not None and cap < total else ""

    def prepare_pw(self):
        """Split the set into structures; fix the set's common cutoffs, the job options and the concurrency."""
        inputs = self.inputs.pw
        family = pw_labels.load_pseudo_family(inputs.pseudo_family.value)
        self.ctx.pw_overrides = pw_labels.pw_overrides(
            family,
            list(self.inputs.structures.elements),
            inputs.overrides.get_dict() if "overrides" in inputs else None,
        )
        options = pw_labels.pw_job_options(
            inputs.code, inputs.options.get_dict() if "options" in inputs else None
        )
        self.ctx.pw_options = options
        structures = pw_labels.split_into_structures(self.inputs.structures)
        self.ctx.pw_structures = [structures[key] for key in sorted(structures)]
        builder = pw_labels.get_pw_builder(
            inputs.code, self.ctx.pw_structures[0], self.ctx.pw_overrides, inputs.protocol.value, options
        )
        self.ctx.label_settings = pw_labels.pw_label_settings(builder, family, inputs.protocol.value)
        self.ctx.max_concurrent = resolve_max_concurrent(
            self.inputs.get("max_concurrent"), inputs.code, options
        )
        self.ctx.waiting = list(range(len(self.ctx.pw_structures)))
        self.report(
            f"labelling {len(self.ctx.waiting)} structures with pw.x, one PwBaseWorkChain each"
            + self._concurrency(len(self.ctx.waiting))
        )

    def run_pw(self):
        """Submit the next wave of ``PwBaseWorkChain``s, one per structure."""
        inputs = self.inputs.pw
        workchains = {}
        for index in self._next_wave():
            builder = pw_labels.get_pw_builder(
                inputs.code,
                self.ctx.pw_structures[index],
                self.ctx.pw_overrides,
                inputs.protocol.value,
                self.ctx.pw_options,
            )
            builder.metadata.call_link_label = f"pw_{index}"
            workchains[f"pw_{index}"] = self.submit(builder)
        return ToContext(**workchains)

    def collect_pw(self):
        """Turn every finished SCF into a label, record the failures and judge the failure fraction."""
        labels, failures = {}, []
        settings = orm.Dict(self.ctx.label_settings)
        for index, structure in enumerate(self.ctx.pw_structures):
            workchain = self.ctx[f"pw_{index}"]
            calculations = workchain.base.links.get_outgoing(node_class=orm.CalcJobNode).all_nodes()
            last = max(calculations, key=lambda node: node.ctime).uuid if calculations else None
            outputs = workchain.outputs
            if workchain.is_finished_ok and "output_trajectory" in outputs and "output_parameters" in outputs:
                try:
                    labels[f"label_{index:05d}"] = pw_labels.pw_label(
                        structure,
                        outputs.output_parameters,
                        outputs.output_trajectory,
                        settings,
                        metadata={"call_link_label": f"pw_label_{index}"},
                    )
                    continue
                except Exception as exception:  # noqa: BLE001  (a label that cannot be read is a failure)
                    error = f"the pw.x outputs could not be turned into a label: {exception}"
                    cause = error
            else:
                error = f"PwBaseWorkChain exit status {workchain.exit_status}: {workchain.exit_message}"
                cause = cause_of(workchain)
            failures.append(
                {
                    "index": index,
                    "error": error,
                    "cause": cause,
                    "workchain": workchain.uuid,
                    "calculation": last,
                }
            )
        return self._finish(labels, failures)

    def _finish(self, labels, failures):
        """Output the merged labels and the failures; fail if too many structures could not be labelled."""
        self.out("failures", orm.Dict({"failures": failures}).store())
        if labels:
            self.out("dataset", merge_datasets(**labels))
        total = self.inputs.structures.n_frames
        self.report(f"labelled {total - len(failures)} of {total} structures, {len(failures)} failed")
        causes = count_causes(failure["cause"] for failure in failures)
        for line in causes.split("; ") if failures else ():
            self.report(f"failed: {line}")
        fraction = self.inputs.max_failure_fraction.value
        if len(failures) > fraction * total:
            return self.exit_codes.ERROR_TOO_MANY_FAILURES.format(
                failed=len(failures), total=total, fraction=fraction, causes=causes
            )
        return None

    def split(self):
        """Cut the structures into chunks, one labelling job each."""
        chunks = split_structures(self.inputs.structures, self.inputs.max_structures_per_job)
        self.ctx.chunks = [chunks[key] for key in sorted(chunks, key=lambda name: int(name.split("_")[1]))]
        inputs = self.exposed_inputs(LabelCalculation, namespace="ase")
        options = dict(inputs.get("metadata", {}).get("options", {}))
        self.ctx.max_concurrent = resolve_max_concurrent(
            self.inputs.get("max_concurrent"), inputs["code"], options
        )
        self.ctx.waiting = list(range(len(self.ctx.chunks)))
        self.report(
            f"labelling {self.inputs.structures.n_frames} structures in {len(self.ctx.chunks)} job(s)"
            + self._concurrency(len(self.ctx.chunks))
        )

    def run_labelling(self):
        """Submit the next wave of ``LabelCalculation``s, one per chunk."""
        calculations = {}
        for number in self._next_wave():
            inputs = self.exposed_inputs(LabelCalculation, namespace="ase")
            inputs["structures"] = self.ctx.chunks[number]
            inputs.setdefault("metadata", {})["call_link_label"] = f"label_{number}"
            calculations[f"label_{number}"] = self.submit(LabelCalculation, **inputs)
        return ToContext(**calculations)

    def collect(self):
        """Merge the labels of every job, record the failures and judge the failure fraction."""
        labels, failures = {}, []
        tolerated = {
            0,
            LabelCalculation.exit_codes.ERROR_SOME_LABELS_FAILED.status,
            LabelCalculation.exit_codes.ERROR_ALL_LABELS_FAILED.status,
        }
        for number, chunk in enumerate(self.ctx.chunks):
            calculation = self.ctx[f"label_{number}"]
            first = chunk.base.attributes.get("first_index")
            if calculation.exit_status not in tolerated:
                return self.exit_codes.ERROR_SUB_PROCESS_FAILED_LABELLING.format(
                    pk=calculation.pk, status=calculation.exit_status, message=describe_failure(calculation)
                )
            if "labelled" in calculation.outputs:
                labels[f"label_{number}"] = calculation.outputs.labelled
            if "failures" in calculation.outputs:
                for failure in calculation.outputs.failures["failures"]:
                    failures.append(
                        {
                            "index": first + failure["index"],
                            "error": failure["error"],
                            "cause": cause_from_text(failure["error"]) or failure["error"],
                            "calculation": calculation.uuid,
                        }
                    )
            elif "labelled" not in calculation.outputs:
                cause = cause_of(calculation)
                failures.extend(
                    {"index": first + i, "error": "no label", "cause": cause, "calculation": calculation.uuid}
                    for i in range(chunk.n_frames)
                )
        return self._finish(labels, failures)
