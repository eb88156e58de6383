"""``ExplorationWorkChain`` (``mlip.exploration``): MD walkers as parallel jobs, candidates gathered."""

from __future__ import annotations

import csv
import io
import itertools
import os
import tempfile

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, while_

from aiida_mlip.calculations.explore import ExploreCalculation
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.workflows.concurrency import resolve_max_concurrent, validate_max_concurrent
from aiida_mlip.workflows.failures import cause_of, count_causes
from aiida_mlip.workflows.labelling import split_structures

__all__ = ("ExplorationWorkChain", "gather_candidates")

CLASS_NAMES = ("accurate", "candidate", "failed")


@calcfunction
def gather_candidates(**candidates: StructureSetData) -> StructureSetData:
    """Join the candidates of several explorations into one set, keeping their score tables.

    The score table gains a ``source`` column: the link label of the set each frame came from.
    """
    keys = sorted(candidates)
    joined = StructureSetData(Frames.concatenate([candidates[key].get_frames() for key in keys]))
    columns, rows = None, []
    for key in keys:
        node = candidates[key]
        if node.SCORES_FILENAME not in node.base.repository.list_object_names():
            continue
        reader = list(csv.reader(io.StringIO(node.base.repository.get_object_content(node.SCORES_FILENAME))))
        columns = columns or reader[0]
        rows.extend(row + [key] for row in reader[1:])
    if columns is not None and len(rows) == joined.n_frames:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "scores.csv")
            with open(path, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow([*columns, "source"])
                writer.writerows(rows)
            joined.set_scores_file(path)
    return joined


def validate_conditions(value, _):
    if value is None:
        return None
    values = value.get_list()
    if not values:
        return "give at least one value"
    return None


class ExplorationWorkChain(WorkChain):
    """Explore every (structure, temperature, pressure) combination as its own ``ExploreCalculation``.

    The jobs run in parallel; their candidates are gathered into one ``StructureSetData`` and their
    frame classes (accurate / candidate / failed, against the trust window) are added up in the
    ``summary``. A job whose walkers all exploded is counted, not fatal, unless every job failed.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("potential", valid_type=PotentialData, help="The committee that drives the MD.")
        spec.input(
            "structures",
            valid_type=StructureSetData,
            help="Start structures: one job per structure and condition.",
        )
        spec.input(
            "temperatures",
            valid_type=orm.List,
            validator=validate_conditions,
            help="Temperatures (K); an entry [start, stop] is a ramp.",
        )
        spec.input(
            "pressures",
            valid_type=orm.List,
            required=False,
            validator=validate_conditions,
            help="Pressures (GPa) for ensemble npt; [start, stop] is a ramp.",
        )
        spec.input("parameters", valid_type=orm.Dict, help="The other MD parameters (ExploreParameters).")
        spec.input(
            "training_set",
            valid_type=DatasetData,
            required=False,
            help="The committee's training set, for the extrapolation grade.",
        )
        spec.expose_inputs(
            ExploreCalculation,
            namespace="explore",
            exclude=("potential", "structures", "parameters", "training_set"),
        )
        spec.input(
            "max_concurrent",
            valid_type=orm.Int,
            required=False,
            validator=validate_max_concurrent,
            help="Most exploration jobs running at once; they are submitted in waves. Default: the CPUs of a "
            "core.direct computer divided by the processes of one job; no cap on other schedulers.",
        )
        spec.outline(cls.plan_walkers, while_(cls.has_waiting_jobs)(cls.run_walkers), cls.gather)
        spec.output("candidates", valid_type=StructureSetData, required=False, help="Every job's candidates.")
        spec.output("summary", valid_type=orm.Dict, help="Class counts, stop reasons and one entry per job.")
        spec.exit_code(401, "ERROR_ALL_EXPLORATIONS_FAILED", message="Every exploration job failed: {causes}")

    def plan_walkers(self):
        """One job per structure and condition: ``[structure pk, temperature, pressure]`` each."""
        if self.inputs.structures.n_frames > 1:
            chunks = split_structures(self.inputs.structures, orm.Int(1))
            starts = [chunks[key] for key in sorted(chunks, key=lambda name: int(name.split("_")[1]))]
        else:
            starts = [self.inputs.structures]
        pressures = self.inputs.pressures.get_list() if "pressures" in self.inputs else [None]
        self.ctx.jobs = [
            [structure.pk, temperature, pressure]
            for structure, temperature, pressure in itertools.product(
                starts, self.inputs.temperatures.get_list(), pressures
            )
        ]
        self.ctx.n_jobs = len(self.ctx.jobs)
        self.ctx.waiting = list(range(self.ctx.n_jobs))
        inputs = self.exposed_inputs(ExploreCalculation, "explore")
        options = dict(inputs.get("metadata", {}).get("options", {}))
        self.ctx.max_concurrent = resolve_max_concurrent(
            self.inputs.get("max_concurrent"), inputs["code"], options
        )
        cap = self.ctx.max_concurrent
        self.report(
            f"exploring with {self.ctx.n_jobs} job(s)"
            + (f", at most {cap} at a time" if cap is not None and cap < self.ctx.n_jobs else "")
        )

    def has_waiting_jobs(self):
        """Whether jobs remain to be submitted (they go in waves of ``max_concurrent``)."""
        return bool(self.ctx.waiting)

    def run_walkers(self):
        """Submit the next wave of ``ExploreCalculation``s."""
        cap = self.ctx.max_concurrent or len(self.ctx.waiting)
        wave, self.ctx.waiting = self.ctx.waiting[:cap], self.ctx.waiting[cap:]
        base = self.inputs.parameters.get_dict()
        jobs = {}
        for number in wave:
            structure, temperature, pressure = self.ctx.jobs[number]
            parameters = dict(base, temperature=temperature)
            if pressure is not None:
                parameters["pressure"] = pressure
            inputs = self.exposed_inputs(ExploreCalculation, "explore")
            inputs.update(
                potential=self.inputs.potential,
                structures=orm.load_node(structure),
                parameters=orm.Dict(parameters),
            )
            if "training_set" in self.inputs:
                inputs["training_set"] = self.inputs.training_set
            inputs.setdefault("metadata", {})["call_link_label"] = f"explore_{number}"
            jobs[f"explore_{number}"] = self.submit(ExploreCalculation, **inputs)
        return ToContext(**jobs)

    def gather(self):
        """Add up the counts and join the candidates."""
        counts = dict.fromkeys(CLASS_NAMES, 0)
        reasons: dict[str, int] = {}
        jobs, candidates = [], {}
        for number in range(self.ctx.n_jobs):
            job = self.ctx[f"explore_{number}"]
            entry = {"pk": job.pk, "uuid": job.uuid, "exit_status": job.exit_status}
            if "summary" in job.outputs:
                summary = job.outputs.summary.get_dict()
                for name in CLASS_NAMES:
                    counts[name] += summary.get("counts", {}).get(name, 0)
                for reason, count in summary.get("stop_reasons", {}).items():
                    reasons[reason] = reasons.get(reason, 0) + count
                entry.update(
                    counts=summary.get("counts"), temperature=summary.get("parameters", {}).get("temperature")
                )
            if "candidates" in job.outputs:
                candidates[f"explore_{number}"] = job.outputs.candidates
            jobs.append(entry)
        total = sum(counts.values())
        summary = {
            "counts": counts,
            "n_checked": total,
            "accurate_fraction": counts["accurate"] / total if total else 0.0,
            "n_candidates": sum(node.n_frames for node in candidates.values()),
            "stop_reasons": reasons,
            "jobs": jobs,
        }
        self.out("summary", orm.Dict(summary).store())
        if candidates:
            self.out("candidates", gather_candidates(**candidates))
        self.report(f"explored {total} frames: {counts}")
        failed = [
            self.ctx[f"explore_{n}"]
            for n in range(self.ctx.n_jobs)
            if not self.ctx[f"explore_{n}"].is_finished_ok
        ]
        if len(failed) == self.ctx.n_jobs and not total:
            return self.exit_codes.ERROR_ALL_EXPLORATIONS_FAILED.format(
                causes=count_causes(cause_of(job) for job in failed)
            )
        return None
