"""Provenance queries on the session's shared run: what came from a labelling job, dataset versions."""

from aiida_mlip.queries import dataset_versions, potentials_from


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


def test_dataset_versions_oldest_first(finished_run):
    initial = finished_run.called("label_initial").outputs.dataset
    final = finished_run.node.outputs.dataset
    versions = dataset_versions(final)
    assert [v.uuid for v in versions] == [initial.uuid, final.uuid]
    assert [v.version for v in versions] == [1, 2]
    added = finished_run.called("label_1").outputs.dataset.n_frames
    assert final.n_frames == initial.n_frames + added
    assert [v.uuid for v in dataset_versions(initial)] == [initial.uuid]
