"""The ``pw`` labeller of ``LabellingWorkChain``: real pw.x runs, compared with pw.x run by hand."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from xml.etree import ElementTree

import ase.io
import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import DataFactory, GroupFactory
from ase.build import bulk
from ase.units import create_units

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.pseudos import install_pseudo_family
from aiida_mlip.workflows.labelling import LabellingWorkChain
from tests.conftest import require_component

PSEUDO_FOLDER = pathlib.Path("/usr/share/espresso/pseudo")
SI_PSEUDO = "Si.pbe-nl-rrkjus_psl.1.0.0.UPF"
#: Low cutoffs (Ry) so that an 8-atom SCF takes seconds; the family records them as its recommendation.
TEST_CUTOFFS = {"Si": (20.0, 160.0)}
#: One k-point for a 5.4 Angstrom cell (1/Angstrom), and enough bands that PwBaseWorkChain's
#: band-occupation check does not restart the SCF (a restart reads the previous charge density,
#: which the run by hand would not have).
OVERRIDES = {"kpoints_distance": 1.5, "pw": {"parameters": {"SYSTEM": {"nbnd": 24}}}}
OPTIONS = {
    "withmpi": False,
    "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1},
    "max_wallclock_seconds": 600,
}


def silicon(count: int, seed: int = 7, lattice=None) -> list:
    """``count`` rattled 8-atom diamond cells (Angstrom)."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        atoms = bulk("Si", "diamond", a=(lattice or [5.43] * count)[index], cubic=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        images.append(atoms)
    return images


@pytest.fixture
def pw_code(aiida_code_installed):
    require_component(shutil.which("pw.x") is not None, "pw.x (apt-get install quantum-espresso)")
    return aiida_code_installed(
        label="pw-test",
        default_calc_job_plugin="quantumespresso.pw",
        filepath_executable=shutil.which("pw.x"),
    )


@pytest.fixture
def si_family(aiida_profile):
    require_component((PSEUDO_FOLDER / SI_PSEUDO).exists(), "Debian's quantum-espresso-data pseudopotentials")
    label = "test/Si/pbe/20Ry"
    family_class = GroupFactory("pseudo.family.cutoffs")
    if family_class.collection.count(filters={"label": label}):
        return family_class.collection.get(label=label)
    return install_pseudo_family(PSEUDO_FOLDER, ["Si"], "pbe", label, cutoffs=TEST_CUTOFFS)


def pw_builder(code, family, images, **extra):
    builder = LabellingWorkChain.get_builder()
    builder.structures = StructureSetData.from_atoms(images)
    builder.pw.code = code
    builder.pw.pseudo_family = orm.Str(family.label)
    builder.pw.overrides = orm.Dict(extra.pop("overrides", OVERRIDES))
    builder.pw.options = orm.Dict(OPTIONS)
    for key, value in extra.items():
        setattr(builder, key, value)
    return builder


def read_pw_xml(path: pathlib.Path) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy (eV), forces (eV/Angstrom) and Voigt stress (eV/Angstrom^3, ASE sign) from pw.x's XML file.

    The XML holds Hartree atomic units at full precision; they are converted with ASE's
    CODATA-2006 constants, as ``ase.io.espresso`` converts the text output.
    """
    units = create_units("2006")
    output = ElementTree.parse(path).getroot().find("output")
    energy = float(output.find("total_energy/etot").text) * units["Hartree"]
    forces = np.array(output.find("forces").text.split(), dtype=float).reshape(-1, 3)
    stress = np.array(output.find("stress").text.split(), dtype=float).reshape(3, 3)
    voigt = -stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] * units["Hartree"] / units["Bohr"] ** 3
    return energy, forces * units["Hartree"] / units["Bohr"], voigt


def run_pw_by_hand(calculation: orm.CalcJobNode, directory: pathlib.Path):
    """Run pw.x on the ``aiida.in`` that ``calculation`` wrote, with the same pseudo files.

    Returns ASE's reading of the text output and :func:`read_pw_xml` of the XML file.
    """
    directory.mkdir()
    (directory / "aiida.in").write_bytes(
        calculation.base.repository.get_object_content("aiida.in", mode="rb")
    )
    (directory / "pseudo").mkdir()
    for link in calculation.base.links.get_incoming(link_label_filter="pseudos__%").all():
        (directory / "pseudo" / link.node.filename).write_bytes(link.node.get_content(mode="rb"))
    with open(directory / "aiida.out", "w") as stdout:
        subprocess.run([shutil.which("pw.x"), "-in", "aiida.in"], cwd=directory, stdout=stdout, check=True)
    return (
        ase.io.read(directory / "aiida.out", format="espresso-out"),
        read_pw_xml(directory / "out" / "aiida.save" / "data-file-schema.xml"),
    )


@pytest.mark.daemon
@pytest.mark.slow
def test_pw_labels_through_the_daemon_equal_pw_run_by_hand(pw_code, si_family, submit_and_await, tmp_path):
    # the last cell is compressed: its pressure must come out positive, ASE stress negative
    images = silicon(4, lattice=[5.43, 5.43, 5.45, 5.25])
    node = submit_and_await(pw_builder(pw_code, si_family, images), timeout=600)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    dataset = node.outputs.dataset
    assert dataset.n_frames == 4 and node.outputs.failures["failures"] == []
    settings = dataset.label_settings
    assert settings["ecutwfc"] == 20.0 and settings["ecutrho"] == 160.0
    assert settings["pseudo_family"] == si_family.label and settings["functional"] == "pbe"
    assert settings["smearing"] == "cold" and settings["kpoints_distance"] == 1.5
    assert settings["code_version"]

    labelled = dataset.get_atoms()
    worst = {"energy": 0.0, "forces": 0.0, "stress": 0.0}  # against ASE's reading of the text output
    worst_xml = {"energy": 0.0, "forces": 0.0, "stress": 0.0}  # against the XML of the run by hand
    for index, atoms in enumerate(labelled):
        np.testing.assert_allclose(atoms.positions, images[index].positions, atol=1e-12)
        calculation = orm.load_node(atoms.info["source_uuid"])
        assert calculation.process_type == "aiida.calculations:quantumespresso.pw"
        parameters = calculation.inputs.parameters.get_dict()
        assert parameters["CONTROL"]["tprnfor"] and parameters["CONTROL"]["tstress"]
        assert "parent_folder" not in calculation.inputs  # a first SCF, which the run by hand repeats
        direct, (energy, forces, stress) = run_pw_by_hand(calculation, tmp_path / f"direct_{index}")
        worst["energy"] = max(
            worst["energy"], abs(atoms.get_potential_energy() - direct.get_potential_energy())
        )
        worst["forces"] = max(worst["forces"], np.abs(atoms.get_forces() - direct.get_forces()).max())
        worst["stress"] = max(worst["stress"], np.abs(atoms.get_stress() - direct.get_stress()).max())
        worst_xml["energy"] = max(worst_xml["energy"], abs(atoms.get_potential_energy() - energy))
        worst_xml["forces"] = max(worst_xml["forces"], np.abs(atoms.get_forces() - forces).max())
        worst_xml["stress"] = max(worst_xml["stress"], np.abs(atoms.get_stress() - stress).max())
    print(f"max |pw label - pw.x by hand (ASE reading the text output)|: {worst}")
    print(f"max |pw label - pw.x by hand (XML file)|: {worst_xml}")
    # pw.x prints 1e-8 Ry (1.4e-7 eV), 1e-8 Ry/bohr (2.6e-7 eV/A) and 1e-8 Ry/bohr^3 (9.2e-7 eV/A^3)
    assert worst["energy"] < 1e-6
    assert worst["forces"] < 1e-5
    assert worst["stress"] < 2e-6
    assert worst_xml["energy"] < 1e-9 and worst_xml["forces"] < 1e-9 and worst_xml["stress"] < 1e-10
    # ASE's sign convention: a compressed cell pushes outwards, its stress is negative
    assert labelled[3].get_stress()[:3].mean() < min(0.0, labelled[0].get_stress()[:3].mean())


def process_count() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


@pytest.fixture
def refused(pw_code, si_family):
    """Assert that building and running the labeller fails at once with ``match``, starting no process."""

    def check(builder, match):
        before = process_count()
        with pytest.raises(ValueError, match=match):
            run_get_node(builder)
        assert process_count() == before

    return check


def test_element_without_pseudopotential_is_refused(pw_code, si_family, refused):
    images = silicon(2)
    images[1].symbols[0] = "Ge"
    refused(
        pw_builder(pw_code, si_family, images),
        r"family 'test/Si/pbe/20Ry' has no pseudopotential for Ge \(it covers Si\)",
    )


def test_overlapping_atoms_are_refused(pw_code, si_family, refused):
    images = silicon(3)
    images[2].positions[5] = images[2].positions[1] + [0.2, 0.1, 0.0]
    refused(pw_builder(pw_code, si_family, images), r"frame 2: atoms 1 and 5 are 0\.224 Angstrom apart")


def test_atom_on_top_of_its_periodic_image_is_refused(pw_code, si_family, refused):
    images = silicon(1)
    images[0].positions[4] = (
        images[0].positions[3] + images[0].cell[0] + [0.3, 0.0, 0.0]
    )  # far, but not from an image
    refused(pw_builder(pw_code, si_family, images), r"frame 0: atoms [34] and [34] are 0\.300 Angstrom apart")


def test_cutoff_below_the_recommendation_is_refused(pw_code, si_family, refused):
    overrides = {"pw": {"parameters": {"SYSTEM": {"ecutwfc": 15.0, "ecutrho": 160.0}}}}
    refused(
        pw_builder(pw_code, si_family, silicon(1), overrides=overrides),
        r"ecutwfc = 15.0 Ry in the overrides is below the 20 Ry that pseudopotential family 'test/Si/pbe/20Ry'",
    )


def test_two_labellers_are_refused(pw_code, si_family, refused, engine_code):
    builder = pw_builder(pw_code, si_family, silicon(1))
    builder.ase.code = engine_code("mlip.label")
    builder.ase.labeller = orm.Dict({"calculator": "ase.calculators.emt.EMT"})
    refused(builder, "two labellers given")


@pytest.fixture
def inconsistent_family(aiida_profile, tmp_path):
    """Si (PBE) and C (LDA): pw.x stops on the conflicting functionals, which no restart can fix."""
    require_component(PSEUDO_FOLDER.exists(), "Debian's quantum-espresso-data pseudopotentials")
    label = "test/Si-pbe+C-lda"
    family_class = GroupFactory("pseudo.family.cutoffs")
    if family_class.collection.count(filters={"label": label}):
        return family_class.collection.get(label=label)
    for name in (SI_PSEUDO, "C.pz-rrkjus.UPF"):
        shutil.copyfile(PSEUDO_FOLDER / name, tmp_path / name)
    family = family_class.create_from_folder(tmp_path, label, pseudo_type=DataFactory("pseudo.upf"))
    family.set_cutoffs(
        {"Si": {"cutoff_wfc": 20.0, "cutoff_rho": 160.0}, "C": {"cutoff_wfc": 20.0, "cutoff_rho": 160.0}},
        "normal",
        unit="Ry",
    )
    return family


@pytest.mark.slow
def test_failed_structures_are_recorded_and_excluded(pw_code, inconsistent_family):
    images = silicon(3)
    images[1].symbols[0] = "C"
    builder = pw_builder(pw_code, inconsistent_family, images, max_failure_fraction=orm.Float(0.4))
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    failures = results["failures"]["failures"]
    assert [failure["index"] for failure in failures] == [1]
    workchain = orm.load_node(failures[0]["workchain"])
    assert workchain.process_label == "PwBaseWorkChain" and workchain.is_failed
    assert "PwBaseWorkChain exit status" in failures[0]["error"]
    assert failures[0]["cause"].startswith("pw.x error in set_dft_from_name")  # mixed functionals
    dataset = results["dataset"]
    assert dataset.n_frames == 2
    np.testing.assert_allclose(
        dataset.get_frames().positions, np.concatenate([images[0].positions, images[2].positions])
    )

    # one failure in two structures is more than 40%: exit 401, the good label is still returned
    results, node = run_get_node(
        pw_builder(pw_code, inconsistent_family, images[:2], max_failure_fraction=orm.Float(0.4))
    )
    assert node.exit_status == LabellingWorkChain.exit_codes.ERROR_TOO_MANY_FAILURES.status
    assert results["dataset"].n_frames == 1
    assert [failure["index"] for failure in results["failures"]["failures"]] == [1]
