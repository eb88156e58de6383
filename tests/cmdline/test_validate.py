"""``aiida-mlip validate``: the comparison table of a tiny committee against EMT, refused inputs, and ``status``."""

from __future__ import annotations

import pytest
import yaml
from aiida import orm
from aiida.common.links import LinkType
from ase.build import bulk
from ase.calculators.emt import EMT
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.properties.eos import equation_of_state
from tests.calculations.conftest import (  # noqa: F401  (tiny_model_file: a committee of 3 trained in seconds)
    emt_aluminium_images,
    tiny_model_file,
)


def invoke(*args):
    return CliRunner().invoke(cmd_root, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def potential(aiida_profile, tiny_model_file):  # noqa: F811
    from aiida_mlip.data.potential import PotentialData

    return PotentialData(file=tiny_model_file).store()


@pytest.fixture
def aluminium_file(tmp_path):
    path = tmp_path / "al.xyz"
    bulk("Al", "fcc", a=4.05).write(path)
    return path


def table_rows(output: str) -> dict[str, list[str]]:
    """``{quantity: the other columns}`` of the printed table (columns are separated by 2+ spaces)."""
    import re

    rows = {}
    for line in output.splitlines():
        if line.startswith(("eos.", "elastic.", "phonons.", "neb.")):
            name, *cells = re.split(r"\s{2,}", line.strip())
            rows[name] = cells
    return rows


def test_validate_a_structure_file_against_emt(potential, aluminium_file, tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"eos": {"points": 5}, "tolerances": {"eos": {"B0": 0.2}}}))
    result = invoke(
        "validate",
        potential.pk,
        aluminium_file,
        "--properties",
        "eos",
        "--reference",
        "ase:ase.calculators.emt.EMT",
        "--settings",
        settings,
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("Report: ")]
    assert lines[0].startswith("ValidationWorkChain<") and lines[0].endswith(": finished")
    assert lines[1].split() == ["quantity", "potential", "reference", "difference", "tolerance"]
    rows = table_rows(result.output)
    assert list(rows) == ["eos.a0", "eos.V0", "eos.B0", "eos.B0_prime"]
    emt = equation_of_state(bulk("Al", "fcc", a=4.05), EMT(), {"points": 5})
    potential_column, reference, difference, tolerance, verdict = rows["eos.B0"]
    assert potential_column.endswith(" GPa") and " +- " in potential_column
    assert reference == f"{emt.b0:.4g}"
    assert difference.endswith("%") and tolerance == "20%"  # the tolerance of the settings file
    assert verdict in ("ok", "NOT OK")
    assert verdict == ("ok" if abs(float(difference[:-1])) <= 20 else "NOT OK")
    assert rows["eos.a0"][3] == "0.5%"  # the default
    assert " quantities within tolerance (reference ase.calculators.emt.EMT); committee of 3" in result.output
    # the file became a StructureData, an input of the work chain
    pk = int(lines[0].split("<")[1].split(">")[0])
    node = orm.load_node(pk)
    assert node.inputs.structure.get_formula() == "Al"
    assert node.inputs.settings["eos"] == {"points": 5} and node.inputs.settings["properties"] == ["eos"]


def test_status_lists_the_validations_of_a_runs_potential(potential):
    """A stand-in for an active-learning run that returned ``potential`` (the real one takes minutes)."""
    run = orm.WorkflowNode()
    run.set_process_label("ActiveLearningWorkChain")
    run.store()
    potential.base.links.add_incoming(run, link_type=LinkType.RETURN, link_label="potential")
    dataset = DatasetData.from_atoms(emt_aluminium_images(2)).store()
    dataset.base.links.add_incoming(run, link_type=LinkType.RETURN, link_label="dataset")
    structure = orm.StructureData(ase=bulk("Al", "fcc", a=4.05)).store()
    result = invoke("validate", potential.pk, structure.pk, "--properties", "eos")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows["eos.B0"][1:] == ["-", "-", "10%", "-"]  # no reference: nothing judged
    status = invoke("status", run.pk)
    assert status.exit_code == 0, status.output
    lines = [line for line in status.output.splitlines() if line.startswith("validation <")]
    validations = (
        orm.QueryBuilder()
        .append(orm.Data, filters={"id": potential.pk}, tag="potential")
        .append(
            orm.WorkChainNode,
            with_incoming="potential",
            filters={"attributes.process_label": "ValidationWorkChain"},
        )
    )
    assert len(lines) == validations.count() >= 2  # this module's validations of `potential`
    assert lines[-1].endswith(f"of potential <{potential.pk}>: eos: 4 quantities, no reference")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--properties", "eos,phonon"],
            "Critical: refused: input `settings`: invalid settings: `properties`: unknown property "
            "`phonon`; did you mean `phonons`?",
        ),
        (
            ["--properties", "phonons"],
            "Critical: refused: the phonon supercell is 7.01 Angstrom wide (face-to-face widths "
            "[7.01, 7.01, 7.01]), under twice the potential's cutoff of 4 Angstrom",
        ),
        (["--reference", "pw"], "--reference pw needs --pw-code and --pseudo-family"),
        (
            ["--reference", "emt", "--pseudo-family", "debian/pbe"],
            "--pw-code and --pseudo-family go with --reference pw",
        ),
        (["--reference", "pw", "--pw-code", "nothere", "--pseudo-family", "x"], "no code 'nothere'"),
        (["--reference", "ase:ase.calculators.emt.EMT:{oops"], "are not valid JSON"),
        (
            ["--reference", "ase:ase.calculators.nothere.X"],
            "Critical: refused: input `reference`: invalid reference: cannot import module",
        ),
    ],
)
def test_bad_input_is_one_line(potential, aluminium_file, arguments, message):
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    result = invoke("validate", potential.pk, aluminium_file, *arguments)
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()), result.output
    if message.startswith("Critical"):
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_bad_structure_or_settings_file(potential, tmp_path):
    result = invoke("validate", potential.pk, tmp_path / "missing.cif")
    assert result.exit_code != 0 and "is neither a StructureData pk nor a file" in result.output
    settings = tmp_path / "list.yaml"
    settings.write_text("- eos\n")
    result = invoke("validate", potential.pk, potential.pk, "--settings", settings)
    assert result.exit_code != 0
    assert "holds a YAML list, not a mapping of validation settings" in " ".join(result.output.split())


def test_cutoff_check_on_a_given_dataset(potential, aluminium_file):
    dataset = DatasetData.from_atoms(emt_aluminium_images(6, seed=5)).store()
    result = invoke(
        "validate", potential.pk, aluminium_file, "--properties", "cutoff", "--dataset", dataset.pk
    )
    assert result.exit_code == 0, result.output
    lines = {
        line.split()[0]: line.split() for line in result.output.splitlines() if line.startswith("cutoff.")
    }
    assert list(lines) == [
        "cutoff.energy_change_0.5",
        "cutoff.force_change_0.5",
        "cutoff.energy_change_1",
        "cutoff.force_change_1",
    ]
    force = lines[
        "cutoff.force_change_1"
    ]  # mean +- std over members, unit; no reference, difference, tolerance
    assert float(force[1]) > 0 and force[2] == "+-" and force[4:] == ["meV/Angstrom", "-", "-", "-", "-"]
    refused = invoke("validate", potential.pk, aluminium_file, "--properties", "cutoff")
    assert refused.exit_code != 0 and "records no training set" in refused.output
