"""Active learning with ``training.backend: mace``: the same work chain, a committee of MACE models.

``aiida-mlip launch --backend mace`` runs the shared run's settings (fast protocol, EMT aluminium,
two iterations) with a tiny MACE committee in the foreground, then ``aiida-mlip lineage`` of its
potential. A few minutes on a loaded 2-core machine, hence ``science``; needs mace-torch (its absence
fails under ``CI=true``).
"""

from __future__ import annotations

import importlib.util

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import SHARED_RUN_LABELLER, require_component, shared_run_overrides

MACE_TRAINING = {
    "committee_size": 2,
    "cutoff": 4.0,
    "max_epochs": 3,
    "min_epochs": 1,
    "batch_size": 4,
    "valid_fraction": 0.2,
    "seed": 1,
    "mace": {"channels": 8, "interactions": 1, "correlation": 2},
}


@pytest.mark.science
def test_active_learning_with_the_mace_backend(aiida_profile, tmp_path):
    require_component(
        importlib.util.find_spec("mace") is not None, "mace-torch (pip install 'aiida-mlip[mace]')"
    )
    from aiida import orm
    from ase.build import bulk

    from aiida_mlip.cmdline import cmd_root
    from aiida_mlip.potentials.model_file import read_model_metadata

    overrides = dict(shared_run_overrides(), training=MACE_TRAINING)
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(overrides))
    structure = orm.StructureData(ase=bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))).store()
    arguments = ["launch", str(structure.pk), "--protocol", "fast", "--labeller", SHARED_RUN_LABELLER]
    launch = CliRunner().invoke(cmd_root, [*arguments, "--overrides", str(path), "--backend", "mace"])
    assert launch.exit_code == 0, launch.output

    node = (
        orm.QueryBuilder()
        .append(orm.WorkChainNode, filters={"attributes.process_label": "ActiveLearningWorkChain"})
        .all(flat=True)[-1]
    )
    assert node.exit_status == 0, node.exit_message
    assert node.inputs.train.parameters["backend"] == "mace"
    potential = node.outputs.potential
    assert potential.model_backend == "mace" and potential.architecture == "mace-committee"
    assert potential.model_backend_version == importlib.metadata.version("mace-torch")
    trainings = [n for n in node.called_descendants if n.process_label == "TrainCalculation"]
    assert len(trainings) >= 2  # the first committee and at least one retraining, warm-started
    with potential.as_path() as file:
        assert read_model_metadata(file)["backend"] == "mace"
    calculator = potential.get_calculator(device="cpu")
    atoms = structure.get_ase()
    atoms.calc = calculator
    assert atoms.get_forces().shape == (8, 3) and calculator.results["max_force_deviation"] >= 0

    lineage = CliRunner().invoke(cmd_root, ["lineage", str(potential.pk)])
    assert lineage.exit_code == 0, lineage.output
    labelling = [n for n in node.called_descendants if n.process_label == "LabelCalculation"]
    assert labelling and all(str(calculation.pk) in lineage.output for calculation in labelling)
