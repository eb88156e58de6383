"""Choosing UPF files from a folder and installing them as an aiida-pseudo family with cutoffs."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from aiida_mlip.pseudos import (
    DEFAULT_ECUTWFC,
    DUAL_NORM_CONSERVING,
    PseudoSelectionError,
    install_pseudo_family,
    normalise_functional,
    read_upf_header,
    recommended_cutoffs,
    select_pseudos,
)
from tests.conftest import require_component

DEBIAN = pathlib.Path("/usr/share/espresso/pseudo")


@pytest.fixture
def folder():
    require_component(DEBIAN.is_dir(), "Debian's quantum-espresso-data pseudopotentials")
    return DEBIAN


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("PBE", "pbe"),
        (" SLA  PW   PBX  PBC ", "pbe"),
        ("SLA PW PBE PBE", "pbe"),
        ("lda", "pz"),
        ("SLA PZ NOGX NOGC", "pz"),
        ("SLA PW PSX PSC", "pbesol"),
        ("PBESOL", "pbesol"),
    ],
)
def test_functional_names(text, name):
    assert normalise_functional(text) == name


def test_headers_of_both_upf_versions(folder):
    v2 = read_upf_header(folder / "Si.pbe-nl-rrkjus_psl.1.0.0.UPF")
    assert (v2.element, v2.functional, v2.relativistic, v2.pseudo_type) == ("Si", "pbe", "scalar", "US")
    assert v2.wfc_cutoff == pytest.approx(43.74353992864) and v2.rho_cutoff == pytest.approx(174.9741597146)
    v1 = read_upf_header(folder / "Si.rel-pbe-rrkj.UPF")
    assert (v1.element, v1.functional, v1.relativistic, v1.wfc_cutoff) == ("Si", "pbe", "full", None)
    with pytest.raises(ValueError, match="not a UPF file"):
        read_upf_header(folder / "Si.bhs")


def test_selection_rule(folder):
    # Si: two scalar PBE files; the one whose header suggests cutoffs wins over Si.pbe-rrkj.UPF,
    # the fully relativistic Si.rel-pbe-rrkj.UPF and Si_r.upf are never candidates
    chosen = select_pseudos(folder, ["Si", "O"], "PBE")
    assert {element: header.path.name for element, header in chosen.items()} == {
        "Si": "Si.pbe-nl-rrkjus_psl.1.0.0.UPF",
        "O": "O.pbe-kjpaw.UPF",
    }
    lda = select_pseudos(folder, ["Si"], "lda")
    assert lda["Si"].path.name == "Si.pz-vbc.UPF"


def test_missing_and_ambiguous_elements_are_named(folder):
    with pytest.raises(PseudoSelectionError) as error:
        select_pseudos(folder, ["Si", "Zr", "N", "Xe"], "pbe")
    message = str(error.value)
    assert "no pbe pseudopotential" in message and "Zr, Xe" in message
    assert (
        "N is ambiguous" in message
        and "N.pbe-n-rrkjus_psl.1.0.0.UPF" in message
        and "--pseudo N=FILE" in message
    )
    chosen = select_pseudos(folder, ["N"], "pbe", explicit={"N": "N.pbe-n-rrkjus_psl.1.0.0.UPF"})
    assert chosen["N"].path.name == "N.pbe-n-rrkjus_psl.1.0.0.UPF"
    with pytest.raises(PseudoSelectionError, match="Si=Si.pz-vbc.UPF is a pz pseudopotential"):
        select_pseudos(folder, ["Si"], "pbe", explicit={"Si": "Si.pz-vbc.UPF"})


def test_cutoffs_from_header_default_and_override(folder):
    headers = select_pseudos(folder, ["Si", "O"], "pbe")
    headers["Al"] = read_upf_header(folder / "Al.pz-vbc.UPF")  # norm-conserving, no suggestion
    cutoffs = recommended_cutoffs(headers, overrides={"O": [50.0]})
    assert cutoffs["Si"] == pytest.approx({"cutoff_wfc": 43.74353992864, "cutoff_rho": 174.9741597146})
    assert cutoffs["Al"] == {
        "cutoff_wfc": DEFAULT_ECUTWFC,
        "cutoff_rho": DUAL_NORM_CONSERVING * DEFAULT_ECUTWFC,
    }
    assert cutoffs["O"] == {"cutoff_wfc": 50.0, "cutoff_rho": 400.0}  # PAW: 8 x ecutwfc
    with pytest.raises(ValueError, match="below 4 x ecutwfc"):
        recommended_cutoffs(headers, overrides={"Si": [30.0, 60.0]})


def test_install_family_stores_pseudos_and_cutoffs(folder, aiida_profile, tmp_path):
    family = install_pseudo_family(folder, ["Si", "O"], "pbe", "test/pseudos/SiO", cutoffs={"O": [45, 360]})
    assert family.type_string == "pseudo.family.cutoffs"
    assert sorted(family.elements) == ["O", "Si"]
    assert family.get_pseudo("Si").filename == "Si.pbe-nl-rrkjus_psl.1.0.0.UPF"
    assert family.get_recommended_cutoffs(elements=("Si", "O"), unit="Ry") == pytest.approx((45.0, 360.0))
    assert family.get_recommended_cutoffs(elements="Si", unit="Ry") == pytest.approx(
        (43.74353992864, 174.9741597146)
    )
    assert family.base.extras.get("mlip_functional") == "pbe"
    with pytest.raises(ValueError, match="exists already"):
        install_pseudo_family(folder, ["Si"], "pbe", "test/pseudos/SiO")
    # a folder of one's own works the same (here: a copy of two files)
    shutil.copyfile(folder / "Si.pz-vbc.UPF", tmp_path / "Si.pz-vbc.UPF")
    shutil.copyfile(folder / "Si.pbe-rrkj.UPF", tmp_path / "Si.pbe-rrkj.UPF")
    own = install_pseudo_family(tmp_path, ["Si"], "pbe", "test/pseudos/own")
    assert own.get_recommended_cutoffs(elements="Si", unit="Ry") == (DEFAULT_ECUTWFC, 4 * DEFAULT_ECUTWFC)
