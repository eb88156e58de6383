"""Tests of ``DatasetData`` and ``merge_datasets``."""

import numpy as np
import pytest
from aiida.orm import QueryBuilder, load_node
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlip.data.dataset import DatasetData, merge_datasets
from aiida_mlip.potentials.frames import Frames


def emt_frames(count, seed=0, config_type="rattled"):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_forces()
        atoms.get_stress()
        images.append(atoms)
    return Frames.from_atoms(images, config_type=config_type)


def test_roundtrip_is_bit_exact_and_attributes_are_queryable(tmp_path):
    frames = emt_frames(5)
    node = DatasetData(frames).store()
    loaded = load_node(node.pk).get_frames()
    for name in ("positions", "forces", "energy", "stress", "cells", "numbers", "offsets", "pbc"):
        assert np.array_equal(getattr(loaded, name), getattr(frames, name)), name
    assert node.n_frames == 5 and node.n_atoms == 40
    assert node.elements == ["Al"] and node.base.attributes.get("n_stress") == 5
    assert node.base.attributes.get("config_types") == {"rattled": 5}
    found = (
        QueryBuilder().append(DatasetData, filters={"attributes.n_frames": 5, "id": node.pk}).all(flat=True)
    )
    assert found == [node]

    atoms = node.get_atoms()
    assert len(atoms) == 5
    assert atoms[2].get_potential_energy() == frames.energy[2]
    node.export_extxyz(tmp_path / "out.extxyz")
    again = DatasetData.from_extxyz(tmp_path / "out.extxyz").get_frames()
    # extxyz is the interchange format: ASE writes per-atom columns with 8 decimals
    np.testing.assert_allclose(again.forces, frames.forces, rtol=0, atol=1e-8)
    np.testing.assert_allclose(again.positions, frames.positions, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(again.energy, frames.energy)


def _count_datasets():
    return QueryBuilder().append(DatasetData).count()


def test_frame_without_forces_is_refused_and_nothing_stored():
    atoms = bulk("Al", cubic=True)
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=-1.0)
    before = _count_datasets()
    with pytest.raises(ValueError, match="frame 0 has no forces"):
        DatasetData.from_atoms([atoms]).store()
    assert _count_datasets() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"forces": np.zeros((7, 3))}, r"forces has shape \(7, 3\), expected \(8, 3\)"),
        ({"energy": np.zeros(2)}, r"energy has shape \(2,\), expected \(1,\)"),
        ({"cells": np.zeros((1, 3))}, r"cells has shape"),
        ({"energy": np.array([np.nan])}, "energy of frame 0 contains NaN"),
        ({"forces": np.full((8, 3), np.inf)}, "forces of frame 0 contains NaN or infinite"),
    ],
)
def test_bad_arrays_are_refused(change, message):
    arrays = dict(
        positions=np.random.default_rng(1).random((8, 3)) * 4,
        offsets=np.array([0, 8]),
        cells=np.eye(3)[None] * 4,
        pbc=np.ones((1, 3), bool),
        energy=np.zeros(1),
        forces=np.zeros((8, 3)),
    )
    arrays.update(change)
    before = _count_datasets()
    with pytest.raises(ValueError, match=message):
        DatasetData(Frames.from_arrays([["Al"] * 8], **arrays)).store()
    assert _count_datasets() == before


def test_unknown_element_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        Frames.from_arrays(
            [["Al"] * 7 + ["Xx"]],
            positions=np.zeros((8, 3)),
            offsets=[0, 8],
            cells=np.eye(3)[None],
            pbc=np.ones((1, 3), bool),
        )
    path = tmp_path / "bad.extxyz"
    emt_frames(1).write_extxyz(path)
    path.write_text(path.read_text().replace("\nAl ", "\nQq ", 1))
    with pytest.raises(ValueError, match="unknown element symbol"):
        DatasetData.from_extxyz(path)


def test_merge_creates_new_version_with_provenance():
    base = DatasetData(emt_frames(3, seed=1, config_type="initial")).store()
    new_a = DatasetData(emt_frames(2, seed=2, config_type="md")).store()
    new_b = DatasetData(emt_frames(1, seed=3, config_type="md")).store()
    merged = merge_datasets(base, label_a=new_a, label_b=new_b)
    assert merged.is_stored and merged.version == 2 and merged.n_frames == 6
    assert merged.base.attributes.get("parent_uuid") == base.uuid
    assert merged.base.attributes.get("config_types") == {"initial": 3, "md": 3}
    frames = merged.get_frames()
    np.testing.assert_array_equal(frames.energy[:3], base.get_frames().energy)
    np.testing.assert_array_equal(frames.energy[3:5], new_a.get_frames().energy)
    assert list(frames.source_uuid[3:]) == [new_a.uuid, new_a.uuid, new_b.uuid]
    creator = merged.creator
    incoming = {link.link_label: link.node for link in creator.base.links.get_incoming().all()}
    assert incoming["dataset"] == base and incoming["label_a"] == new_a and incoming["label_b"] == new_b
    again = merge_datasets(merged, more=DatasetData(emt_frames(1, seed=4)).store())
    assert again.version == 3 and again.n_frames == 7


def test_merge_refuses_labels_with_different_settings():
    base = DatasetData(emt_frames(1), label_settings={"ecutwfc": 30}).store()
    other = DatasetData(emt_frames(1), label_settings={"ecutwfc": 40}).store()
    with pytest.raises(ValueError, match="different settings"):
        merge_datasets(base, new=other)


def _extxyz_lines(tmp_path, count=3):
    path = tmp_path / "good.extxyz"
    emt_frames(count).write_extxyz(path)
    return path.read_text().splitlines()


def _frame_header(lines, frame):
    """Index of the comment line of ``frame`` (all frames of ``emt_frames`` have 8 atoms)."""
    return frame * 10 + 1


def _edit_comment(lines, frame, old, new):
    index = _frame_header(lines, frame)
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new, 1)


def _remove_key(lines, frame, key):
    import re

    index = _frame_header(lines, frame)
    lines[index] = re.sub(rf" {key}=\S+", "", lines[index])


def _strip_forces(lines, frame):
    index = _frame_header(lines, frame)
    lines[index] = lines[index].replace(":forces:R:3", "")
    for row in range(index + 1, index + 9):
        lines[row] = " ".join(lines[row].split()[:-3])


def _zero_atoms(lines, frame):
    index = _frame_header(lines, frame)
    lines[index - 1] = "0"
    del lines[index + 1 : index + 9]


def _set(lines, index, text):
    lines[index] = text


BAD_EXTXYZ = {
    "count too large": (lambda lines: _set(lines, 10, "9"), r"frame 1 declares 9 atoms but line 21 \('8'\)"),
    "count too small": (
        lambda lines: _set(lines, 10, "7"),
        r"frame 2: line 20 should hold the atom count, got 'Al .*\(frame 1 holds more atoms",
    ),
    "truncated": (
        lambda lines: lines.__delitem__(slice(25, None)),
        "frame 2 declares 8 atoms but the file ends after 3",
    ),
    "empty": (lambda lines: lines.clear(), r"no configurations \(the file holds no frames\)"),
    "zero atoms": (lambda lines: _zero_atoms(lines, 1), "frame 1 has no atoms"),
    "no energy": (
        lambda lines: (_remove_key(lines, 2, "energy"), _remove_key(lines, 2, "free_energy")),
        "frame 2 has no energy label",
    ),
    "no forces": (lambda lines: _strip_forces(lines, 1), "frame 1 has no forces label"),
    "nan energy": (
        lambda lines: (
            _remove_key(lines, 0, "free_energy"),
            _remove_key(lines, 0, "energy"),
            _set(lines, 1, lines[1] + " energy=nan"),
        ),
        "energy of frame 0 is nan, not a finite number",
    ),
    "nan position": (
        lambda lines: _set(lines, 13, lines[13].replace(lines[13].split()[1], "nan", 1)),
        "positions of frame 1 contains NaN",
    ),
    "flat cell": (
        lambda lines: _edit_comment(lines, 2, 'Lattice="8.1', 'Lattice="0.0'),
        "cell of frame 2 is degenerate along its periodic directions",
    ),
    "unknown element": (
        lambda lines: _set(lines, 3, lines[3].replace("Al", "Qq", 1)),
        "unknown element symbol",
    ),
    "garbage": (
        lambda lines: (lines.clear(), lines.extend(["hello", "world"])),
        "frame 0: line 1 should hold the atom count, got 'hello'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_EXTXYZ))
def test_malformed_extxyz_names_file_frame_and_problem(tmp_path, case):
    edit, message = BAD_EXTXYZ[case]
    lines = _extxyz_lines(tmp_path)
    edit(lines)
    path = tmp_path / "bad.extxyz"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    before = _count_datasets()
    with pytest.raises(ValueError, match=rf"^{path}: .*{message}") as info:
        DatasetData.from_extxyz(path).store()
    assert "Traceback" not in str(info.value)
    assert _count_datasets() == before


def test_zero_atom_frame_and_missing_file_are_named():
    from ase import Atoms

    with pytest.raises(ValueError, match="frame 0 has no atoms"):
        DatasetData.from_atoms([Atoms()])
    with pytest.raises(ValueError, match=r"missing.extxyz: cannot read the file"):
        DatasetData.from_extxyz("missing.extxyz")


def test_not_hdf5_is_named(tmp_path):
    path = tmp_path / "train.h5"
    path.write_text("not hdf5")
    with pytest.raises(ValueError, match=rf"{path}: not a readable HDF5 dataset file"):
        Frames.read_hdf5(path)
