"""``exploration.generate`` in ``ActiveLearningWorkChain``: generated structures are nodes linked to their parent."""

import pytest
from aiida import orm
from ase.build import bulk

from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain
from tests.workflows.test_active_learning import OVERRIDES, al_builder

STRUCTURES = [bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1)), bulk("Al", "fcc", a=4.05, cubic=True)]


def _exploration(generate):
    return {**OVERRIDES["exploration"], "generate": generate}


def test_generated_structures_are_nodes_linked_to_their_parent(generate_workchain, engine_code):
    generate = {
        "surfaces": {"miller": [[1, 1, 1]], "thickness": 5.0, "vacuum": 6.0, "iterations": [2]},
        "vacancies": {"structures": 2, "parents": [0]},
    }
    builder = al_builder(engine_code, STRUCTURES, exploration=_exploration(generate))
    process = generate_workchain(ActiveLearningWorkChain, builder)
    process.setup()
    process.ctx.iteration = 1
    first = process._exploration_structures()
    assert [len(atoms) for atoms in first.get_atoms()] == [8, 4, 7, 7]  # two vacancy cells of structure 0
    joined = first.creator  # add_structures: the input set and the generated structures in
    assert joined.process_label == "add_structures" and joined.inputs.structures.pk == builder.structures.pk
    made = [link.node for link in joined.base.links.get_incoming().all() if link.link_label != "structures"]
    assert len(made) == 2
    for node in made:
        assert isinstance(node, orm.StructureData) and node.label == "vacancy" and len(node.sites) == 7
        generated = node.creator
        assert generated.process_label == "generate_structures"
        parent = generated.inputs.structure  # structure 0 of the input set, through structure_of
        assert len(parent.sites) == 8 and parent.creator.inputs.structures.pk == builder.structures.pk
        assert generated.inputs.settings.get_dict()["vacancies"]["structures"] == 2
        (link,) = [x for x in generated.base.links.get_outgoing().all() if x.node.pk == node.pk]
        assert generated.outputs.details[link.link_label]["generator"] == "vacancy"
    process.ctx.iteration = 2  # the vacancy cells stay; the slabs of both structures join them
    second = process._exploration_structures()
    assert second.n_frames == 6 and second.creator.inputs.structures.pk == first.pk
    assert [len(atoms) for atoms in second.get_atoms()[4:]] == [
        64,
        64,
    ]  # (111) slabs: 4 x 4 atoms (8 A wide), 4 layers (5 A)
    slabs = [
        link.node
        for link in second.creator.base.links.get_incoming().all()
        if link.link_label != "structures"
    ]
    assert {node.label for node in slabs} == {"surface [1, 1, 1]"}
    # iteration 1: 2 given + 2 generated structures, within max_share 0.5: the set itself is explored
    process.ctx.iteration = 1
    assert process._walker_structures(first).pk == first.pk
    # iteration 2: 4 generated would take 4 of 6 walkers; max_share 0.5 explores 2 of them, in turn
    process.ctx.iteration = 2
    explored = process._walker_structures(second)
    assert explored.creator.process_label == "take_structures"
    assert explored.creator.inputs.structures.pk == second.pk
    assert explored.creator.inputs.indices.get_list() == [0, 1, 4, 5]  # the given ones, then the slabs' turn
    assert [len(atoms) for atoms in explored.get_atoms()] == [8, 4, 64, 64]
    process.ctx.iteration = 3  # nothing due: the same set
    assert process._exploration_structures().pk == second.pk


@pytest.mark.parametrize(
    ("generate", "message"),
    [
        ({"surfaces": {"miller": [[0, 0, 0]]}}, "all zeros"),
        ({"surfaces": {"thickness": 2.0}}, "thickness`: 2.0 A is under the committee's cutoff"),
        ({"surfaces": {"vacuum": 2.0}}, "vacuum`: 2.0 A is under the committee's cutoff"),
        ({"substitutions": {"composition": {"Al": 0.5, "Cu": 0.5}}}, r"puts in \['Cu'\], which no start"),
        ({"random": {"composition": {"Al": 0.5, "Cu": 0.5}}}, r"puts in \['Cu'\], which no start"),
        ({"random": {"fmax": 0.0}}, r"random.fmax`: Input should be greater than 0"),
        ({"vacancies": {"parents": [5]}}, r"parents`: \[5\] beyond the 2 start"),
    ],
)
def test_bad_generation_is_refused_at_submission(generate_workchain, engine_code, generate, message):
    builder = al_builder(engine_code, STRUCTURES)
    exploration = builder.exploration.get_dict()
    builder.exploration = orm.Dict({**exploration, "generate": generate})  # past the protocol's own check
    with pytest.raises(ValueError, match=message):
        generate_workchain(ActiveLearningWorkChain, builder)


def test_collective_variable_on_missing_atoms_is_refused_at_submission(generate_workchain, engine_code):
    builder = al_builder(engine_code, STRUCTURES)
    exploration = builder.exploration.get_dict()
    exploration["md"]["metadynamics"] = {"cv": {"atoms": [0, 5]}}  # structure 1 has 4 atoms
    builder.exploration = orm.Dict(exploration)
    with pytest.raises(ValueError, match=r"atom\(s\) \[5\] do not exist in start structure 1 \(4 atoms"):
        generate_workchain(ActiveLearningWorkChain, builder)


def test_random_packings_are_relaxed_with_the_iterations_committee(
    generate_workchain, engine_code, tiny_potential
):
    """Kind ``random`` at iteration 2: packings of structure 1 relaxed with the committee the work chain
    holds then, which is an input of the generation; the other kinds' generations get no potential."""
    generate = {
        "vacancies": {"parents": [0]},
        "random": {"structures": 2, "atoms": 4, "steps": 30, "fmax": 0.05, "parents": [1], "iterations": [2]},
    }
    builder = al_builder(engine_code, STRUCTURES, exploration=_exploration(generate))
    process = generate_workchain(ActiveLearningWorkChain, builder)
    process.setup()
    process.ctx.potential = tiny_potential  # the committee of the iteration, as after its training
    process.ctx.iteration = 1
    first = process._exploration_structures()
    (vacancy,) = [
        link.node for link in first.creator.base.links.get_incoming().all() if link.link_label != "structures"
    ]
    assert "potential" not in vacancy.creator.inputs  # no relaxation, no potential
    process.ctx.iteration = 2
    second = process._exploration_structures()
    assert second.n_frames == first.n_frames + 2
    made = [
        link.node
        for link in second.creator.base.links.get_incoming().all()
        if link.link_label != "structures"
    ]
    assert len(made) == 2
    (pk,) = {node.creator.pk for node in made}  # one generation for the parent
    generation = orm.load_node(pk)
    assert (
        generation.process_label == "generate_structures"
        and generation.inputs.potential.pk == tiny_potential.pk
    )
    assert generation.inputs.parent.value == 1
    details = generation.outputs.details.get_dict()
    for node in made:
        assert node.label == "random Al4" and len(node.sites) == 4
        (link,) = [x for x in generation.base.links.get_outgoing().all() if x.node.pk == node.pk]
        record = details[link.link_label]
        assert record["generator"] == "random" and record["composition"] == {"Al": 4}
        relaxation = record["relaxation"]
        assert 0 < relaxation["steps"] <= 30
        assert relaxation["converged"] == (relaxation["max_force"] < 0.05)
        assert relaxation["energy_per_atom"] < relaxation["start_energy_per_atom"]
        assert relaxation["max_force_deviation"] > 0  # the committee's spread at the relaxed packing, eV/A
        assert node.get_cell_volume() / 4 == pytest.approx(16.6075, rel=1e-4)  # structure 1's volume per atom
