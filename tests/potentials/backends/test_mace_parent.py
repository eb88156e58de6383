"""Fine-tuning a MACE committee from a mace-torch model file (``training.parent_model``).

A tiny MACE model trained here and saved the way mace-torch saves its models (``torch.save`` of the
``ScaleShiftMACE`` module) stands in for a foundation model. Skipped without mace-torch (a failure
under ``CI=true``).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.model_file import file_sha256, read_model_metadata
from tests.conftest import require_component
from tests.potentials.emt_data import md_frames

TINY = {
    "backend": "mace",
    "committee_size": 1,
    "max_epochs": 1,
    "min_epochs": 1,
    "cutoff": 4.0,
    "mace": {"channels": 8, "interactions": 1, "correlation": 2},
}


@pytest.fixture(scope="module")
def foundation(tmp_path_factory):
    """A one-member MACE trained for one epoch on 600 K EMT Al, saved as mace-torch saves a model."""
    require_component(
        importlib.util.find_spec("mace") is not None, "mace-torch (pip install 'aiida-mlip[mace]')"
    )
    from aiida_mlip.potentials.backends import get_backend
    from aiida_mlip.potentials.train import train_committee

    frames = Frames.from_atoms(md_frames(600, 6, seed=1, repeat=1))
    kind = get_backend("mace").model_kind()
    result = train_committee(frames, TINY, log=None, device="cpu", kind=kind)
    folder = tmp_path_factory.mktemp("foundation")
    torch.save(result.model.members[0], folder / "foundation.model")
    kind.save(result.model, folder / "committee.safetensors", None)
    return result.model, folder


def _predict(model, atoms):
    from aiida_mlip.potentials.calculator import CommitteeCalculator

    atoms = atoms.copy()
    atoms.calc = CommitteeCalculator(model, device="cpu")
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.calc.results["committee_forces"]


def test_a_mace_torch_file_is_adopted_with_its_architecture(foundation, tmp_path):
    from aiida_mlip.potentials.backends.mace_parent import read_mace_torch_model
    from aiida_mlip.potentials.parent_model import parent_backend, write_parent_model

    trained, folder = foundation
    path = folder / "foundation.model"
    assert parent_backend(path) == "mace"
    adopted = read_mace_torch_model(path)
    assert adopted.elements == ["Al"] and adopted.committee_size == 1 and adopted.cutoff == 4.0
    assert adopted.hyperparameters["interaction_cls"] == "RealAgnosticResidualInteractionBlock"
    atoms = md_frames(900, 1, seed=5, repeat=1)[0]
    energy, forces, _ = _predict(trained, atoms)
    assert _predict(adopted, atoms)[0] == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(_predict(adopted, atoms)[1], forces, atol=1e-6)
    # the node's file: a safetensors MACE committee, no pickle, the source file's digest recorded
    converted = write_parent_model(path, "mace", tmp_path / "parent.safetensors")
    metadata = read_model_metadata(converted)
    assert metadata["backend"] == "mace" and metadata["parent_source"]["sha256"] == file_sha256(path)
    from aiida_mlip.potentials.backends import get_backend

    assert _predict(get_backend("mace").load(converted), atoms)[0] == pytest.approx(energy, abs=1e-6)


def test_a_committee_of_two_is_fine_tuned_from_the_file(foundation):
    from aiida_mlip.potentials.backends import get_backend
    from aiida_mlip.potentials.parent_model import committee_from_parent, load_parent_model
    from aiida_mlip.potentials.train import TrainConfig

    _, folder = foundation
    path = folder / "foundation.model"
    atoms = md_frames(900, 1, seed=5, repeat=1)[0]
    start = committee_from_parent(load_parent_model(path, "mace"), 2)
    members = _predict(start, atoms)[2]
    np.testing.assert_allclose(members[0], members[1], atol=1e-7)  # both members are the parent
    config = TrainConfig.from_mapping(dict(TINY, committee_size=2, parent_model=str(path)))
    hot = Frames.from_atoms(md_frames(900, 6, seed=2, repeat=1))
    result = get_backend("mace").train(hot, config, log=None, device="cpu")
    assert result.status in ("ok", "no_improvement") and result.model.committee_size == 2
    assert result.metrics["parent_model"]["sha256"] == file_sha256(path)
    assert result.metrics["new_frames"]["n"] == len(hot)  # a mace-torch file records no training frames
    assert result.metrics["initial_valid_loss"] > 0 and result.metrics["epochs_run"] == 1
    after = _predict(result.model, atoms)[2]
    assert np.abs(after[0] - after[1]).max() > 1e-6  # the bootstrap resamples set the members apart


def test_our_mace_committee_file_is_a_parent_too(foundation):
    from aiida_mlip.potentials.parent_model import committee_from_parent, load_parent_model, parent_backend

    trained, folder = foundation
    path = folder / "committee.safetensors"
    assert parent_backend(path) == "mace"
    model = committee_from_parent(load_parent_model(path, "mace"), 3)
    atoms = md_frames(900, 1, seed=5, repeat=1)[0]
    np.testing.assert_allclose(_predict(model, atoms)[1], _predict(trained, atoms)[1], atol=1e-6)


def test_a_mace_file_is_refused_for_the_builtin_backend(foundation):
    from aiida_mlip.potentials.train import TrainConfig
    from aiida_mlip.settings import SettingsError

    with pytest.raises(SettingsError, match=r"is a `mace` model but training.backend is `builtin`"):
        TrainConfig.from_mapping({"parent_model": str(foundation[1] / "foundation.model")})


def test_a_state_dict_is_not_a_model(foundation, tmp_path):
    from aiida_mlip.potentials.parent_model import ParentModelError, load_parent_model

    path = tmp_path / "state.pt"
    torch.save(foundation[0].members[0].state_dict(), path)
    with pytest.raises(ParentModelError, match="a mace-torch checkpoint or state dict"):
        load_parent_model(path, "mace")
