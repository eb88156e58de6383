"""A pw.x reference for the equation of state: silicon's committee against pw.x through ``aiida-mlip validate``.

Real pw.x runs (skipped without pw.x, failures under ``CI=true``) on the primitive 2-atom cell of
diamond Si: pslibrary's ultrasoft PBE pseudopotential at 20/80 Ry (the test family of
``test_pw_active_learning``) and PwBaseWorkChain's ``fast`` protocol (0.3/Angstrom: a 7x7x7 k-point
mesh, 20 irreducible points; about 2 CPU seconds per SCF, one thread). Five volume points, ions
fixed (``relax: none``), so the committee and pw.x compute the very same structures.

The committee is trained here on the pw.x labels of those five points, made by a ``LabellingWorkChain``
of their own with the same settings: the validation's reference must be the Birch-Murnaghan fit of
these independently computed energies. The validation runs through the README's command, on a pw.x
code registered as ``aiida-mlip setup pw`` registers it (``pw@localhost``).

The three tests of that run are a claim about the science (the committee beside pw.x's own EOS),
marked ``science`` and run by ``make science``; the refusals below run in ``make test``.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import yaml
from aiida import orm
from ase.build import bulk
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.foreground import run_get_node
from aiida_mlip.properties.eos import fit_equation_of_state, volume_points
from aiida_mlip.workflows.labelling import LabellingWorkChain
from aiida_mlip.workflows.validation import ValidationWorkChain
from tests.calculations.conftest import TINY_TRAINING, emt_aluminium_images
from tests.conftest import require_component
from tests.workflows.test_pw_active_learning import FAMILY, si_family  # noqa: F401

#: The EOS of the validation: five volumes over +-6% of the 5.43 Angstrom cell, no relaxation.
SETTINGS = {"eos": {"points": 5, "volume_range": 0.06, "relax": "none"}}
#: A committee small enough to train in seconds on five 2-atom frames (fits the energies to ~1 meV).
TRAINING = {
    "committee_size": 3,
    "n_radial": 4,
    "l_max": 2,
    "hidden": 16,
    "cutoff": 4.0,
    "max_epochs": 300,
    "min_epochs": 300,
    "batch_size": 5,
    "lr": 0.01,
    "valid_fraction": 0.0,
    "bootstrap": False,
    "seed": 3,
}


def silicon():
    """The primitive cell of diamond Si at 5.43 Angstrom (the cubic cell's lattice constant)."""
    return bulk("Si", "diamond", a=5.43)


def invoke(*args):
    return CliRunner().invoke(cmd_root, [str(arg) for arg in args])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """pw.x and torch on one thread each: on busy cores their threads only compete."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def pw_localhost(aiida_profile):
    """``pw@localhost``, registered as ``aiida-mlip setup pw`` does (one process, no mpirun)."""
    from aiida_mlip.codes import get_or_create_localhost, register_pw_code

    require_component(shutil.which("pw.x") is not None, "pw.x (apt-get install quantum-espresso)")
    return register_pw_code(get_or_create_localhost(), shutil.which("pw.x"), log=lambda *_: None)


@pytest.fixture(scope="module")
def training_labels(pw_localhost, si_family):  # noqa: F811
    """The pw.x labels of the five volume points, from a LabellingWorkChain of their own."""
    builder = LabellingWorkChain.get_builder()
    builder.structures = StructureSetData.from_atoms(volume_points(silicon(), SETTINGS["eos"]))
    builder.pw.code = pw_localhost
    builder.pw.pseudo_family = orm.Str(si_family.label)
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    return node.outputs.dataset


@pytest.fixture(scope="module")
def si_potential(training_labels, tmp_path_factory):
    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.potentials.train import save_committee, train_committee

    result = train_committee(
        training_labels.get_frames(), TRAINING, device="cpu", log=lambda *args, **kwargs: None
    )
    path = tmp_path_factory.mktemp("si_model") / "model.safetensors"
    save_committee(result.model, path)
    return PotentialData(file=path).store()


@pytest.fixture(scope="module")
def validation(si_potential, tmp_path_factory):
    """``aiida-mlip validate <potential> <structure> --properties eos --reference pw ...``: the output and the node."""
    settings = tmp_path_factory.mktemp("validate") / "validate.yaml"
    settings.write_text(yaml.safe_dump(SETTINGS))
    structure = orm.StructureData(ase=silicon()).store()
    result = invoke(
        "validate",
        si_potential.pk,
        structure.pk,
        "--properties",
        "eos",
        "--reference",
        "pw",
        "--pw-code",
        "pw@localhost",
        "--pseudo-family",
        FAMILY,
        "--settings",
        settings,
    )
    assert result.exit_code == 0, result.output
    pk = int(re.search(r"ValidationWorkChain<(\d+)>: finished", result.output).group(1))
    return result.output, orm.load_node(pk)


def eos_rows(node):
    return {row["quantity"]: row for row in node.outputs.comparison["quantities"]}


@pytest.mark.science
def test_reference_is_the_fit_of_independent_pw_energies(validation, training_labels):
    _, node = validation
    assert node.is_finished_ok, node.exit_message
    fit = node.outputs.reference_eos.get_dict()
    labels = sorted(training_labels.get_atoms(), key=lambda atoms: atoms.get_volume())
    # the validation's pw.x runs repeat those of the training labels: same energies
    np.testing.assert_allclose(fit["volumes"], [atoms.get_volume() for atoms in labels], rtol=1e-12)
    np.testing.assert_allclose(fit["energies"], [atoms.get_potential_energy() for atoms in labels], atol=1e-5)
    direct = fit_equation_of_state(
        silicon(),
        [atoms.get_volume() for atoms in labels],
        [atoms.get_potential_energy() for atoms in labels],
    ).scalars()
    rows = eos_rows(node)
    assert set(rows) == {"a0", "V0", "B0", "B0_prime"}
    for quantity, value in direct.items():
        if quantity != "E0":
            assert rows[quantity]["reference"] == pytest.approx(value, rel=1e-5), quantity
    # PBE silicon at these settings: a0 near 5.47 Angstrom, B0 near 88 GPa (both well converged values
    # are a0 5.47, B0 88-89 GPa); the minimum inside the scanned volumes
    assert 5.3 < rows["a0"]["reference"] < 5.6
    assert 75 < rows["B0"]["reference"] < 100
    assert fit["bracketed"] and fit["n_points"] == 5
    assert fit["max_force"] < 1e-3  # ions on symmetry-fixed positions
    assert np.all(np.diff(fit["pressures"]) < 0)  # pressure (GPa) falls as the volume grows
    assert fit["label_settings"]["ecutwfc"] == 20.0 and fit["label_settings"]["protocol"] == "fast"
    comparison = node.outputs.comparison.get_dict()
    assert comparison["reference"] == f"pw.x ({FAMILY}, 20/80 Ry, protocol fast)"
    assert comparison["n_judged"] == 4
    assert comparison["properties"]["eos"]["details"]["bracketed_reference"] is True
    # the committee, trained on these very labels, beside the reference
    for row in rows.values():
        assert len(row["members"]) == 3 and row["std"] >= 0
        assert row["difference"] == pytest.approx((row["mean"] - row["reference"]) / abs(row["reference"]))
    assert rows["a0"]["mean"] == pytest.approx(rows["a0"]["reference"], rel=0.01)
    assert rows["B0"]["mean"] == pytest.approx(rows["B0"]["reference"], rel=0.25)


@pytest.mark.science
def test_pw_calculations_are_descendants_that_feed_the_fit(validation):
    _, node = validation
    # called by the validation, through LabellingWorkChain and a PwBaseWorkChain each (CALL links)
    descendants = [
        called
        for called in node.called_descendants
        if called.process_type == "aiida.calculations:quantumespresso.pw"
    ]
    assert len(descendants) == 5 and all(calculation.is_finished_ok for calculation in descendants)
    called = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    labelling, fit = called["reference_labelling"], called["reference_fit"]
    assert labelling.process_label == "LabellingWorkChain" and fit.process_label == "fit_reference_eos"
    assert labelling.inputs.structures.uuid == called["reference_points"].outputs.result.uuid
    assert fit.inputs.labels.uuid == labelling.outputs.dataset.uuid
    assert fit.outputs.result.uuid == node.outputs.reference_eos.uuid
    # their outputs are (data-provenance) ancestors of the fit: output_parameters -> pw_label -> dataset
    feeding = (
        orm.QueryBuilder()
        .append(orm.CalcFunctionNode, filters={"id": fit.pk}, tag="fit")
        .append(
            orm.CalcJobNode,
            with_descendants="fit",
            filters={"process_type": "aiida.calculations:quantumespresso.pw"},
            project="id",
        )
        .all(flat=True)
    )
    assert sorted(set(feeding)) == sorted(calculation.pk for calculation in descendants)
    # each pw.x run computed one of the volume points
    volumes = sorted(calculation.inputs.structure.get_ase().get_volume() for calculation in descendants)
    np.testing.assert_allclose(volumes, node.outputs.reference_eos["volumes"], rtol=1e-12)
    # the fit is the reference of the eos rows and of the comparison
    assert called["eos"].inputs.reference_result.uuid == fit.outputs.result.uuid
    collector = node.outputs.comparison.creator
    assert collector.inputs.reference.uuid == fit.outputs.result.uuid


@pytest.mark.science
def test_the_command_prints_the_committee_beside_pw(validation):
    output, node = validation
    lines = {line.split()[0]: line for line in output.splitlines() if line.startswith("eos.")}
    assert list(lines) == ["eos.a0", "eos.V0", "eos.B0", "eos.B0_prime"]
    row = eos_rows(node)["a0"]
    assert f"{row['reference']:.4g}" in lines["eos.a0"].split()
    assert f"(reference pw.x ({FAMILY}, 20/80 Ry, protocol fast)); committee of 3" in output
    assert f"reference eos: 5 volume points labelled by pw.x ({FAMILY}, 20/80 Ry, protocol fast)" in " ".join(
        output.split()
    )


@pytest.fixture(scope="module")
def aluminium_potential(aiida_profile, tmp_path_factory):
    """A committee that knows Al (one epoch on four EMT frames: the refusals need its elements only)."""
    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import save_committee, train_committee

    settings = dict(TINY_TRAINING, max_epochs=1, min_epochs=1, valid_fraction=0.0)
    result = train_committee(
        Frames.from_atoms(emt_aluminium_images(4)), settings, device="cpu", log=lambda *args, **kwargs: None
    )
    path = tmp_path_factory.mktemp("al_model") / "model.safetensors"
    save_committee(result.model, path)
    return PotentialData(file=path).store()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--properties", "eos,elastic"],
            "Critical: refused: a pw reference supports: eos (asked for elastic too; validate those "
            "against an ASE reference or none)",
        ),
        (
            ["--properties", "eos"],
            f"Critical: refused: pw reference: pseudopotential family '{FAMILY}' has no pseudopotential for "
            "Al (it covers Si)",
        ),
    ],
)
def test_bad_pw_reference_is_refused_before_any_job(
    aluminium_potential,
    pw_localhost,
    si_family,  # noqa: F811
    tmp_path,
    arguments,
    message,
):
    path = tmp_path / "al.xyz"
    bulk("Al", "fcc", a=4.05).write(path)
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    result = invoke(
        "validate",
        aluminium_potential.pk,
        path,
        "--reference",
        "pw",
        "--pw-code",
        "pw@localhost",
        "--pseudo-family",
        FAMILY,
        *arguments,
    )
    assert result.exit_code != 0
    assert " ".join(result.output.split()) == message, result.output
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_work_chain_refuses_an_incomplete_or_doubled_reference(aluminium_potential, pw_localhost, si_family):  # noqa: F811
    inputs = {"potential": aluminium_potential, "structure": orm.StructureData(ase=bulk("Al", "fcc", a=4.05))}
    settings = orm.Dict({"properties": ["eos"]})
    for labelling, reference, message in (
        ({"pw": {"code": pw_localhost}}, None, "required value was not provided for 'pseudo_family'"),
        ({"pw": {"pseudo_family": orm.Str(FAMILY)}}, None, "required value was not provided for 'code'"),
        (
            {"pw": {"code": pw_localhost, "pseudo_family": orm.Str(FAMILY)}},
            orm.Dict({"calculator": "ase.calculators.emt.EMT"}),
            "two references given: either `reference` (an ASE calculator) or `reference_labelling` (pw.x)",
        ),
        ({"max_concurrent": orm.Int(1)}, None, "`reference_labelling` needs its `pw` namespace"),
    ):
        extra = {"reference": reference} if reference is not None else {}
        with pytest.raises(ValueError, match=re.escape(message)):
            run_get_node(
                ValidationWorkChain, **inputs, settings=settings, reference_labelling=labelling, **extra
            )
