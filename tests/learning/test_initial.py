"""Initial structures: the given ones plus rattled and strained copies, reproducible from the seed."""

import numpy as np
import pytest
from ase.build import bulk

from aiida_mlip.learning.initial import InitialSettings, initial_structures
from aiida_mlip.settings import SettingsError


def structures():
    return [bulk("Al", "fcc", a=4.05, cubic=True), bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))]


def test_copies_follow_the_settings():
    originals = structures()
    before = [atoms.positions.copy() for atoms in originals]
    settings = InitialSettings(copies_per_structure=5, rattle=0.1, strain=0.04, seed=3)
    images = initial_structures(originals, settings)

    assert len(images) == 2 * 6
    assert [atoms.info["config_type"] for atoms in images[:7]] == ["initial_0"] + [
        "initial_0_rattled"
    ] * 5 + ["initial_1"]
    np.testing.assert_array_equal(images[0].positions, originals[0].positions)
    for atoms, positions in zip(originals, before, strict=True):  # inputs untouched
        np.testing.assert_array_equal(atoms.positions, positions)
    assert all(atoms.calc is None for atoms in images)
    assert images[7].get_chemical_formula() == "Cu8"

    # strain: symmetric, components within the bound; rattle: amplitudes grow from a third to the full value
    for number, copy in enumerate(images[1:6]):
        scale = (1 + 2 * number / 4) / 3
        deformation = np.linalg.solve(originals[0].cell.array, copy.cell.array)
        strain = deformation - np.eye(3)
        np.testing.assert_allclose(strain, strain.T, atol=1e-12)
        assert np.abs(strain).max() <= 0.04 * scale + 1e-12
        affine = originals[0].positions @ deformation
        displacement = copy.positions - affine
        assert displacement.std() == pytest.approx(0.1 * scale, rel=0.35)
    assert (
        np.abs(images[5].positions - images[0].positions).max()
        > np.abs(images[1].positions - images[0].positions).max()
    )


def test_the_seed_decides_the_structures():
    first = initial_structures(structures(), InitialSettings(seed=1))
    again = initial_structures(structures(), InitialSettings(seed=1))
    other = initial_structures(structures(), InitialSettings(seed=2))
    assert len(first) == 2 * (1 + InitialSettings().copies_per_structure)
    np.testing.assert_array_equal(first[3].positions, again[3].positions)
    assert not np.allclose(first[3].positions, other[3].positions)


def test_zero_amplitudes_give_exact_copies():
    images = initial_structures(
        structures()[:1], InitialSettings(copies_per_structure=2, rattle=0.0, strain=0.0)
    )
    for copy in images[1:]:
        np.testing.assert_allclose(copy.positions, images[0].positions)
        np.testing.assert_allclose(copy.cell.array, images[0].cell.array)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"copies_per_structure": 0},
            "`initial.copies_per_structure`: Input should be greater than or equal to 1",
        ),
        ({"rattle": -0.1}, "`initial.rattle`"),
        ({"strain": 0.7}, "`initial.strain`"),
        ({"rattel": 0.1}, "unknown key `initial.rattel`; did you mean `rattle`?"),
    ],
)
def test_bad_settings_are_refused(values, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("?", r"\?")):
        InitialSettings.from_mapping(values)
