"""The validation layer without AiiDA: settings refused with their reason, rows, judgement and the printed table."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.properties import PropertyInputError
from aiida_mlip.properties.validation import (
    ValidationSettings,
    check_inputs,
    format_table,
    summarise,
    validate_property,
)
from aiida_mlip.settings import SettingsError


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"propertes": ["eos"]}, r"unknown key `propertes`; did you mean `properties`\?"),
        ({"properties": []}, "give at least one property of eos, elastic, phonons, neb"),
        ({"properties": ["phonon"]}, r"unknown property `phonon`; did you mean `phonons`\?"),
        ({"elastic": {"strains": [0.06]}}, r"`elastic.strains`: a strain of 0.06 \(6%\) is above 5%"),
        ({"neb": {"images": 2}}, "`neb.images`: a nudged elastic band needs at least 3 images"),
        ({"tolerances": {"eos": {"B": 0.1}}}, r"unknown key `tolerances.eos.B`; did you mean `B0`\?"),
        (
            {"tolerances": {"phonons": {"frequency": 0}}},
            "`tolerances.phonons.frequency`: Input should be greater than 0",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_reason(values, message):
    with pytest.raises(SettingsError, match=message):
        ValidationSettings.from_mapping(values)


def test_defaults_and_property_order():
    settings = ValidationSettings.from_mapping({"properties": ["phonons", "eos"]})
    assert settings.properties == ["eos", "phonons"]  # they run in a fixed order
    defaults = ValidationSettings()
    assert defaults.properties == ["eos", "elastic", "phonons"]
    assert (defaults.tolerances.eos.a0, defaults.tolerances.eos.B0) == (0.005, 0.10)
    assert (defaults.tolerances.elastic.C, defaults.tolerances.phonons.frequency) == (0.15, 0.10)
    assert defaults.elastic.strains == [0.005, 0.01] and defaults.phonons.supercell == [3, 3, 3]


def test_inputs_are_checked_against_the_potential():
    al = bulk("Al", "fcc", a=4.05)
    settings = ValidationSettings()
    check_inputs(settings, bulk("Al", "fcc", a=4.05, cubic=True), cutoff=4.0, elements=["Al"])
    with pytest.raises(PropertyInputError, match=r"supercell \[4, 4, 4\] of this cell"):
        check_inputs(settings, al, cutoff=4.0)
    with pytest.raises(PropertyInputError, match=r"holds \['Cu'\], which the potential was not trained on"):
        check_inputs(settings, bulk("Cu", "fcc", a=3.6), elements=["Al"])
    with pytest.raises(PropertyInputError, match="`neb` needs the final state"):
        check_inputs(ValidationSettings(properties=["neb"]), al)


def test_a_committee_of_the_reference_itself_is_within_every_tolerance():
    al = bulk("Al", "fcc", a=4.05)
    found = validate_property("eos", al, [EMT(), EMT()], {"eos": {"points": 5}}, reference=EMT())
    assert [row["quantity"] for row in found.rows] == ["a0", "V0", "B0", "B0_prime"]
    for row in found.rows:
        assert row["std"] == 0.0 and row["difference"] == pytest.approx(0.0, abs=1e-12)
        assert row["within_tolerance"] is True and row["members"] == [row["mean"]] * 2
    assert found.details == {"bracketed_members": [True, True], "bracketed_reference": True}
    comparison = summarise(
        {"eos": {"rows": found.rows, "details": found.details}, "phonons": {"error": "boom"}}, "EMT"
    )
    assert (comparison["n_quantities"], comparison["n_judged"], comparison["n_within_tolerance"]) == (4, 4, 4)
    assert comparison["properties"]["phonons"] == {"status": "failed", "error": "boom"}
    lines = format_table(comparison).splitlines()
    assert lines[0].split() == ["quantity", "potential", "reference", "difference", "tolerance"]
    assert lines[3].split()[0] == "eos.B0" and lines[3].split()[-3:] == ["+0.00%", "10%", "ok"]
    assert lines[-1] == "phonons: FAILED: boom"
    without_reference = validate_property("eos", al, [EMT()], {"eos": {"points": 5}})
    assert all(row["reference"] is None and row["within_tolerance"] is None for row in without_reference.rows)
