"""NEB on EMT: the vacancy hop in aluminium equals ASE's own NEB recipe; bad end points and too few images refused."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.mep import NEB
from ase.optimize import FIRE

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.neb import nudged_elastic_band
from tests.properties.conftest import emt_fcc


def vacancy_hop():
    """32-site fcc Al (EMT's a = 3.994 Angstrom) without atom 0; final: its nearest neighbour moved into the vacancy."""
    perfect = emt_fcc("Al", cubic=True, repeat=2)
    perfect.set_cell(perfect.cell.array * 3.994 / 4.0, scale_atoms=True)
    neighbour = int(np.argsort(perfect.get_distances(0, range(len(perfect)), mic=True))[1])
    vacancy = perfect.positions[0].copy()
    initial = perfect[1:]
    final = initial.copy()
    final.positions[neighbour - 1] = vacancy
    initial.calc = EMT()
    return initial, final


def test_vacancy_hop_equals_ase_neb():
    initial, final = vacancy_hop()
    settings = {"images": 3, "fmax": 0.02}
    result = nudged_elastic_band(initial, final, settings=settings)
    assert result.converged
    # the same recipe written with ASE directly, from the kernel's relaxed end points
    images = [result.images[0].copy(), result.images[0].copy(), result.images[-1].copy()]
    for image in images:
        image.calc = EMT()
    band = NEB(images, climb=True, method="improvedtangent")
    band.interpolate(mic=True)
    FIRE(band, logfile=None).run(fmax=0.02, steps=300)
    reference = images[1].get_potential_energy() - images[0].get_potential_energy()
    assert result.barrier == pytest.approx(reference, rel=1e-6)
    assert result.barrier == pytest.approx(0.400, abs=0.005)  # eV, EMT's vacancy migration in Al
    assert result.reverse_barrier == pytest.approx(result.barrier, abs=1e-6)  # symmetric hop
    assert result.spread is None


def test_bad_paths_are_refused_before_any_energy():
    initial, final = vacancy_hop()
    with pytest.raises(PropertyInputError, match="at least 3 images .* got 2"):
        nudged_elastic_band(initial, final, settings={"images": 2})
    with pytest.raises(PropertyInputError, match=r"different numbers of atoms \(31 and 30\)"):
        nudged_elastic_band(initial, final[1:])
    swapped = final.copy()
    swapped.symbols[3] = "Cu"
    with pytest.raises(PropertyInputError, match="different elements at the same index .*3: Al vs Cu"):
        nudged_elastic_band(initial, swapped)
    strained = final.copy()
    strained.set_cell(final.cell.array * 1.01, scale_atoms=True)
    with pytest.raises(PropertyInputError, match="different cells"):
        nudged_elastic_band(initial, strained)


def test_committee_spread_and_force_deviation_per_image(tiny_model_file):
    """With a committee: each image's largest force deviation is the calculator's own, the spreads its members'."""
    from aiida_mlip.potentials import load_calculator

    initial, final = vacancy_hop()
    committee = load_calculator(tiny_model_file, device="cpu", dtype="float64")
    result = nudged_elastic_band(
        initial, final, committee, {"images": 3, "relax_endpoints": False, "steps": 5}
    )
    assert result.force_deviation.shape == (3,) and (result.force_deviation > 0).all()
    for image, deviation in zip(result.images, result.force_deviation, strict=True):
        committee.calculate(image, ["forces"])
        assert deviation == pytest.approx(committee.results["max_force_deviation"], rel=1e-9)
    top = int(np.argmax(result.energies))
    members = result.member_energies
    assert result.barrier_spread == pytest.approx(members[:, top].std(), rel=1e-12)
    assert result.reverse_barrier_spread == pytest.approx((members[:, top] - members[:, -1]).std(), rel=1e-12)
