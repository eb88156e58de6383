"""Metadynamics and path-integral walkers inside an ``ActiveLearningWorkChain`` iteration (EMT labels).

Each test runs one real iteration (initial labels, a tiny committee, exploration with a plain and a
special walker from the same start at the same temperature, selection, EMT labels, retraining) and
follows the provenance from the exploration's candidate pool through the selection to the final
dataset: the special walker's frames are explored, selected and labelled.

Both are claims about the science (a walker crosses a barrier that plain MD does not; the ring
polymer's frames reach the dataset), marked ``science`` and run by ``make science``; the code paths
they pass through are tested in ``make test`` (the explore executable's metadynamics and
path-integral walkers in ``tests/engine/test_explore_executable.py``, the work chain's exploration,
selection and labelling steps in ``tests/workflows/test_active_learning*.py``).
"""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from tests.calculations.conftest import TINY_TRAINING
from tests.workflows.test_active_learning import al_builder

A = 4.05  # Angstrom, fcc Al
HOP = A / np.sqrt(2)  # nearest-neighbour distance, 2.86 Angstrom


def vacancy_cell() -> tuple[Atoms, tuple[int, int], np.ndarray]:
    """A 3x3x1 cubic Al cell without the site at (a, a, 0): 35 atoms.

    Returns the cell, the atoms A and B on either side of the vacancy along [110] (5.73 Angstrom
    apart; 2.86 Angstrom once either hops into the vacancy) and the vacancy site.
    """
    atoms = bulk("Al", "fcc", a=A, cubic=True).repeat((3, 3, 1))
    site = np.array([A, A, 0.0])
    lengths = atoms.cell.lengths()

    def nearest(point):
        offsets = atoms.positions - point
        offsets -= np.round(offsets / lengths) * lengths
        return int(np.argmin(np.linalg.norm(offsets, axis=1)))

    vacancy = nearest(site)
    a, b = (nearest(site + sign * np.array([A / 2, A / 2, 0.0])) for sign in (-1, 1))
    del atoms[vacancy]
    return atoms, (a - (a > vacancy), b - (b > vacancy)), site


def _mic(atoms: Atoms, vector: np.ndarray) -> float:
    lengths = atoms.cell.lengths()
    return float(np.linalg.norm(vector - np.round(vector / lengths) * lengths))


def hopped(atoms: Atoms, pair: tuple[int, int], start: Atoms, site: np.ndarray) -> bool:
    """Whether A or B is closer to the vacancy site than to its own lattice site (past the saddle)."""
    return any(
        _mic(atoms, atoms.positions[i] - site) < _mic(atoms, atoms.positions[i] - start.positions[i])
        for i in pair
    )


def _iteration(node):
    """The pool (atoms, score columns), the selected pool indices and the labelled dataset of iteration 1."""
    outgoing = node.base.links.get_outgoing()
    exploration = outgoing.get_node_by_label("explore_1")
    selection = outgoing.get_node_by_label("select_1")
    pool = exploration.outputs.candidates
    picked = [entry["pool_index"] for entry in selection.outputs.selection["selected"]]
    return pool.get_atoms(), pool.get_scores(), picked, exploration


def _label_of(dataset_atoms: list[Atoms], frame: Atoms) -> Atoms:
    """The dataset frame at ``frame``'s positions (the labelled copy of a selected frame)."""
    matches = [
        atoms
        for atoms in dataset_atoms
        if len(atoms) == len(frame) and np.allclose(atoms.positions, frame.positions, atol=1e-6)
    ]
    assert len(matches) == 1, "a selected frame is not in the final dataset"
    return matches[0]


def _assert_emt_labels(labelled: Atoms, frame: Atoms) -> None:
    reference = frame.copy()
    reference.calc = EMT()
    assert labelled.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(labelled.get_forces(), reference.get_forces(), atol=1e-6)


def _overrides(md: dict, temperature: float, budget: int) -> dict:
    return {
        "initial": {"copies_per_structure": 6, "rattle": 0.05, "strain": 0.02},
        "exploration": {"md": md, "schedule": [{"temperatures": [temperature]}]},
        # lo 0: every checked frame is in the pool; hi and the break far away: no walker stops early
        "trust": {"lo": 0.0, "hi": 50.0},
        "selection": {"budget": budget},
        "convergence": {"max_iterations": 1, "accurate_fraction": 0.99, "patience": 1},
        "training": dict(TINY_TRAINING, max_epochs=30),
        "warm_start_parameters": {"lr": 0.001, "max_epochs": 2},
    }


@pytest.mark.science
def test_metadynamics_walker_hops_and_its_crossing_frames_are_labelled(engine_code):
    """A vacancy hop in Al: the metadynamics walker crosses, the plain one at 300 K does not (same
    steps, same committee); the crossing frames reach the selection and the dataset with EMT labels."""
    start, pair, site = vacancy_cell()
    md = {
        "steps": 500,
        "timestep": 2.0,
        "check_interval": 25,
        "walkers": 2,
        "break_threshold": 100.0,
        "metadynamics": {
            "cv": {"atoms": list(pair)},
            "height": 0.1,
            "width": 0.15,
            "pace": 10,
            "bias_factor": 15.0,
            "walkers": [1],
        },
    }
    results, node = run_get_node(al_builder(engine_code, [start], **_overrides(md, 300.0, 60)))
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status
    images, scores, picked, exploration = _iteration(node)
    walkers = scores["walker"].astype(int)
    cv = scores["collective_variable"]
    # the collective variable is recorded on the metadynamics walker's frames only, and is the A-B distance
    assert np.isnan(cv[walkers == 0]).all() and np.isfinite(cv[walkers == 1]).all()
    for image, value, walker in zip(images, cv, walkers, strict=True):
        if walker == 1:
            assert value == pytest.approx(
                _mic(image, image.positions[pair[1]] - image.positions[pair[0]]), abs=1e-5
            )
    crossing = [i for i, image in enumerate(images) if hopped(image, pair, start, site)]
    # plain MD at the same temperature, for the same steps on the same committee, stays in its basin
    assert crossing and all(walkers[i] == 1 for i in crossing), (
        "no hop by the metadynamics walker, or one by plain MD"
    )
    assert (
        min(cv[crossing]) < 1.5 * HOP
    )  # the A-B distance past the saddle (4.30 A there, 5.73 A at the start)
    summary = exploration.outputs.summary.get_dict()
    assert summary["n_candidates"] == len(images)
    # selected and labelled: every crossing frame is in the final dataset with its EMT energy and forces
    assert set(crossing) <= set(picked)
    dataset = results["dataset"].get_frames().to_atoms()
    for index in crossing:
        _assert_emt_labels(_label_of(dataset, images[index]), images[index])
    (record,) = results["history"]["iterations"]
    assert record["n_labelled"] == len(picked) and results["dataset"].n_frames == 7 + len(picked)


def hydrogen_in_aluminium() -> Atoms:
    """Eight Al atoms (2x1x1 cubic cells) and one H on the octahedral site at (a/2, a/2, a/2): 9 atoms."""
    atoms = bulk("Al", "fcc", a=A, cubic=True).repeat((2, 1, 1))
    atoms.append("H")
    atoms.positions[-1] = [A / 2, A / 2, A / 2]
    return atoms


@pytest.mark.science
def test_path_integral_walker_beads_are_selected_and_labelled(engine_code):
    """H in Al: walker 1 runs ring-polymer MD with 8 beads inside the iteration, its bead frames are
    selected and labelled by EMT; walker 0 (classical) has no bead."""
    start = hydrogen_in_aluminium()
    md = {
        "steps": 100,
        "timestep": 1.0,
        "check_interval": 10,
        "walkers": 2,
        "break_threshold": 100.0,
        "path_integral": {"beads": 8, "walkers": [1]},
    }
    results, node = run_get_node(al_builder(engine_code, [start], **_overrides(md, 300.0, 30)))
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status
    images, scores, picked, exploration = _iteration(node)
    (job,) = [
        link.node
        for link in exploration.base.links.get_outgoing().all()
        if isinstance(link.node, orm.CalcJobNode)
    ]
    assert job.outputs.summary["parameters"]["path_integral"]["beads"] == 8
    walkers, beads = scores["walker"].astype(int), scores["bead"].astype(int)
    assert (beads[walkers == 0] == -1).all()
    assert ((beads[walkers == 1] >= 0) & (beads[walkers == 1] < 8)).all()
    # the tiny committee of 7 frames may stop the ring polymer early (measured: after its first
    # check); what must hold is that its bead frames reach the pool and are selected and labelled
    bead_frames = [i for i in picked if walkers[i] == 1]
    assert (walkers == 1).sum() >= 2, job.outputs.summary.get_dict()
    assert bead_frames, (picked, walkers.tolist())
    dataset = results["dataset"].get_frames().to_atoms()
    for index in bead_frames:
        assert images[index].get_chemical_symbols().count("H") == 1
        _assert_emt_labels(_label_of(dataset, images[index]), images[index])
