"""``ValidationWorkChain``: a tiny committee against EMT on aluminium, provenance, failures and refused inputs.

The reference values of the table must be the property kernels' own EMT values, computed here
directly (no AiiDA), and the committee's mean and spread those of its members.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.foreground import run_get_node
from aiida_mlip.properties.elastic import elastic_constants
from aiida_mlip.properties.eos import equation_of_state
from aiida_mlip.properties.neb import nudged_elastic_band
from aiida_mlip.properties.phonons import phonons
from aiida_mlip.workflows.validation import ValidationWorkChain
from tests.properties.test_neb import vacancy_hop

#: Small but real settings: the primitive fcc cell (1 atom); its 4x4x4 supercell (9.35 Angstrom) is
#: over twice the tiny committee's 4 Angstrom cutoff.
SETTINGS = {
    "properties": ["eos", "elastic", "phonons"],
    "eos": {"points": 7},
    "phonons": {"supercell": [4, 4, 4], "mesh": [8, 8, 8], "band_points": 11},
}
EMT_REFERENCE = {"calculator": "ase.calculators.emt.EMT"}


class EMTWithoutStress(EMT):
    """EMT that does not compute stress: elastic constants (and cell relaxations) fail with it."""

    implemented_properties = ["energy", "energies", "free_energy", "forces"]


def aluminium() -> orm.StructureData:
    return orm.StructureData(ase=bulk("Al", "fcc", a=4.05)).store()


def builder_for(potential, structure, settings=None, reference=None, final=None):
    builder = ValidationWorkChain.get_builder()
    builder.potential = potential
    builder.structure = structure
    if settings is not None:
        builder.settings = orm.Dict(settings)
    if reference is not None:
        builder.reference = orm.Dict(reference)
    if final is not None:
        builder.final_structure = final
    return builder


@pytest.fixture(scope="module")
def module_potential(aiida_profile, tiny_model_file):
    from aiida_mlip.data.potential import PotentialData

    return PotentialData(file=tiny_model_file).store()


@pytest.fixture(scope="module")
def validation(module_potential):
    """One validation of eos, elastic and phonons against EMT (the pk: nodes are loaded in each test)."""
    _, node = run_get_node(builder_for(module_potential, aluminium(), SETTINGS, EMT_REFERENCE))
    return node.pk


def rows_of(comparison, name):
    return {row["quantity"]: row for row in comparison["quantities"] if row["property"] == name}


def test_table_holds_every_property_with_its_judgement(validation):
    node = orm.load_node(validation)
    assert node.is_finished_ok, node.exit_message
    comparison = node.outputs.comparison.get_dict()
    assert [row["property"] for row in comparison["quantities"]] == sorted(
        (row["property"] for row in comparison["quantities"]), key=["eos", "elastic", "phonons"].index
    )
    assert set(rows_of(comparison, "eos")) == {"a0", "V0", "B0", "B0_prime"}
    # cubic: C11 = C22 = C33, C12 = C13 = C23, C44 = C55 = C66; the zeros of cubic symmetry are left out
    assert set(rows_of(comparison, "elastic")) == {
        *("C11", "C22", "C33", "C12", "C13", "C23", "C44", "C55", "C66"),
        *("K_H", "G_H", "v_m"),
    }
    # five fcc points with three branches; Gamma's acoustic zeros are left out
    assert set(rows_of(comparison, "phonons")) == {f"{p}_{b}" for p in "XLWKU" for b in (1, 2, 3)}
    assert (
        comparison["n_quantities"] == comparison["n_judged"] == len(comparison["quantities"]) == 4 + 12 + 15
    )
    assert comparison["n_within_tolerance"] == sum(
        row["within_tolerance"] for row in comparison["quantities"]
    )
    assert comparison["reference"] == "ase.calculators.emt.EMT"
    assert {name: found["status"] for name, found in comparison["properties"].items()} == {
        "eos": "ok",
        "elastic": "ok",
        "phonons": "ok",
    }
    for row in comparison["quantities"]:
        if (
            row["mean"] is None
        ):  # a member without a value (NaN: e.g. the sound speed of an unstable aggregate)
            assert None in row["members"] and row["difference"] is None and row["within_tolerance"] is False
            continue
        assert row["difference"] == pytest.approx((row["mean"] - row["reference"]) / abs(row["reference"]))
        assert row["within_tolerance"] == (abs(row["difference"]) <= row["tolerance"])
    assert rows_of(comparison, "eos")["a0"]["tolerance"] == 0.005
    assert rows_of(comparison, "eos")["B0"]["tolerance"] == 0.10
    assert rows_of(comparison, "elastic")["C11"]["tolerance"] == 0.15
    assert rows_of(comparison, "phonons")["X_3"]["tolerance"] == 0.10


def test_reference_values_are_the_kernels_emt_values(validation):
    node = orm.load_node(validation)
    comparison = node.outputs.comparison.get_dict()
    atoms = node.inputs.structure.get_ase()
    direct = {
        "eos": equation_of_state(atoms, EMT(), SETTINGS["eos"]).scalars(),
        "elastic": elastic_constants(atoms, EMT()).scalars(),
        "phonons": phonons(atoms, EMT(), SETTINGS["phonons"]).scalars(),
    }
    for row in comparison["quantities"]:
        assert row["reference"] == pytest.approx(
            direct[row["property"]][row["quantity"]], rel=1e-8, abs=1e-10
        )
    # EMT aluminium (tests/properties): a0 = 3.994 Angstrom, C11 = 53.3 GPa, X = 8.60 THz
    assert rows_of(comparison, "eos")["a0"]["reference"] == pytest.approx(3.994, abs=1e-3)
    assert rows_of(comparison, "elastic")["C11"]["reference"] == pytest.approx(53.33, abs=0.05)
    assert rows_of(comparison, "phonons")["X_3"]["reference"] == pytest.approx(8.60, abs=0.02)


def test_committee_mean_and_spread_are_the_members(validation):
    comparison = orm.load_node(validation).outputs.comparison.get_dict()
    for row in comparison["quantities"]:
        assert len(row["members"]) == 3
        if row["mean"] is None:
            continue
        assert row["mean"] == pytest.approx(np.mean(row["members"]), rel=1e-12)
        assert row["std"] == pytest.approx(np.std(row["members"]), rel=1e-12, abs=1e-15)
    for name, quantity in (("eos", "B0"), ("elastic", "C11"), ("phonons", "X_3")):
        assert rows_of(comparison, name)[quantity]["std"] > 0  # members trained on different resamples


def test_outputs_and_provenance(validation):
    node = orm.load_node(validation)
    assert set(node.outputs) == {"comparison", "properties", "phonon_bands"}
    assert set(node.outputs.properties) == {"eos", "elastic", "phonons"}
    with node.outputs.phonon_bands.open(mode="rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    called = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    for name in ("eos", "elastic", "phonons"):
        calculation = called[name]
        assert calculation.process_label == "compute_property" and calculation.is_finished_ok
        inputs = calculation.base.links.get_incoming()
        assert inputs.get_node_by_label("potential").uuid == node.inputs.potential.uuid
        assert inputs.get_node_by_label("structure").uuid == node.inputs.structure.uuid
        assert inputs.get_node_by_label("reference").uuid == node.inputs.reference.uuid
        assert calculation.outputs.result.uuid == node.outputs.properties[name].uuid
    assert called["phonons"].outputs.phonon_bands.uuid == node.outputs.phonon_bands.uuid
    collector = node.outputs.comparison.creator
    assert collector.process_label == "collect_comparison"
    assert {
        link.link_label for link in collector.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    } == {
        "eos",
        "elastic",
        "phonons",
        "reference",
    }
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert any("compute]: eos: 4 quantities" in message for message in reports), reports


def test_neb_barrier_with_committee_spread(module_potential):
    initial, final = vacancy_hop()
    settings = {"properties": ["neb"], "neb": {"images": 3, "relax_endpoints": False, "steps": 5}}
    _, node = run_get_node(
        builder_for(
            module_potential,
            orm.StructureData(ase=initial).store(),
            settings,
            EMT_REFERENCE,
            final=orm.StructureData(ase=final).store(),
        )
    )
    assert node.is_finished_ok, node.exit_message
    comparison = node.outputs.comparison.get_dict()
    rows = rows_of(comparison, "neb")
    assert set(rows) == {"barrier", "reverse_barrier"}
    direct = nudged_elastic_band(initial, final, EMT(), settings["neb"])
    assert rows["barrier"]["reference"] == pytest.approx(direct.barrier, rel=1e-8)
    assert rows["barrier"]["std"] > 0
    details = comparison["properties"]["neb"]["details"]
    assert len(details["energies_members"]) == 3 and len(details["energies_reference"]) == 3
    assert "phonon_bands" not in node.outputs


def test_a_failed_property_is_an_exit_code_and_the_others_are_kept(module_potential):
    reference = {"calculator": f"{__name__}.EMTWithoutStress"}
    settings = {"properties": ["eos", "elastic"], "eos": {"points": 5, "relax": "ions"}}
    _, node = run_get_node(builder_for(module_potential, aluminium(), settings, reference))
    assert node.exit_status == ValidationWorkChain.exit_codes.ERROR_PROPERTY_FAILED.status
    assert "The calculation of elastic failed: elastic: PropertyNotImplementedError" in node.exit_message
    comparison = node.outputs.comparison.get_dict()
    assert comparison["properties"]["eos"]["status"] == "ok"
    assert comparison["properties"]["elastic"]["status"] == "failed"
    assert {row["property"] for row in comparison["quantities"]} == {"eos"}
    assert set(node.outputs.properties) == {"eos"}


def _slab():
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.pbc = [True, True, False]
    return atoms


def _swapped_final():
    initial, final = vacancy_hop()
    final.symbols[3] = "Cu"
    return initial, final


BAD_INPUTS = {
    "strain above 5%": (
        {"elastic": {"strains": [0.01, 0.08]}},
        None,
        r"invalid settings: `elastic.strains`: a strain of 0.08 \(8%\) is above 5%",
    ),
    "typo": ({"eos": {"point": 5}}, None, r"unknown key `eos.point`; did you mean `points`\?"),
    "unknown property": (
        {"properties": ["phonon"]},
        None,
        r"unknown property `phonon`; did you mean `phonons`\?",
    ),
    "non-periodic for phonons": (
        {"properties": ["phonons"]},
        _slab(),
        r"phonons need a crystal periodic in all three directions.*pbc=\[True, True, False\]",
    ),
    "non-periodic for elastic": (
        {"properties": ["elastic"]},
        Atoms("Al2", positions=[[0, 0, 0], [2.8, 0, 0]]),
        "elastic constants need a crystal periodic in all three directions",
    ),
    "narrow phonon supercell": (
        {"properties": ["phonons"], "phonons": {"supercell": [3, 3, 3]}},
        None,
        r"phonon supercell is 7.01 Angstrom wide .* twice the potential's cutoff of 4 Angstrom .*supercell \[4, 4, 4\]",
    ),
    "two NEB images": (
        {"properties": ["neb"], "neb": {"images": 2}},
        None,
        "a nudged elastic band needs at least 3 images",
    ),
    "NEB without a final state": ({"properties": ["neb"]}, None, "`neb` needs the final state"),
    "NEB end points of different atoms": (
        {"properties": ["neb"]},
        (vacancy_hop()[0], bulk("Al", "fcc", a=4.05, cubic=True)),
        r"the NEB end points have different numbers of atoms \(31 and 4\)",
    ),
    "NEB end points of different elements": (
        {"properties": ["neb"]},
        _swapped_final(),
        r"the NEB end points have different elements at the same index \(3: Al vs Cu\)",
    ),
    "element the potential does not know": (
        {"properties": ["eos"]},
        bulk("Cu", "fcc", a=3.6),
        r"the structure holds \['Cu'\], which the potential was not trained on",
    ),
}


def _process_count() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_before_anything_runs(module_potential, case):
    settings, atoms, message = BAD_INPUTS[case]
    final = None
    if isinstance(atoms, tuple):
        atoms, final = atoms
    structure = orm.StructureData(ase=atoms if atoms is not None else bulk("Al", "fcc", a=4.05))
    final = orm.StructureData(ase=final) if final is not None else None
    before = _process_count()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder_for(module_potential, structure, settings, EMT_REFERENCE, final=final))
    assert _process_count() == before  # not even the work chain's node: refused when the process is made


def test_bad_reference_is_refused(module_potential):
    reference = {"calculator": "ase.calculators.emt.EMTX"}
    with pytest.raises(
        ValueError, match=r"invalid reference: module 'ase.calculators.emt' has no attribute 'EMTX'"
    ):
        run_get_node(builder_for(module_potential, aluminium(), {"properties": ["eos"]}, reference))
