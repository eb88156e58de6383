"""Fine-tuning the built-in committee from a parent model file (``training.parent_model``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_mlip.potentials.committee import load_committee
from aiida_mlip.potentials.evaluation import evaluate_frames
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.model_file import file_sha256
from aiida_mlip.potentials.parent_model import (
    ParentModelError,
    check_parent_elements,
    committee_from_parent,
    parent_backend,
)
from aiida_mlip.potentials.train import TrainConfig, save_committee, train_committee
from aiida_mlip.settings import SettingsError
from tests.potentials.emt_data import md_frames

SMALL = {"n_radial": 4, "l_max": 2, "hidden": 16, "cutoff": 4.5, "batch_size": 4, "seed": 0}


@pytest.fixture(scope="module")
def parent_file(tmp_path_factory):
    """A committee of two trained on 300 K EMT aluminium (32 atoms): the parent brought by the user."""
    frames = Frames.from_atoms(md_frames(300, 16, seed=21))
    result = train_committee(frames, dict(SMALL, committee_size=2, max_epochs=20), log=None, device="cpu")
    path = tmp_path_factory.mktemp("parent") / "parent.safetensors"
    save_committee(result.model, path, {"training_frames": result.training_frames})
    return path


@pytest.fixture(scope="module")
def hot_frames():
    """The new task: 900 K frames, 8 to train on and 8 held out."""
    return Frames.from_atoms(md_frames(900, 8, seed=22)), Frames.from_atoms(md_frames(900, 8, seed=23))


def test_members_are_copies_of_the_parents_members(parent_file):
    parent = load_committee(parent_file)
    model = committee_from_parent(parent, 5)
    assert model.committee_size == 5 and model.elements == parent.elements
    batch = parent.batch(*_arrays(md_frames(300, 1, seed=3)[0]))
    with torch.no_grad():
        ours = model(batch, committee=True)["forces"]
        theirs = parent(batch, committee=True)["forces"]
    for k in range(5):
        torch.testing.assert_close(ours[k], theirs[k % 2], rtol=0, atol=1e-6)  # float32 batched products


def test_fine_tuning_starts_from_the_parent_and_beats_scratch(parent_file, hot_frames):
    """Same epochs, same data: the fine-tuned committee has the lower held-out force error."""
    train, test = hot_frames
    common = dict(SMALL, committee_size=3, max_epochs=6, min_epochs=6, lr=2e-3)
    tuned = train_committee(train, dict(common, parent_model=str(parent_file)), log=None, device="cpu")
    scratch = train_committee(train, common, log=None, device="cpu")
    assert tuned.status in ("ok", "no_improvement") and tuned.model.committee_size == 3
    assert tuned.metrics["parent_model"] == {
        "path": str(parent_file),
        "sha256": file_sha256(parent_file),
        "backend": "builtin",
        "parent_committee_size": 2,
    }
    # the parent was trained on 300 K frames only: every 900 K frame is new to it
    assert tuned.metrics["new_frames"]["n"] == len(train)
    # the parent's weights are a better start than random ones, and stay ahead after the same epochs
    assert tuned.metrics["initial_valid_loss"] < scratch.metrics["initial_valid_loss"]
    tuned_rmse = evaluate_frames(tuned.model, test)["mean"]["forces"]
    scratch_rmse = evaluate_frames(scratch.model, test)["mean"]["forces"]
    assert 0 < tuned_rmse < scratch_rmse, (tuned_rmse, scratch_rmse)
    # the architecture is the parent's, not the config's
    assert tuned.model.hidden == 16 and tuned.model.cutoff == pytest.approx(4.5)


def test_a_warm_start_takes_precedence(parent_file, hot_frames):
    train, _ = hot_frames
    config = dict(SMALL, committee_size=3, max_epochs=1, parent_model=str(parent_file))
    result = train_committee(train, config, init=parent_file, log=None, device="cpu")
    assert result.model.committee_size == 2 and "parent_model" not in result.metrics


def test_missing_or_unreadable_parent_is_refused_when_settings_are_read(tmp_path):
    with pytest.raises(SettingsError, match=r"parent_model: .*nowhere\.safetensors does not exist"):
        TrainConfig.from_mapping({"parent_model": str(tmp_path / "nowhere.safetensors")})
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model" * 10)
    with pytest.raises(SettingsError, match="neither a model file of aiida-mlip nor a mace-torch model"):
        TrainConfig.from_mapping({"parent_model": str(garbage)})
    with pytest.raises(SettingsError, match="does not exist or is not a file"):
        TrainConfig.from_mapping({"parent_model": str(tmp_path)})


def test_a_parent_of_another_backend_is_refused(parent_file):
    pytest.importorskip("mace")
    assert parent_backend(parent_file) == "builtin"
    with pytest.raises(SettingsError, match=r"is a `builtin` model but training.backend is `mace`"):
        TrainConfig.from_mapping({"backend": "mace", "parent_model": str(parent_file)})


def test_a_parent_without_the_elements_is_refused(parent_file):
    with pytest.raises(ParentModelError, match=r"knows the elements \['Al'\], not \['Cu'\]"):
        check_parent_elements(parent_file, "builtin", ["Al", "Cu"])
    from ase.build import bulk
    from ase.calculators.emt import EMT

    copper = [bulk("Cu", cubic=True).repeat(2) for _ in range(4)]
    for index, atoms in enumerate(copper):
        atoms.rattle(0.05, seed=index)
        atoms.calc = EMT()
        atoms.get_forces()
    with pytest.raises(ParentModelError, match=r"not \['Cu'\] of the data"):
        train_committee(Frames.from_atoms(copper), {"parent_model": str(parent_file)}, log=None)


def test_copies_without_bootstrap_are_refused(parent_file, hot_frames):
    """Three copies of two members trained on the same frames would stay identical: no spread."""
    config = dict(SMALL, committee_size=3, bootstrap=False, parent_model=str(parent_file))
    with pytest.raises(ParentModelError, match="needs `bootstrap: true`"):
        train_committee(hot_frames[0], config, log=None)


def _arrays(atoms):
    return atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc
