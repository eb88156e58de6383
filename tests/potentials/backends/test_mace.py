"""The ``mace`` backend: a tiny committee of two MACE models trained on EMT aluminium.

Skipped where mace-torch is not installed (``pip install 'aiida-mlip[mace]'``); under ``CI=true``
(where ``make install`` installs the extra) its absence is a failure.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from aiida_mlip.potentials.frames import Frames
from aiida_mlip.potentials.model_file import ModelFileError, read_model_metadata
from tests.conftest import require_component
from tests.potentials.emt_data import md_frames

TINY = {
    "backend": "mace",
    "committee_size": 2,
    "max_epochs": 2,
    "min_epochs": 1,
    "cutoff": 4.0,
    "mace": {"channels": 8, "interactions": 1, "correlation": 2},
}


@pytest.fixture(scope="module")
def mace_backend():
    require_component(
        importlib.util.find_spec("mace") is not None, "mace-torch (pip install 'aiida-mlip[mace]')"
    )
    from aiida_mlip.potentials.backends import get_backend

    return get_backend("mace")


@pytest.fixture(scope="module")
def trained(mace_backend, tmp_path_factory):
    """Ten EMT Al frames (4 atoms, 600 K), a committee of two trained for 2 epochs, saved."""
    from aiida_mlip.potentials.train import TrainConfig

    frames = Frames.from_atoms(md_frames(600, 10, seed=1, repeat=1))
    result = mace_backend.train(frames, TrainConfig.from_mapping(TINY), log=None, device="cpu")
    path = tmp_path_factory.mktemp("mace") / "model.safetensors"
    mace_backend.save(result.model, path, {"training_frames": result.training_frames})
    return frames, result, path


def test_training_learns_and_records_the_backend(trained):
    frames, result, path = trained
    assert result.status == "ok" and result.metrics["epochs_run"] == 2
    curve = [row["valid_loss"] for row in result.history]
    assert curve[-1] < result.metrics["initial_valid_loss"]
    assert set(result.metrics["valid"]) == {"mean", "member_0", "member_1"}
    metadata = read_model_metadata(path)
    from importlib.metadata import version

    assert metadata["backend"] == "mace" and metadata["backend_version"] == version("mace-torch")
    assert metadata["architecture"] == "mace-committee" and metadata["elements"] == ["Al"]
    assert metadata["committee_size"] == 2 and metadata["cutoff"] == 4.0
    assert len(metadata["training_frames"]) == len(frames)


def test_calculator_results_features_and_reload(trained, mace_backend):
    """Same results keys and shapes as the built-in calculator; a reloaded file predicts the same."""
    from aiida_mlip.potentials import load_calculator
    from aiida_mlip.potentials.calculator import CommitteeCalculator

    frames, result, path = trained
    atoms = frames.to_atoms(4)
    loaded = load_calculator(path, device="cpu")  # dispatches on the file's backend
    direct = CommitteeCalculator(result.model, device="cpu")
    for calculator in (loaded, direct):
        calculator.calculate(atoms.copy(), ["energy", "forces", "stress"])
    shapes = {key: np.shape(value) for key, value in loaded.results.items()}
    assert shapes == {
        "energy": (),
        "free_energy": (),
        "energies": (4,),
        "forces": (4, 3),
        "stress": (6,),
        "committee_energy": (2,),
        "committee_forces": (2, 4, 3),
        "force_deviation": (4,),
        "max_force_deviation": (),
        "energy_deviation": (),
    }
    assert (loaded.results["force_deviation"] >= 0).all() and loaded.results["max_force_deviation"] > 0
    for key in loaded.results:
        np.testing.assert_allclose(loaded.results[key], direct.results[key], rtol=0, atol=1e-6)
    np.testing.assert_allclose(loaded.results["energies"].sum(), loaded.results["energy"], atol=1e-4)
    # invariant node features: every member's concatenated, or member 0's
    assert mace_backend.features(loaded, atoms).shape == (4, 2 * 8)
    assert loaded.get_features(atoms, kind="descriptor").shape == (4, 8)
    assert [member.committee_size for member in loaded.member_calculators()] == [1, 1]


def test_evaluate_many_is_each_configuration_alone(trained, mace_backend):
    """One pass over graphs of 4, 32 and 4 atoms (a batch of three): each as if alone."""
    from aiida_mlip.potentials import load_calculator
    from aiida_mlip.potentials.neighbours import VerletList
    from tests.potentials.emt_data import aluminium

    frames, _, path = trained
    calculator = load_calculator(path, device="cpu", dtype="float64")
    larger = aluminium(2)
    larger.rattle(0.05, seed=1)
    configurations = [frames.to_atoms(1), larger, frames.to_atoms(7)]
    answers = calculator.evaluate_many(
        configurations, [VerletList(calculator.cutoff) for _ in configurations]
    )
    for atoms, answer in zip(configurations, answers, strict=True):
        alone = load_calculator(path, device="cpu", dtype="float64")
        alone.calculate(atoms.copy(), ["energy", "forces", "stress"])
        assert set(answer) == set(alone.results)
        for key, value in alone.results.items():
            np.testing.assert_allclose(answer[key], value, rtol=1e-9, atol=1e-9, err_msg=key)


def test_forces_and_stress_are_derivatives_of_the_energy(trained, mace_backend):
    """Forces and stress against central differences of the energy (float64)."""
    from aiida_mlip.potentials.calculator import CommitteeCalculator

    frames, _, path = trained
    model = mace_backend.load(path)

    def energy(image) -> float:
        image.calc = CommitteeCalculator(model, device="cpu", dtype="float64", skin=0.0)
        return image.get_potential_energy()

    atoms = frames.to_atoms(7)
    energy(atoms)
    forces, stress = atoms.get_forces(), atoms.get_stress()
    step = 1e-4
    for axis in range(3):
        moved = [atoms.copy() for _ in range(2)]
        moved[0].positions[0, axis] += step
        moved[1].positions[0, axis] -= step
        assert forces[0, axis] == pytest.approx(-(energy(moved[0]) - energy(moved[1])) / (2 * step), abs=1e-6)
    strained = []
    for sign in (1, -1):
        image = atoms.copy()
        image.set_cell(atoms.cell.array @ (np.eye(3) + sign * step * np.diag([1, 0, 0])), scale_atoms=True)
        strained.append(energy(image))
    assert stress[0] == pytest.approx((strained[0] - strained[1]) / (2 * step) / atoms.get_volume(), abs=1e-7)


def test_warm_start_and_a_parent_of_another_backend(trained, mace_backend, tmp_path):
    from aiida_mlip.potentials.train import TrainConfig

    frames, result, path = trained
    config = TrainConfig.from_mapping({**TINY, "max_epochs": 1})
    warm = mace_backend.train(frames, config, init=path, log=None, device="cpu")
    assert warm.metrics["new_frames"]["n"] == 0  # the parent's file lists every frame as seen
    assert warm.metrics["initial_valid_loss"] == pytest.approx(result.metrics["best_valid_loss"], rel=1e-4)
    builtin = tmp_path / "builtin.safetensors"
    from aiida_mlip.potentials.committee import CommitteePotential, save_committee

    save_committee(CommitteePotential(["Al"], cutoff=4.0, committee_size=2, hidden=4), builtin)
    with pytest.raises(
        ModelFileError, match="holds a 'aiida-mlip-power-spectrum-committee' model, not 'mace-committee'"
    ):
        mace_backend.train(frames, config, init=builtin, log=None, device="cpu")


def test_explore_executable_runs_a_mace_committee(trained, tmp_path):
    """``aiida-mlip-explore`` reads the backend from the file: MD, deviations and the grade from MACE features."""
    import csv
    import json

    import yaml
    from ase.io import write

    from aiida_mlip.engine.explore import main

    frames, _, path = trained
    frames.write_hdf5(tmp_path / "training.h5")
    write(tmp_path / "start.extxyz", [frames.to_atoms(0)])
    parameters = {
        "temperature": 300,
        "steps": 20,
        "check_interval": 5,
        "write_interval": 10,
        "trust": {"lo": 0.05, "hi": 5.0},
    }
    (tmp_path / "parameters.yaml").write_text(yaml.safe_dump(parameters))
    argv = ["--model", str(path), "--structures", str(tmp_path / "start.extxyz"), "--device", "cpu"]
    argv += ["--parameters", str(tmp_path / "parameters.yaml"), "--training", str(tmp_path / "training.h5")]
    from aiida_mlip.selection.maxvol import RankDeficientWarning

    # 40 environments of a 4-atom fcc cell span fewer directions than the 16 features: said, not hidden
    with pytest.warns(RankDeficientWarning, match="Al: 40 environments of rank"):
        assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["walkers"][0]["steps_done"] == 20
    with open(tmp_path / "out" / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5  # steps 0, 5, ..., 20
    assert all(float(row["max_force_deviation"]) >= 0 and np.isfinite(float(row["gamma"])) for row in rows)
