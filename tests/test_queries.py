"""Provenance queries: lineage counts dataset versions along the merge chain (label sets are labelling
results); what came from a labelling job and the dataset versions of the session's shared run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.common.links import LinkType
from ase.build import bulk
from click.testing import CliRunner

from aiida_mlip.cmdline.runs import cmd_lineage
from aiida_mlip.data.dataset import DatasetData, merge_datasets
from aiida_mlip.data.potential import PotentialData
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.model_file import write_model_file
from aiida_mlip.queries import dataset_versions, potential_lineage, potentials_from

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 4
JOBS_PER_LABELLING = 2


def _labels(seed: int) -> Frames:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.positions += np.random.default_rng(seed).normal(0, 0.05, atoms.positions.shape)
    return Frames.from_arrays(
        [atoms.get_chemical_symbols()],
        positions=atoms.positions,
        offsets=[0, len(atoms)],
        cells=atoms.cell.array[None],
        pbc=atoms.pbc[None],
        energy=[float(seed)],
        forces=np.zeros((len(atoms), 3)),
    )


def _calcjob(computer, label: str, inputs: dict, outputs: dict) -> orm.CalcJobNode:
    """A finished CalcJobNode with the given input and output links, as the engine leaves them."""
    job = orm.CalcJobNode(computer=computer, process_type=f"aiida.calculations:mlip.{label.lower()}")
    job.set_process_label(label)
    for link_label, node in inputs.items():
        job.base.links.add_incoming(node.store(), LinkType.INPUT_CALC, link_label)
    job.store()
    for link_label, node in outputs.items():
        node.base.links.add_incoming(job, LinkType.CREATE, link_label)
        node.store()
    job.set_exit_status(0)
    job.set_process_state("finished")
    job.seal()
    return job


def _labelling(computer, iteration: int) -> tuple[DatasetData, list[orm.CalcJobNode]]:
    """What LabellingWorkChain leaves: one LabelCalculation per chunk, their labels merged (a label set)."""
    labels, jobs = {}, []
    for number in range(JOBS_PER_LABELLING):
        labelled = DatasetData(_labels(10 * iteration + number))
        structures = orm.Dict({"chunk": number})
        jobs.append(
            _calcjob(computer, "LabelCalculation", {"structures": structures}, {"labelled": labelled})
        )
        labels[f"label_{number}"] = labelled
    return merge_datasets(**labels), jobs


def _potential(tmp_path, index: int) -> PotentialData:
    path = tmp_path / f"model_{index}.safetensors"
    metadata = {
        "architecture": "test",
        "elements": ["Al"],
        "cutoff": 4.0,
        "committee_size": 2,
        "index": index,
    }
    write_model_file(path, {"w": torch.full((2,), float(index))}, metadata)
    return PotentialData(file=path)


@pytest.fixture
def four_iteration_run(aiida_localhost, tmp_path):
    """The provenance of a 4-iteration ActiveLearningWorkChain without an initial dataset."""
    dataset, jobs = _labelling(aiida_localhost, 0)  # initial structures labelled: v1
    potential = _potential(tmp_path, 0)
    _calcjob(aiida_localhost, "TrainCalculation", {"dataset": dataset}, {"potential": potential})
    for iteration in range(1, ITERATIONS + 1):
        new, more = _labelling(aiida_localhost, iteration)
        jobs += more
        dataset = merge_datasets(dataset, **{f"iteration_{iteration}": new})  # as inspect_labelling does
        trained = _potential(tmp_path, iteration)
        _calcjob(
            aiida_localhost,
            "TrainCalculation",
            {"dataset": dataset, "parent_potential": potential},
            {"potential": trained},
        )
        potential = trained
    return potential, dataset, jobs


def _counts(potential) -> dict:
    lineage = potential_lineage(potential)
    return {
        "versions": sorted(dataset.version for dataset in lineage.datasets),
        "labelling": sorted(job.uuid for job in lineage.labelling_calculations),
        "label_sets": len(lineage.label_sets),
        "training": len(lineage.training_runs),
        "summary": lineage.summary(),
    }


def test_lineage_counts_versions_by_the_merge_chain(four_iteration_run, tmp_path):
    potential, final, jobs = four_iteration_run
    counts = _counts(potential)
    assert final.version == ITERATIONS + 1
    assert counts["versions"] == [1, 2, 3, 4, 5]  # the initial one + one per iteration
    assert counts["labelling"] == sorted(job.uuid for job in jobs)
    assert len(jobs) == (ITERATIONS + 1) * JOBS_PER_LABELLING
    # per job (2 per labelling) + the iteration's merged set (1 per iteration after the first)
    assert counts["label_sets"] == (ITERATIONS + 1) * JOBS_PER_LABELLING + ITERATIONS
    assert counts["training"] == ITERATIONS + 1
    assert counts["summary"] == (
        "5 training run(s), 5 dataset version(s) (v1-v5), 14 label set(s) from 10 labelling calculation(s)"
    )

    result = CliRunner().invoke(cmd_lineage, [str(potential.pk)])
    assert result.exit_code == 0, result.output
    assert counts["summary"] in result.output
    kinds = [line.split()[0] for line in result.output.splitlines()[2:] if line.strip() and line[0] != " "]
    assert kinds.count("dataset") == 5 and kinds.count("labelling") == 10 and kinds.count("labels") == 14

    # the same from an archive imported into a fresh profile
    from aiida.tools.archive import create_archive

    archive = tmp_path / "run.aiida"
    create_archive([potential], filename=archive)
    fresh = dict(os.environ, AIIDA_PATH=str(tmp_path / "fresh"))
    for command in (
        ["verdi", "presto", "--profile-name", "imported", "--use-zeromq"],
        ["verdi", "-p", "imported", "archive", "import", str(archive)],
    ):
        subprocess.run(command, env=fresh, check=True, capture_output=True)
    script = (
        "import json; from aiida import load_profile, orm; load_profile('imported');"
        "from tests.test_queries import _counts;"
        f"print(json.dumps(_counts(orm.load_node('{potential.uuid}'))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], env=fresh, check=True, capture_output=True, text=True, cwd=ROOT
    )
    assert json.loads(output.stdout.strip().splitlines()[-1]) == counts
    cli = subprocess.run(
        ["aiida-mlip", "-p", "imported", "lineage", potential.uuid],
        env=fresh,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert cli.returncode == 0 and counts["summary"] in cli.stdout, cli.stdout + cli.stderr


# ------------------------------------------------------------------ on the session's shared run


def label_calculations(labelling):
    """The LabelCalculations a LabellingWorkChain called."""
    jobs = [node for node in labelling.called_descendants if node.process_label == "LabelCalculation"]
    assert jobs
    return jobs


def test_potentials_from_follow_the_labels_forward(finished_run):
    first = finished_run.called("train_0").outputs.potential
    final = finished_run.node.outputs.potential
    assert first.uuid != final.uuid
    # the initial labels taught the first committee and, through the merged dataset and the warm
    # start, the final one
    for job in label_calculations(finished_run.called("label_initial")):
        assert [p.uuid for p in potentials_from(job)] == [first.uuid, final.uuid]
    # the labels of iteration 1 came after the first committee: they taught only the final one
    for job in label_calculations(finished_run.called("label_1")):
        assert [p.uuid for p in potentials_from(job)] == [final.uuid]
    assert [p.uuid for p in potentials_from(finished_run.node.outputs.dataset)] == [final.uuid]
    # the start structures: the initial copies are made from them, so both committees came from them
    assert [p.uuid for p in potentials_from(finished_run.node.inputs.structures)] == [first.uuid, final.uuid]
    # the user's StructureData, given to `launch` by its pk, is linked to that set by a calcfunction
    assert [p.uuid for p in potentials_from(finished_run.structure)] == [first.uuid, final.uuid]


def test_dataset_versions_oldest_first(finished_run):
    initial = finished_run.called("label_initial").outputs.dataset
    final = finished_run.node.outputs.dataset
    versions = dataset_versions(final)
    assert [v.uuid for v in versions] == [initial.uuid, final.uuid]
    assert [v.version for v in versions] == [1, 2]
    added = finished_run.called("label_1").outputs.dataset.n_frames
    assert final.n_frames == initial.n_frames + added
    assert [v.uuid for v in dataset_versions(initial)] == [initial.uuid]
