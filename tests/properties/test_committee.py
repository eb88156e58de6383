"""Committee error bars: a kernel once per member of a trained committee, mean and spread of every scalar."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.committee import Estimate, committee_property
from aiida_mlip.properties.elastic import elastic_constants
from aiida_mlip.properties.eos import equation_of_state
from aiida_mlip.properties.neb import nudged_elastic_band
from aiida_mlip.properties.phonons import phonons
from tests.properties.conftest import emt_fcc
from tests.properties.test_neb import vacancy_hop


@pytest.fixture(scope="module")
def committee(tiny_model_file):
    from aiida_mlip.potentials.calculator import load_calculator

    return load_calculator(tiny_model_file, device="cpu", dtype="float64")


def test_member_calculators_are_the_members(committee):
    atoms = emt_fcc("Al", cubic=True, repeat=2)
    atoms.rattle(0.05, seed=3)
    atoms.calc = committee
    atoms.get_potential_energy()
    members = committee.member_calculators()
    assert len(members) == committee.committee_size == 3
    for k, member in enumerate(members):
        np.testing.assert_allclose(
            member.get_potential_energy(atoms), committee.results["committee_energy"][k], rtol=1e-10
        )
        np.testing.assert_allclose(
            member.get_forces(atoms), committee.results["committee_forces"][k], atol=1e-10
        )
        assert member.cutoff == committee.cutoff


def test_eos_and_elastic_with_error_bars(committee):
    atoms = emt_fcc("Al")
    eos = committee_property(equation_of_state, atoms, committee, settings={"points": 7})
    assert len(eos.members) == 3
    b0 = eos["B0"]
    assert b0.values == tuple(member.b0 for member in eos.members)
    assert b0.mean == pytest.approx(np.mean(b0.values)) and b0.spread == pytest.approx(np.std(b0.values))
    assert b0.spread > 0  # members trained on different resamples disagree
    assert str(Estimate(76.04, 2.0, (74.04, 78.04))) == "76.04 +- 2"
    assert "a0" in eos.table()
    elastic = committee_property(
        elastic_constants, atoms, committee, settings={"strains": [0.01], "relax": "ions"}
    )
    assert set(elastic.estimates) >= {"C11", "C12", "C44", "K_H", "v_m"}
    # the phonon supercell check uses the committee's own cutoff, before any member runs
    with pytest.raises(
        PropertyInputError, match=f"twice the potential's cutoff of {committee.cutoff:g} Angstrom"
    ):
        committee_property(phonons, emt_fcc("Al", cubic=True), committee, settings={"supercell": [1, 1, 1]})


def test_any_list_of_calculators_is_a_committee():
    result = committee_property(
        phonons, emt_fcc("Al", cubic=True), [EMT(), EMT()], settings={"mesh": [4, 4, 4]}, cutoff=5.38
    )
    assert result["X_3"].spread == 0.0
    assert result["X_3"].mean == pytest.approx(8.60, abs=0.02)
    with pytest.raises(TypeError, match="committee calculator or a sequence"):
        committee_property(phonons, emt_fcc("Al"), EMT())


def test_neb_spread_per_image_and_barrier_error_bar(committee):
    initial, final = vacancy_hop()
    settings = {"images": 3, "relax_endpoints": False, "steps": 5}
    result = nudged_elastic_band(initial, final, calculator=committee, settings=settings)
    assert result.member_energies.shape == (3, 3)
    assert result.spread[0] == 0.0 and result.spread[1] > 0
    np.testing.assert_allclose(result.member_energies.mean(0), result.energies, atol=1e-8)
    per_member = committee_property(nudged_elastic_band, initial, committee, final=final, settings=settings)
    assert per_member["barrier"].spread > 0
