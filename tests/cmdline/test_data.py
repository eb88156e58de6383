"""``aiida-mlip potential|dataset`` and the same groups under ``verdi data mlip.*``, on the shared run."""

import numpy as np
import pytest
from aiida.cmdline.commands.cmd_verdi import verdi
from ase.io import read
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root
from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.potentials import load_calculator
from aiida_mlip.potentials.frames import Frames

#: The two ways to reach the data commands: the plugin's own root and verdi's data group.
ROOTS = {
    "aiida-mlip": (cmd_root, []),
    "verdi": (verdi, ["data"]),
}
GROUPS = {"potential": {"aiida-mlip": "potential", "verdi": "mlip.potential"}}
GROUPS["dataset"] = {"aiida-mlip": "dataset", "verdi": "mlip.dataset"}


@pytest.fixture(params=sorted(ROOTS))
def data_command(request):
    """``data_command("potential", "list", ...)`` runs under ``aiida-mlip`` and under ``verdi data``."""
    root, prefix = ROOTS[request.param]

    def invoke(group, *args):
        arguments = [*prefix, GROUPS[group][request.param], *(str(arg) for arg in args)]
        result = CliRunner().invoke(root, arguments, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def table_row(output: str, pk: int) -> list[str]:
    """The cells of the table row whose first cell is ``pk``."""
    (row,) = [line.split() for line in output.splitlines() if line.split()[:1] == [str(pk)]]
    return row


def test_potential_list(finished_run, data_command):
    potential = finished_run.node.outputs.potential
    row = table_row(data_command("potential", "list", "--element", "Al"), potential.pk)
    assert row[1:3] == ["Al", str(potential.committee_size)]
    assert str(potential.pk) not in data_command("potential", "list", "--element", "Cu")


def test_potential_show(finished_run, data_command):
    potential = finished_run.node.outputs.potential
    shown = data_command("potential", "show", potential.pk)
    assert potential.sha256 in shown  # every attribute is shown
    assert f"<{potential.creator.pk}>" in shown  # and the training run that made it


def test_potential_export_loads_without_aiida(finished_run, data_command, tmp_path):
    potential = finished_run.node.outputs.potential
    path = tmp_path / "al.safetensors"
    data_command("potential", "export", potential.pk, path)
    atoms = finished_run.node.outputs.dataset.get_atoms()[0]
    atoms.calc = load_calculator(path, device="cpu")
    expected = atoms.copy()
    expected.calc = potential.get_calculator(device="cpu")
    assert atoms.get_potential_energy() == pytest.approx(expected.get_potential_energy(), abs=1e-10)


def test_dataset_list(finished_run, data_command):
    listed = data_command("dataset", "list")
    for dataset in (finished_run.node.outputs.dataset, finished_run.called("label_initial").outputs.dataset):
        row = table_row(listed, dataset.pk)
        assert row[1:3] == [str(dataset.version), str(dataset.n_frames)]


def test_dataset_export_hdf5_is_bit_exact(finished_run, data_command, tmp_path):
    dataset = finished_run.node.outputs.dataset
    path = tmp_path / "train.h5"
    data_command("dataset", "export", dataset.pk, path)
    assert path.read_bytes() == dataset.base.repository.get_object_content(DatasetData.FILENAME, mode="rb")
    back, original = Frames.read_hdf5(path), dataset.get_frames()
    for name in (
        "numbers",
        "positions",
        "offsets",
        "cells",
        "pbc",
        "energy",
        "forces",
        "stress",
        "source_uuid",
    ):
        np.testing.assert_array_equal(getattr(back, name), getattr(original, name), err_msg=name)


def test_dataset_export_extxyz(finished_run, data_command, tmp_path):
    dataset = finished_run.node.outputs.dataset
    path = tmp_path / "train.extxyz"
    data_command("dataset", "export", dataset.pk, path)
    images = read(path, index=":")
    frames = dataset.get_frames()
    assert len(images) == dataset.n_frames
    np.testing.assert_allclose([atoms.get_potential_energy() for atoms in images], frames.energy, atol=1e-6)
    np.testing.assert_allclose(
        np.concatenate([atoms.get_forces() for atoms in images]), frames.forces, atol=1e-6
    )
    np.testing.assert_allclose(
        np.concatenate([atoms.positions for atoms in images]), frames.positions, atol=1e-6
    )


#: each test here (or its fixtures) takes over ~30 s: `make test` starts this file early (tests/conftest.py)
pytestmark = pytest.mark.slow
