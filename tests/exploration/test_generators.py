"""Structure generators: atom counts, vacuum, Miller orientation, composition, strain; their settings."""

import numpy as np
import pytest
from ase.build import bulk

from aiida_mlip.exploration.generator_settings import GenerateSettings
from aiida_mlip.exploration.generators import (
    generate,
    interstitials,
    strained_cells,
    substitutions,
    surface_slabs,
    vacancies,
)
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
