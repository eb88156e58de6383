"""Tests of ``PotentialData``: attributes, sha256 checks and export."""

import pathlib

import pytest
import torch
from aiida.manage import get_manager
from aiida.orm import QueryBuilder

from aiida_mlip.data.potential import PotentialData
from aiida_mlip.potentials.model_file import ModelFileError, read_model_file, write_model_file


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.safetensors"
    generator = torch.Generator().manual_seed(0)
    tensors = {"readout.weight": torch.randn(4, 16, 8, generator=generator), "scale": torch.ones(1)}
    metadata = {
        "architecture": "test-linear",
        "elements": ["Al", "Cu"],
        "cutoff": 5.0,
        "committee_size": 4,
        "training_set_uuid": None,
    }
    write_model_file(path, tensors, metadata)
    return path


def _flip_last_byte(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_attributes_and_query(model_file):
    node = PotentialData(file=model_file, training_set_uuid="1234").store()
    assert node.elements == ["Al", "Cu"] and node.cutoff == 5.0 and node.committee_size == 4
    assert node.architecture == "test-linear" and node.training_set_uuid == "1234"
    assert len(node.sha256) == 64
    assert node.model_backend is None and node.model_backend_version is None  # no backend reads "test-linear"
    query = QueryBuilder().append(
        PotentialData, filters={"attributes.elements": {"contains": ["Cu"]}, "id": node.pk}
    )
    assert query.count() == 1
    node.verify()


def test_export_gives_a_plain_file_that_loads_without_aiida(model_file, tmp_path):
    node = PotentialData(file=model_file).store()
    out = node.export(tmp_path / "exported.safetensors")
    tensors, metadata = read_model_file(out)
    assert metadata["elements"] == ["Al", "Cu"]
    assert torch.equal(tensors["readout.weight"], read_model_file(model_file)[0]["readout.weight"])
    with pytest.raises(FileExistsError):
        node.export(out)


def test_tampered_file_is_refused_naming_file_and_tensor(model_file):
    _flip_last_byte(model_file)
    with pytest.raises(ModelFileError, match=rf"{model_file}: tensor `scale` does not match the digest"):
        PotentialData(file=model_file)


def test_tampered_repository_object_is_refused_on_load(model_file):
    node = PotentialData(file=model_file).store()
    # Corrupt the object behind AiiDA's back, the way a disk error or an edit on the server would.
    container = get_manager().get_profile_storage().get_repository()._container
    key = node.base.repository.get_object(PotentialData.FILENAME).key
    loose = pathlib.Path(container._get_loose_path_from_hashkey(key))
    _flip_last_byte(loose)
    with pytest.raises(ModelFileError, match=f"expected sha256 {node.sha256}, found [0-9a-f]{{64}}"):
        node.verify()


def test_the_backend_is_recorded(tmp_path):
    """A file of the built-in committee: backend `builtin`, its architecture version, queryable."""
    from aiida_mlip.potentials.committee import CommitteePotential, save_committee

    path = tmp_path / "builtin.safetensors"
    save_committee(CommitteePotential(["Al"], cutoff=4.0, committee_size=2, hidden=4), path)
    node = PotentialData(file=path).store()
    assert node.model_backend == "builtin" and node.model_backend_version == "architecture 1"
    query = QueryBuilder().append(
        PotentialData, filters={"attributes.model_backend": "builtin", "id": node.pk}
    )
    assert query.count() == 1
