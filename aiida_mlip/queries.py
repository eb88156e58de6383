"""Provenance queries: where a potential's knowledge came from, and where a calculation's went.

The graph that the work chains leave is::

    LabelCalculation / PwCalculation --> label set (DatasetData) --> merge_datasets --> iteration's label set --\\
                                                                            merge_datasets --> DatasetData vN --> TrainCalculation --> PotentialData
                                                      DatasetData vN-1 --(link label `dataset`)--/    (parent_potential: warm start)

Dataset versions are the chain of ``dataset`` links (v1 is the initial set or the first labels);
everything else merged in is a label set, a labelling result rather than a version.

These functions walk it through AiiDA's links only (no attributes that a user could edit), so they
give the same answer on an imported archive as on the profile where the run happened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from aiida import orm

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData

__all__ = ("Lineage", "dataset_versions", "potential_lineage", "potentials_from", "validations_of")


@dataclasses.dataclass
class Lineage:
    """What taught a potential.

    Attributes
    ----------
    training_runs
        The training calculations, the potential's own and those of its warm-start parents.
    datasets
        The dataset versions the training runs read and the versions before them along the merge
        chain (the ``dataset`` input of each ``merge_datasets``), oldest first.
    label_sets
        The labelling results merged into those versions: each labelling job's labels and the
        per-iteration set that joins them. They are not versions.
    labelling_calculations
        The calculations that computed the labels (``LabelCalculation``, ``PwCalculation``).
    merges
        The ``merge_datasets`` calls.
    parent_models
        The models a training run was fine-tuned from (its ``parent_model`` input: a file the user
        brought, ``training.parent_model``); a parent made by an earlier training adds that lineage too.
    """

    potential: PotentialData
    training_runs: list[orm.CalcJobNode]
    datasets: list[DatasetData]
    labelling_calculations: list[orm.ProcessNode]
    merges: list[orm.CalcFunctionNode]
    label_sets: list[DatasetData] = dataclasses.field(default_factory=list)
    parent_models: list[PotentialData] = dataclasses.field(default_factory=list)

    def as_table(self) -> list[tuple[str, int, str, str]]:
        """Rows ``(kind, pk, label, ctime)`` oldest first, for printing."""

        def created(node):
            return node.ctime.isoformat(timespec="seconds")

        rows = [("training", n.pk, n.process_label or "", created(n)) for n in self.training_runs]
        rows += [("dataset", n.pk, f"v{n.version} ({n.n_frames} frames)", created(n)) for n in self.datasets]
        rows += [("labels", n.pk, _label_set_origin(n), created(n)) for n in self.label_sets]
        rows += [("labelling", n.pk, n.process_label or "", created(n)) for n in self.labelling_calculations]
        rows += [("parent model", n.pk, _parent_model_origin(n), created(n)) for n in self.parent_models]
        return sorted(rows, key=lambda row: (row[3], row[1]))

    def summary(self) -> str:
        """One line: how many training runs, dataset versions, label sets and labelling calculations."""
        versions = sorted(dataset.version for dataset in self.datasets)
        span = f" (v{versions[0]}-v{versions[-1]})" if len(versions) > 1 else ""
        parents = f", fine-tuned from {len(self.parent_models)} parent model(s)" if self.parent_models else ""
        return (
            f"{len(self.training_runs)} training run(s), {len(self.datasets)} dataset version(s){span}, "
            f"{len(self.label_sets)} label set(s) from {len(self.labelling_calculations)} "
            f"labelling calculation(s){parents}"
        )


def _label_set_origin(dataset: DatasetData) -> str:
    creator = dataset.creator
    origin = "" if creator is None else f" from {creator.process_label or 'process'} <{creator.pk}>"
    return f"{dataset.n_frames} frames{origin}"


def _parent_model_origin(potential: PotentialData) -> str:
    return f"{potential.model_backend} model, {potential.committee_size} member(s), sha256 {potential.sha256[:12]}"


def _incoming(node: orm.Node, link_type=None) -> list[orm.Node]:
    query = node.base.links.get_incoming(link_type=link_type) if link_type else node.base.links.get_incoming()
    return [triple.node for triple in query.all()]


def _label_sources(
    dataset: DatasetData,
) -> tuple[list[orm.ProcessNode], list[DatasetData], list[DatasetData], list[orm.ProcessNode]]:
    """Walk back from ``dataset`` through merges.

    Returns (labelling calculations, versions, label sets, merges). A version's ``merge_datasets``
    input ``dataset`` is the previous version; its other inputs, and everything merged into them,
    are label sets.
    """
    from aiida.common.links import LinkType

    calculations: dict[int, orm.ProcessNode] = {}
    versions: dict[int, DatasetData] = {}
    label_sets: dict[int, DatasetData] = {}
    merges: dict[int, orm.ProcessNode] = {}
    stack: list[tuple[DatasetData, bool]] = [(dataset, True)]
    while stack:
        node, is_version = stack.pop()
        if node.pk in versions or node.pk in label_sets:
            continue
        (versions if is_version else label_sets)[node.pk] = node
        creator = node.creator
        if creator is None:
            continue
        if creator.process_label == "merge_datasets":
            merges[creator.pk] = creator
            for triple in creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all():
                if isinstance(triple.node, DatasetData):
                    stack.append((triple.node, is_version and triple.link_label == "dataset"))
        elif isinstance(creator, orm.CalcJobNode):
            calculations[creator.pk] = creator
        else:
            # a calcfunction that turned a DFT calculation's outputs into labels: the DFT job is the labeller
            parents = [n.creator for n in _incoming(creator, LinkType.INPUT_CALC) if n.creator is not None]
            jobs = [parent for parent in parents if isinstance(parent, orm.CalcJobNode)]
            for job in jobs or [creator]:
                calculations[job.pk] = job
    return (
        list(calculations.values()),
        list(versions.values()),
        list(label_sets.values()),
        list(merges.values()),
    )


def potential_lineage(potential: PotentialData) -> Lineage:
    """Return every training run, dataset version, label set and labelling calculation behind ``potential``.

    Warm starts are followed: the lineage of the parent potential is part of the lineage; so is a
    parent model a training was fine-tuned from (``parent_models``). Dataset
    versions are counted along the merge chain only; the labels merged into them are label sets.
    """
    from aiida.common.links import LinkType

    training, datasets, label_sets, calculations, merges, parents = {}, {}, {}, {}, {}, {}
    stack = [potential]
    seen = set()
    while stack:
        current = stack.pop()
        if current.pk in seen:
            continue
        seen.add(current.pk)
        run = current.creator
        if run is None:
            continue
        training[run.pk] = run
        for triple in run.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all():
            node = triple.node
            if isinstance(node, PotentialData) and triple.link_label == "parent_model":
                parents[node.pk] = node
            if isinstance(node, DatasetData):
                found_calculations, found_versions, found_sets, found_merges = _label_sources(node)
                calculations.update((n.pk, n) for n in found_calculations)
                datasets.update((n.pk, n) for n in found_versions)
                label_sets.update((n.pk, n) for n in found_sets)
                merges.update((n.pk, n) for n in found_merges)
            elif isinstance(node, PotentialData):
                stack.append(node)

    def ordered(values: Iterable) -> list:
        return sorted(values, key=lambda node: (node.ctime, node.pk))

    label_sets = {pk: node for pk, node in label_sets.items() if pk not in datasets}
    return Lineage(
        potential,
        ordered(training.values()),
        ordered(datasets.values()),
        ordered(calculations.values()),
        ordered(merges.values()),
        ordered(label_sets.values()),
        ordered(parents.values()),
    )


def dataset_versions(dataset: DatasetData) -> list[DatasetData]:
    """Return the versions that led to ``dataset`` along its ``dataset`` links, oldest first."""
    from aiida.common.links import LinkType

    versions = [dataset]
    current = dataset
    while current.creator is not None and current.creator.process_label == "merge_datasets":
        parents = current.creator.base.links.get_incoming(
            link_type=LinkType.INPUT_CALC, link_label_filter="dataset"
        ).all()
        if not parents:
            break
        current = parents[0].node
        versions.append(current)
    return versions[::-1]


def potentials_from(node: orm.Node) -> list[PotentialData]:
    """Return every potential trained on data that came from ``node`` (a structure, a calculation, a dataset).

    Follows the graph forward: outputs of calculations, merges into later dataset versions, training
    runs, and warm starts from the potentials they made.
    """
    from aiida.common.links import LinkType

    potentials: dict[int, PotentialData] = {}
    stack = [node]
    seen = set()
    forward = (LinkType.CREATE, LinkType.INPUT_CALC, LinkType.INPUT_WORK, LinkType.CALL_CALC)
    while stack:
        current = stack.pop()
        if current.pk in seen:
            continue
        seen.add(current.pk)
        if isinstance(current, PotentialData):
            potentials[current.pk] = current
        if isinstance(current, orm.WorkflowNode):
            continue  # follow the calculations that do the work, not the bookkeeping of work chains
        for link_type in forward:
            for triple in current.base.links.get_outgoing(link_type=link_type).all():
                if isinstance(triple.node, orm.WorkflowNode):
                    continue
                stack.append(triple.node)
    return sorted(potentials.values(), key=lambda p: (p.ctime, p.pk))


def validations_of(run: orm.ProcessNode) -> list[orm.WorkChainNode]:
    """Return the ``ValidationWorkChain`` runs whose ``potential`` input is an output of ``run``, oldest first.

    ``run`` is typically an active-learning run: its ``potential`` output, the final committee.
    """
    query = orm.QueryBuilder()
    query.append(orm.ProcessNode, filters={"id": run.pk}, tag="run")
    query.append(PotentialData, with_incoming="run", tag="potential")
    query.append(
        orm.WorkChainNode,
        with_incoming="potential",
        edge_filters={"label": "potential"},
        filters={"attributes.process_label": "ValidationWorkChain"},
        project="*",
    )
    found = {node.pk: node for node in query.all(flat=True)}
    return sorted(found.values(), key=lambda node: (node.ctime, node.pk))
