"""Model files are tamper-evident: any edit of the metadata, hyperparameters or weights is refused."""

from __future__ import annotations

import json
import pathlib
import struct

import pytest
import torch

from aiida_mlip.potentials.committee import CommitteePotential, load_committee, save_committee
from aiida_mlip.potentials.model_file import (
    INTEGRITY_KEY,
    METADATA_KEY,
    ModelFileError,
    read_model_file,
    read_model_metadata,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A committee of two Al/Cu members written with training metrics, as bytes."""
    model = CommitteePotential(["Al", "Cu"], cutoff=4.5, hidden=8, committee_size=2)
    path = tmp_path_factory.mktemp("model") / "al.safetensors"
    save_committee(model, path, {"training_set_uuid": "abc", "training_metrics": {"rmse": {"forces": 0.1}}})
    return path.read_bytes()


def _split(raw: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def _join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _with_metadata(raw: bytes, metadata_text: str) -> bytes:
    header, body = _split(raw)
    header["__metadata__"][METADATA_KEY] = metadata_text
    return _join(header, body)


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return list(reversed(value)) + ["Fe"]
    if value is None:
        return "x"
    return {"x": 1}


def _leaves(metadata, prefix=()):
    for key, value in metadata.items():
        if isinstance(value, dict) and value and key != INTEGRITY_KEY:
            yield from _leaves(value, (*prefix, key))
        elif key != INTEGRITY_KEY or prefix:
            yield (*prefix, key)


def _metadata(raw):
    return json.loads(_split(raw)[0]["__metadata__"][METADATA_KEY])


def test_untouched_file_loads(exported, tmp_path):
    path = tmp_path / "al.safetensors"
    path.write_bytes(exported)
    tensors, metadata = read_model_file(path)
    assert metadata["hyperparameters"]["cutoff"] == 4.5 and metadata["format_version"] == 2
    assert set(metadata[INTEGRITY_KEY]["tensors"]) == set(tensors)
    load_committee(path)


def test_every_metadata_field_is_covered(exported, tmp_path):
    metadata = _metadata(exported)
    fields = list(_leaves(metadata))
    assert ("hyperparameters", "cutoff") in fields and ("reference_energies", "Cu") in fields
    assert ("training_metrics", "rmse", "forces") in fields and len(fields) > 15
    path = tmp_path / "al.safetensors"
    for field in fields:
        edited = json.loads(json.dumps(metadata))
        holder = edited
        for key in field[:-1]:
            holder = holder[key]
        holder[field[-1]] = _changed(holder[field[-1]])
        path.write_bytes(_with_metadata(exported, json.dumps(edited)))
        name = ".".join(field)
        with pytest.raises(ModelFileError, match=str(path)) as info:
            load_committee(path)
        if field[0] not in ("format", "format_version"):
            assert f"`{name}`" in str(info.value), (name, str(info.value))
        with pytest.raises(ModelFileError, match=str(path)):
            read_model_metadata(path)


def test_issue_example_cutoff_edit_names_the_field(exported, tmp_path):
    metadata = _metadata(exported)
    metadata["hyperparameters"]["cutoff"] = 4.0
    path = tmp_path / "al.safetensors"
    path.write_bytes(_with_metadata(exported, json.dumps(metadata)))
    message = f"{path}: metadata field `hyperparameters.cutoff` does not match the digest"
    with pytest.raises(ModelFileError, match=message):
        load_committee(path)


def test_added_removed_and_restructured_fields_are_refused(exported, tmp_path):
    path = tmp_path / "al.safetensors"
    cases = {
        "added": (lambda m: m.update(extra=1), "metadata field `extra` is not covered"),
        "removed": (lambda m: m.pop("training_set_uuid"), "metadata field `training_set_uuid` is missing"),
        "record": (lambda m: m[INTEGRITY_KEY].update(sha256="0" * 64), "`integrity.sha256`"),
        "no record": (lambda m: m.pop(INTEGRITY_KEY), "`integrity` is missing"),
        "digest": (
            lambda m: m[INTEGRITY_KEY]["fields"].update(cutoff="0" * 64),
            "metadata field `cutoff` does not match",
        ),
    }
    for edit, message in cases.values():
        metadata = _metadata(exported)
        edit(metadata)
        path.write_bytes(_with_metadata(exported, json.dumps(metadata)))
        with pytest.raises(ModelFileError, match=message):
            read_model_file(path)


def test_a_byte_of_each_tensor_is_covered(exported, tmp_path):
    header, body = _split(exported)
    path = tmp_path / "al.safetensors"
    names = [name for name in header if name != "__metadata__"]
    assert len(names) > 5
    for name in names:
        start, end = header[name]["data_offsets"]
        if start == end:
            continue
        edited = bytearray(body)
        edited[(start + end) // 2] ^= 0x01
        path.write_bytes(_join(header, bytes(edited)))
        with pytest.raises(ModelFileError, match=rf"{path}: tensor `{name}` does not match the digest"):
            load_committee(path)


def test_broken_or_old_metadata_names_the_file(exported, tmp_path):
    path = tmp_path / "al.safetensors"
    for text, message in (
        ('{"format": "aiida-mlip-committee", ', "the metadata is not valid JSON"),
        ("[1, 2]", "the metadata is a JSON list, not an object"),
        (json.dumps(dict(_metadata(exported), format_version=1)), "format version 1, whose digest covers"),
        (json.dumps(dict(_metadata(exported), format_version="2")), "`format_version` is '2'"),
    ):
        path.write_bytes(_with_metadata(exported, text))
        with pytest.raises(ModelFileError, match=rf"{path}.*{message}"):
            load_committee(path)
    path.write_bytes(b"\x00" * 7)
    with pytest.raises(ModelFileError, match=str(path)):
        read_model_file(path)


def test_load_round_trip_keeps_weights(exported, tmp_path):
    path = pathlib.Path(tmp_path / "al.safetensors")
    path.write_bytes(exported)
    model = load_committee(path)
    tensors, _ = read_model_file(path)
    for name, value in model.state_dict().items():
        assert torch.equal(value, tensors[name])
