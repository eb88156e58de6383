"""Structure generators: atom counts, vacuum, Miller orientation, composition, strain, random packings
and their relaxation; their settings."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.morse import MorsePotential
from ase.data import atomic_numbers, covalent_radii

from aiida_mlip.exploration.generator_settings import GenerateSettings
from aiida_mlip.exploration.generators import (
    generate,
    interstitials,
    random_structures,
    strained_cells,
    substitutions,
    surface_slabs,
    vacancies,
)
from aiida_mlip.exploration.random_search import MinimumSeparation, pair_repulsion
from aiida_mlip.settings import SettingsError

A = 4.05  # Angstrom, EMT-ish aluminium


@pytest.fixture
def cell():
    return bulk("Al", "fcc", a=A, cubic=True).repeat(2)  # 32 atoms


def _block(kind, **values):
    return getattr(GenerateSettings.from_mapping({kind: values}), kind)


@pytest.mark.parametrize(("miller", "spacing"), [((1, 1, 1), A / np.sqrt(3)), ((1, 0, 0), A / 2)])
def test_surface_slab_orientation_thickness_vacuum(cell, miller, spacing):
    (slab,) = surface_slabs(cell, _block("surfaces", miller=[miller], thickness=6.0, vacuum=9.0))
    assert slab.info["generator"] == "surface" and slab.info["miller"] == list(miller)
    z = slab.positions[:, 2]
    span = np.ptp(z)
    assert span >= 6.0
    assert slab.cell[2, :2] == pytest.approx([0, 0], abs=1e-8)  # normal along z
    assert slab.cell[2, 2] - span == pytest.approx(9.0, abs=1e-6)  # exactly the vacuum asked for
    layers = np.unique(z.round(3))
    assert np.diff(layers) == pytest.approx(spacing, abs=1e-3)  # the (hkl) interplanar spacing of fcc
    # the in-plane area per atom of one layer is that of the (hkl) plane: 1 / (spacing * density)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    assert area / (len(slab) / len(layers)) == pytest.approx(A**3 / 4 / spacing, rel=1e-6)
    assert min(np.linalg.norm(slab.cell[:2], axis=1)) >= 8.0 - 1e-6


def test_vacancies_interstitials_substitutions(cell):
    rng = np.random.default_rng(0)
    made = vacancies(cell, _block("vacancies", count=2, structures=3), rng)
    assert [len(atoms) for atoms in made] == [30, 30, 30]
    assert len({tuple(atoms.info["removed"]) for atoms in made}) == 3
    (inserted,) = interstitials(cell, _block("interstitials", element="Cu"), rng)
    assert len(inserted) == 33 and inserted.get_chemical_symbols()[-1] == "Cu"
    # the most open sites of fcc are the octahedral ones, a/2 from their neighbours
    assert inserted.get_distances(32, range(32), mic=True).min() == pytest.approx(A / 2, abs=0.25)
    alloys = substitutions(
        cell, _block("substitutions", composition={"Al": 0.7, "Cu": 0.3}, structures=2), rng
    )
    for alloy in alloys:
        assert alloy.info["composition"] == {"Al": 22, "Cu": 10}  # 0.3 * 32 = 9.6 rounds to 10
        assert sorted(alloy.get_chemical_symbols()).count("Cu") == 10
        assert np.allclose(alloy.positions, cell.positions)
    assert alloys[0].get_chemical_symbols() != alloys[1].get_chemical_symbols()


def test_strain_tensor_is_applied(cell):
    (strained,) = strained_cells(cell, _block("strains", max_strain=0.04), np.random.default_rng(1))
    eps = np.array(strained.info["strain"])
    assert eps == pytest.approx(eps.T) and np.abs(eps).max() <= 0.04 and np.abs(eps[0, 1]) > 0
    assert strained.cell.array == pytest.approx(cell.cell.array @ (np.eye(3) + eps))
    assert strained.get_scaled_positions() == pytest.approx(cell.get_scaled_positions())
    (normal,) = strained_cells(cell, _block("strains", shear=False), np.random.default_rng(1))
    assert np.count_nonzero(np.array(normal.info["strain"]) - np.diag(np.diag(normal.info["strain"]))) == 0


def test_generate_runs_the_kinds_due(cell):
    settings = GenerateSettings.from_mapping(
        {"vacancies": {"iterations": [2, 3]}, "strains": {"structures": 2, "parents": [1]}}
    )
    vacancy = cell.copy()
    del vacancy[0]
    assert [a.info["generator"] for a in generate([cell, vacancy], settings, 1)] == ["strain", "strain"]
    second = generate([cell, vacancy], settings, 2)
    assert [(a.info["generator"], a.info["parent"]) for a in second] == [("vacancy", 0), ("vacancy", 1)]
    assert [len(a) for a in second] == [31, 30]
    assert generate({1: vacancy}, settings, 2)[0].positions == pytest.approx(
        second[1].positions
    )  # per parent
    assert settings.iterations == [1, 2, 3]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"surfaces": {"miller": [[0, 0, 0]]}}, "all zeros"),
        ({"surfaces": {"miller": [[1, 1]]}}, "surfaces.miller"),
        ({"surfaces": {"iterations": []}}, "at least one iteration"),
        ({"substitutions": {"composition": {"Al": 0.5, "Cu": 0.4}}}, "add up to 1"),
        ({"substitutions": {"composition": {"Al": 0.5, "Qq": 0.5}}}, "'Qq' is not a chemical symbol"),
        ({"interstitials": {"element": "Xy"}}, "not a chemical symbol"),
        ({"strains": {"max_strain": 0.7}}, "within (0, 0.5)"),
        ({"vacancies": {"cout": 1}}, "did you mean `count`"),
        ({"vacancy": {}}, "did you mean `vacancies`"),
        ({"max_share": 0.0}, "max_share`: Input should be greater than 0"),
        ({"max_share": 1.5}, "max_share`: Input should be less than or equal to 1"),
        ({"random": {"structures": 0}}, "random.structures`: Input should be greater than 0"),
        ({"random": {"min_distance": 0.0}}, "random.min_distance`: Input should be greater than 0"),
        ({"random": {"volume_per_atom": -3.0}}, "random.volume_per_atom`: Input should be greater than 0"),
        ({"random": {"steps": -1}}, "random.steps`: Input should be greater than or equal to 0"),
        ({"random": {"fmax": 0.0}}, "random.fmax`: Input should be greater than 0"),
        ({"random": {"composition": {"Al": 0.5, "Qq": 0.5}}}, "'Qq' is not a chemical symbol"),
        ({"random": {"composition": {"Al": 0.5}}}, "add up to 1"),
        ({"random": {"radius_factor": 0.0}}, "random.radius_factor`: Input should be greater than 0"),
        ({"random": {"atoms": 0}}, "random.atoms`: Input should be greater than 0"),
        ({"random": {"repulsion": -1.0}}, "random.repulsion`: Input should be greater than or equal to 0"),
    ],
)
def test_bad_settings_are_refused(values, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GenerateSettings.from_mapping(values)


def test_cutoff_and_parents_checks():
    settings = GenerateSettings.from_mapping({"surfaces": {"thickness": 4.0, "vacuum": 6.0, "parents": [2]}})
    with pytest.raises(SettingsError, match="thickness`: 4.0 A is under the committee's cutoff"):
        settings.check(cutoff=5.0)
    settings.surfaces.thickness = 7.0
    with pytest.raises(SettingsError, match="vacuum`: 6.0 A is under the committee's cutoff"):
        settings.check(cutoff=6.5)
    with pytest.raises(SettingsError, match=r"parents`: \[2\] beyond the 2 start"):
        settings.check(n_structures=2)
    settings.check(cutoff=6.0, n_structures=3)


def test_generated_structures_take_at_most_max_share_of_the_walkers():
    """8 generated structures beside 2 given ones (one walker each): half the walkers at most, in turn."""
    settings = GenerateSettings.from_mapping({"vacancies": {}})
    assert settings.max_share == 0.5
    turns = [settings.explored(8, 2, 1, iteration) for iteration in range(1, 6)]
    assert turns == [[0, 1], [2, 3], [4, 5], [6, 7], [0, 1]]
    # the AiiDA-free loop: the given structures share 2 walkers, each generated one runs 2
    assert settings.explored(4, 2, 2, 1) == [0] and settings.explored(4, 2, 2, 2) == [1]
    assert settings.explored(3, 2, 1, 2) == [0, 2]  # the window wraps around
    assert settings.explored(1, 2, 1, 1) == [0] and settings.explored(0, 2, 1, 1) == []
    assert GenerateSettings.from_mapping({"max_share": 1.0}).explored(8, 2, 1, 3) == list(range(8))
    assert GenerateSettings.from_mapping({"max_share": 0.75}).explored(8, 2, 1, 1) == [0, 1, 2, 3, 4, 5]
    assert GenerateSettings.from_mapping({"max_share": 0.1}).explored(8, 1, 1, 2) == [1]  # at least one


def _pair_distances_ok(atoms, factor=0.7):
    """Every pair (periodic images included) at least ``factor`` times its summed covalent radii apart."""
    radii = np.array([covalent_radii[atomic_numbers[s]] for s in atoms.get_chemical_symbols()])
    distances = atoms.get_all_distances(mic=True)
    least = factor * (radii[:, None] + radii[None, :])
    off = ~np.eye(len(atoms), dtype=bool)
    return bool((distances[off] >= least[off] - 1e-9).all()), float(distances[off].min())


def test_random_packings_respect_distance_composition_and_volume(cell):
    """Unrelaxed packings (steps 0): the composition, the volume and the hard-sphere distances asked for."""
    block = _block(
        "random",
        structures=5,
        composition={"Al": 0.7, "Cu": 0.3},
        atoms=10,
        volume_per_atom=14.0,
        radius_factor=0.7,
    )
    block.steps = 0
    packings = random_structures(cell, block, np.random.default_rng(3))
    for atoms in packings:
        assert atoms.info["generator"] == "random" and "relaxation" not in atoms.info
        assert atoms.info["composition"] == {"Al": 7, "Cu": 3}
        assert sorted(atoms.get_chemical_symbols()) == ["Al"] * 7 + ["Cu"] * 3
        assert atoms.get_volume() / 10 == pytest.approx(14.0, rel=1e-9) and atoms.pbc.all()
        ok, shortest = _pair_distances_ok(atoms)
        assert ok and shortest >= 0.7 * 2 * covalent_radii[13] - 1e-9  # 1.694 A for Al-Al
        widths = atoms.cell.volume / np.linalg.norm(
            np.cross(atoms.cell[[1, 2, 0]], atoms.cell[[2, 0, 1]]), axis=1
        )
        assert widths.max() <= 2.0 * widths.min() + 1e-9  # max_aspect
    assert len({tuple(a.cell.cellpar().round(6)) for a in packings}) == 5  # a new random cell each
    # the parent's composition, atom count and volume per atom by default; an explicit least distance
    (default,) = random_structures(cell, _block("random", structures=1, steps=0), np.random.default_rng(0))
    assert len(default) == 32 and set(default.get_chemical_symbols()) == {"Al"}
    assert default.get_volume() == pytest.approx(cell.get_volume(), rel=1e-9)
    wide = random_structures(
        cell, _block("random", structures=3, steps=0, atoms=8, min_distance=2.2), np.random.default_rng(1)
    )
    for atoms in wide:
        distances = atoms.get_all_distances(mic=True)
        assert distances[~np.eye(8, dtype=bool)].min() >= 2.2 and atoms.info["min_distance"] == 2.2


def test_random_packings_are_reproducible_from_the_seed(cell):
    settings = GenerateSettings.from_mapping(
        {"seed": 4, "random": {"structures": 2, "atoms": 8, "steps": 0, "iterations": [2, 3]}}
    )
    first, again = generate([cell], settings, 2), generate([cell], settings, 2)
    assert len(first) == 2
    for one, two in zip(first, again, strict=True):
        assert one.positions == pytest.approx(two.positions, abs=0) and one.cell.array == pytest.approx(
            two.cell.array
        )
    assert first[0].positions.shape == first[1].positions.shape and not np.allclose(
        first[0].cell, first[1].cell
    )
    other = generate(
        [cell],
        GenerateSettings.from_mapping({"seed": 5, "random": {"atoms": 8, "steps": 0, "iterations": [2]}}),
        2,
    )
    assert not np.allclose(other[0].cell.array, first[0].cell.array)  # another seed, another search
    assert generate({0: cell}, settings, 3)[0].info["iteration"] == 3


def test_random_packings_relax_with_the_calculator(cell):
    """EMT as the committee's stand-in: the energy drops, the forces end below fmax or the steps run out."""
    block = _block("random", structures=3, atoms=8, steps=300, fmax=0.05)
    for atoms in random_structures(cell, block, np.random.default_rng(7), EMT()):
        record = atoms.info["relaxation"]
        assert record["converged"] and not record["exploded"] and 0 < record["steps"] < 300
        assert record["energy_per_atom"] < record["start_energy_per_atom"] - 0.3  # eV/atom
        assert record["max_force"] < 0.05 and record["max_force_deviation"] is None  # EMT has no committee
        check = atoms.copy()
        check.calc = EMT()
        assert check.get_potential_energy() / 8 == pytest.approx(record["energy_per_atom"], abs=1e-7)
        assert np.linalg.norm(check.get_forces(), axis=1).max() < 0.05
        assert _pair_distances_ok(atoms, 0.5)[0] and atoms.calc is None
    capped = _block("random", structures=1, atoms=8, steps=3, fmax=0.01)
    (atoms,) = random_structures(cell, capped, np.random.default_rng(7), EMT())
    record = atoms.info["relaxation"]
    assert record["steps"] == 3 and not record["converged"] and record["max_force"] > 0.01
    # the cell relaxes too: EMT Al at zero pressure is denser than 20 A^3/atom
    loose = _block("random", structures=1, atoms=4, volume_per_atom=20.0, steps=400, fmax=0.05, cell=True)
    (atoms,) = random_structures(cell, loose, np.random.default_rng(2), EMT())
    assert atoms.info["relaxation"]["volume_per_atom"] < 18.5 and atoms.info["cell_relaxed"]
    assert atoms.get_volume() / 4 == pytest.approx(atoms.info["relaxation"]["volume_per_atom"], abs=1e-5)


def test_an_exploded_relaxation_is_kept_and_flagged(cell):
    """A pair potential whose minimum is at 0.3 A pulls the atoms together: the relaxation is stopped
    before any pair is closer than half the least distance, and the structure is kept, flagged."""
    collapse = MorsePotential(epsilon=1.0, r0=0.3, rho0=1.0, rcut1=10.0, rcut2=13.0)  # cutoffs: units of r0
    block = _block("random", structures=1, atoms=8, steps=200, fmax=0.01, repulsion=0.0, radius_factor=0.7)
    (atoms,) = random_structures(cell, block, np.random.default_rng(1), collapse)
    record = atoms.info["relaxation"]
    assert (
        record["exploded"]
        and not record["repulsion_active"]
        and not record["converged"]
        and record["steps"] < 200
    )
    distances = atoms.get_all_distances(mic=True)[~np.eye(8, dtype=bool)]
    assert 0.5 * atoms.info["min_distance"] <= distances.min() < atoms.info["min_distance"]  # pulled in, kept


def test_random_search_refuses_what_it_cannot_do(cell):
    with pytest.raises(ValueError, match="relaxed with the committee: give a calculator"):
        random_structures(cell, _block("random"), np.random.default_rng(0))
    tight = _block("random", atoms=8, volume_per_atom=1.0, steps=0)  # 1 A^3 per atom, 2.2 A apart
    with pytest.raises(ValueError, match="could not pack 8 atoms 2.18 Angstrom or more apart"):
        random_structures(cell, tight, np.random.default_rng(0))
    assert GenerateSettings.from_mapping({"random": {"composition": {"Al": 0.5, "Cu": 0.5}}}).elements == {
        "Al",
        "Cu",
    }


def test_the_minimum_separation_repulsion_is_the_gradient_of_its_energy():
    """Forces and stress of the soft hard core are minus the finite-difference derivatives of its energy."""
    rng = np.random.default_rng(5)
    atoms = bulk("Al", "fcc", a=3.0, cubic=True)  # 2.12 A neighbours, well inside 2.5 A
    atoms.cell = atoms.cell.array + rng.normal(0, 0.1, (3, 3))
    atoms.positions += rng.normal(0, 0.15, atoms.positions.shape)
    least = np.full((4, 4), 2.5)
    least[0, 1] = least[1, 0] = 2.7  # a pair of its own
    energy, forces, stress = pair_repulsion(atoms, least, 20.0)
    assert energy > 1.0
    step = 1e-5
    numeric = np.zeros_like(forces)
    for i, a in np.ndindex(*forces.shape):
        moved = [atoms.copy(), atoms.copy()]
        moved[0].positions[i, a] += step
        moved[1].positions[i, a] -= step
        numeric[i, a] = -(
            pair_repulsion(moved[0], least, 20.0)[0] - pair_repulsion(moved[1], least, 20.0)[0]
        ) / (2 * step)
    assert forces == pytest.approx(numeric, abs=1e-6)
    assert forces.sum(axis=0) == pytest.approx([0, 0, 0], abs=1e-10)
    strained = np.zeros(6)
    for v, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * step / 2
            strain[b, a] += sign * step / 2
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            energies.append(pair_repulsion(moved, least, 20.0)[0])
        strained[v] = (energies[0] - energies[1]) / (2 * step) / atoms.get_volume()
    assert stress == pytest.approx(strained, abs=1e-6)
    # the wrapper adds them to the wrapped calculator's
    atoms.calc = MinimumSeparation(EMT(), least, 20.0)
    alone = atoms.copy()
    alone.calc = EMT()
    assert atoms.get_potential_energy() == pytest.approx(alone.get_potential_energy() + energy, abs=1e-9)
    assert atoms.get_forces() == pytest.approx(alone.get_forces() + forces, abs=1e-9)
    assert atoms.get_stress() == pytest.approx(alone.get_stress() + stress, abs=1e-9)
    assert atoms.calc.results["repulsion_energy"] == pytest.approx(energy)
    assert pair_repulsion(atoms, least, 0.0)[0] == 0.0


def test_the_repulsion_stops_a_collapse(cell):
    """The collapsing Morse pair of the test above, with the soft hard core (the default stiffness and
    a soft one): all 200 steps run, nothing explodes, the atoms are pulled into contact, no pair
    comes under 0.9 of the least distance."""
    collapse = MorsePotential(epsilon=1.0, r0=0.3, rho0=1.0, rcut1=10.0, rcut2=13.0)
    for repulsion in ({}, {"repulsion": 50.0}):
        block = _block("random", structures=1, atoms=8, steps=200, fmax=0.01, radius_factor=0.7, **repulsion)
        (atoms,) = random_structures(cell, block, np.random.default_rng(1), collapse)
        record = atoms.info["relaxation"]
        assert not record["exploded"] and record["steps"] == 200
        assert record["energy_per_atom"] < record["start_energy_per_atom"] - 1e-3
        assert 0 <= record["repulsion_energy"] < 1e-3
        distances = atoms.get_all_distances(mic=True)[~np.eye(8, dtype=bool)]
        assert 0.9 * atoms.info["min_distance"] <= distances.min() < 1.01 * atoms.info["min_distance"]
        assert record["repulsion_active"] == (distances.min() < atoms.info["min_distance"])
    assert record["repulsion_active"]  # the soft core is pressed in
