"""The backend interface: registry, dispatch on the model file, the built-in committee as backend ``builtin``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError

import numpy as np
import pytest

from aiida_mlip.potentials import load_calculator
from aiida_mlip.potentials.backends import backend_of, get_backend
from aiida_mlip.potentials.calculator import SPREAD_KEYS, CommitteeCalculator
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.model_file import ModelFileError, read_model_metadata
from aiida_mlip.potentials.train import TrainConfig
from aiida_mlip.settings import SettingsError
from tests.potentials.emt_data import md_frames


@pytest.fixture(scope="module")
def frames():
    return Frames.from_atoms(md_frames(600, 8, seed=3, repeat=1))


def test_builtin_backend_round_trip(frames, tmp_path):
    """Train, save, load through the interface: the file says `builtin`, the calculator predicts the same."""
    backend = get_backend("builtin")
    config = TrainConfig(
        committee_size=2, max_epochs=2, min_epochs=1, hidden=8, n_radial=4, l_max=1, cutoff=4.0
    )
    result = backend.train(frames, config, log=None)
    assert result.status == "ok" and result.metrics["epochs_run"] == 2
    path = tmp_path / "model.safetensors"
    backend.save(result.model, path, {"training_frames": result.training_frames})
    metadata = read_model_metadata(path)
    assert backend_of(metadata) == "builtin" and "backend" not in metadata  # files as before backends
    assert backend.version_of(metadata) == "architecture 1"

    atoms = frames.to_atoms(2)
    loaded = load_calculator(path, device="cpu")
    assert isinstance(loaded, CommitteeCalculator)
    direct = backend.calculator(result.model, device="cpu")
    for calculator in (loaded, direct):
        calculator.calculate(atoms.copy(), ["energy", "forces", "stress"])
    assert set(SPREAD_KEYS) <= set(loaded.results)
    for key in ("energy", "forces", "stress", "force_deviation"):
        np.testing.assert_allclose(loaded.results[key], direct.results[key], rtol=0, atol=1e-6)
    features = backend.features(loaded, atoms)
    assert features.shape == (len(atoms), 2 * 8)
    # a warm start from the saved file through the interface knows its frames: none is new
    warm = backend.train(frames, config, init=path, log=None)
    assert warm.metrics["new_frames"]["n"] == 0


def test_unknown_backend_and_file(tmp_path):
    with pytest.raises(ValueError, match="unknown model backend 'nequip'; known: builtin, mace"):
        get_backend("nequip")
    with pytest.raises(SettingsError, match="training.backend"):
        TrainConfig.from_mapping({"backend": "nequip"})
    with pytest.raises(ModelFileError, match="unknown architecture 'other'"):
        backend_of({"architecture": "other"})


def test_mace_without_mace_torch_names_the_extra(monkeypatch):
    """`backend: mace` where mace-torch is not installed: refused while reading the settings, naming the extra."""
    from aiida_mlip.potentials.backends import mace_settings

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(mace_settings, "package_version", missing)
    with pytest.raises(SettingsError) as refusal:
        TrainConfig.from_mapping({"backend": "mace"})
    assert str(refusal.value) == (
        "`training.backend`: the `mace` backend needs mace-torch: pip install 'aiida-mlip[mace]' (got 'mace')"
    )
