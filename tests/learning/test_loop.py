"""The AiiDA-free active-learning loop: two tiny iterations on EMT aluminium, and its input checks."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_mlip.learning.loop import LoopSettings, run_active_learning
from aiida_mlip.settings import SettingsError

TINY = {
    "initial": {"copies_per_structure": 5, "rattle": 0.08, "strain": 0.03, "seed": 0},
    "exploration": {
        "md": {"steps": 60, "timestep": 2.0, "check_interval": 5, "walkers": 1},
        "schedule": [{"temperatures": [300]}, {"temperatures": [[600, 900]]}],
    },
    "trust": {"lo": 0.02, "hi": 0.3},
    "selection": {"strategy": "max_deviation", "budget": 3},
    "convergence": {"accurate_fraction": 0.99, "max_iterations": 2},
    "training": {
        "committee_size": 2,
        "cutoff": 4.0,
        "n_radial": 4,
        "l_max": 1,
        "hidden": 8,
        "max_epochs": 8,
        "patience": 8,
        "batch_size": 4,
        "lr": 0.01,
        "bootstrap": False,
    },
    "warm_start": True,
    "warm_start_parameters": {"lr": 0.005},
}


def aluminium():
    return bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))


def rattled_test_frames(count=4, amplitude=0.1):
    rng = np.random.default_rng(5)
    images = []
    for _ in range(count):
        atoms = aluminium()
        atoms.positions += rng.normal(0.0, amplitude, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        images.append(atoms)
    return images


def test_two_iterations_record_where_labels_came_from():
    lines = []
    records = run_active_learning(
        [aluminium()],
        EMT,
        TINY,
        strategy="random",
        seed=1,
        test_sets={"rattled": rattled_test_frames()},
        log=lines.append,
    )
    initial, *iterations = records
    assert initial["iteration"] == 0
    assert initial["labels_origin"] == {"initial": 6}
    assert initial["n_labels_total"] == 6
    assert len(iterations) == 2
    total = 6
    for number, record in enumerate(iterations, start=1):
        assert record["iteration"] == number
        n_checked = record["n_accurate"] + record["n_candidate"] + record["n_failed"]
        assert n_checked == record["n_explored"] > 0
        assert record["accurate_fraction"] == pytest.approx(record["n_accurate"] / n_checked)
        assert 0 <= record["n_labelled"] <= 3
        assert record["n_labelled"] == record["n_selected"] - record["n_label_failures"]
        assert sum(record["labels_origin"].values()) == record["n_selected"]
        total += record["n_labelled"]
        assert record["n_labels_total"] == total
        assert record["trust"] == {"lo": 0.02, "hi": 0.3, "source": "fixed"}
        rmse = record["test_rmse_forces"]["rattled"]
        assert 0.0 < rmse < 5.0  # eV/Angstrom, a finite error of a real committee
        assert set(record["times"]) >= {"explore", "select", "label", "test"}
        assert all(value >= 0 for value in record["times"].values())
        assert record["wall_time"] >= sum(record["times"].values()) - 1e-9
        if record["n_labelled"]:
            # pooled: every label since the initial training, each judged by the committee before it,
            # and every committee's validation frames
            calibration = record["calibration"]
            assert calibration["n_new_pairs"] == record["n_labelled"]
            assert calibration["n_validation_pairs"] >= 1
            assert calibration["n_pairs"] == total - 6 + calibration["n_validation_pairs"]
            assert calibration["fallback"] == (calibration["n_pairs"] < 10)
            assert record["training_status"] in ("ok", "no_improvement")
            assert record["epochs_run"] >= 1
            # the warm start knew which labels were new: the parent's training frames were passed on
            assert record["new_frames"]["n"] == record["n_labelled"]
            assert record["new_frames"]["forces_before"] > 0 and record["new_frames"]["forces_after"] > 0
    assert iterations[-1]["convergence"]["stop"]
    assert iterations[-1]["convergence"]["criterion"] in ("max_iterations", "converged", "no_new_labels")
    assert len(lines) == 3 and lines[0].startswith("iteration 0: 6 labelled")


def test_a_target_force_error_sets_the_next_window_from_the_calibration():
    settings = {
        **TINY,
        "exploration": {
            # walkers go on past hi, so that the pool has more than 10 frames
            "md": {"steps": 100, "timestep": 2.0, "check_interval": 5, "walkers": 2, "break_threshold": 5.0},
            "schedule": [{"temperatures": [300]}, {"temperatures": [600]}],
        },
        "trust": {"lo": 0.02, "hi": 0.3, "target_force_error": 0.1},
        "selection": {"strategy": "random", "budget": 10},
    }
    first, second = run_active_learning([aluminium()], EMT, settings, seed=0, log=None)[1:]
    assert first["trust"]["source"] == "fixed"
    calibration = first["calibration"]
    assert first["n_labelled"] == calibration["n_new_pairs"] == 10
    assert calibration["n_pairs"] == 10 + calibration["n_validation_pairs"]
    assert not calibration["fallback"]
    factor = max([calibration["factor"], *calibration["per_element"].values()])
    assert second["trust"]["lo"] == pytest.approx(0.1 / factor)
    assert second["trust"]["hi"] == pytest.approx(5 * 0.1 / factor)
    assert second["trust"]["source"] == "calibration of iteration 1 for target 0.1 eV/A"


def test_the_seed_changes_the_run_but_not_the_initial_set():
    settings = {**TINY, "convergence": {"max_iterations": 1}}
    first = run_active_learning([aluminium()], EMT, settings, strategy="random", seed=0, log=None)
    again = run_active_learning([aluminium()], EMT, settings, strategy="random", seed=0, log=None)
    assert first[1]["n_explored"] == again[1]["n_explored"]
    assert first[1]["rmse_forces"] == pytest.approx(again[1]["rmse_forces"], rel=1e-5)
    assert first[0]["rmse_forces"] == pytest.approx(again[0]["rmse_forces"], rel=1e-5)


def test_random_packings_are_relaxed_with_each_iterations_committee():
    """``exploration.generate.random`` in the loop: packings relaxed with the committee of the iteration."""
    generate = {"random": {"structures": 2, "atoms": 4, "steps": 20}, "max_share": 1.0}
    exploration = {**TINY["exploration"], "generate": generate}
    settings = {**TINY, "exploration": exploration, "convergence": {"max_iterations": 1}}
    (_, first) = run_active_learning([aluminium()], EMT, settings, strategy="random", seed=0, log=None)
    assert first["n_generated"] == 2 and first["n_generated_explored"] == 2
    for relaxation in first["generated_relaxations"]:
        assert (
            0 < relaxation["steps"] <= 20 and relaxation["max_force_deviation"] > 0
        )  # eV/A, the committee's
        assert relaxation["energy_per_atom"] < relaxation["start_energy_per_atom"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"selection": {"budget": 0}}, "selection.budget"),
        ({"trust": {"lo": 0.3, "hi": 0.1}}, "lo"),
        ({"intial": {}}, "unknown key `intial`; did you mean `initial`?"),
        ({"exploration": {"md": {"steps": 10}, "shedule": []}}, "unknown key `exploration.shedule`"),
        ({"exploration": {"schedule": [{"temperatures": []}]}}, "schedule entry 0 has no temperatures"),
        ({"exploration": {"md": {"stepz": 10}}}, "stepz"),
        ({"exploration": {"watch_gamma": True}}, "watches the committee deviation only"),
        ({"training": {"hiden": 8}}, "unknown key `training.hiden`; did you mean `hidden`?"),
        ({"warm_start_parameters": {"lr": -1.0}}, "warm_start_parameters.lr"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(settings, message):
    with pytest.raises((SettingsError, ValueError), match=message.replace("?", r"\?")):
        LoopSettings.from_mapping(settings)


def test_one_exploration_job_per_temperature_and_pressure():
    settings = LoopSettings.from_mapping(
        {
            "exploration": {
                "md": {"ensemble": "npt", "steps": 10},
                "schedule": [{"temperatures": [300, [600, 900]], "pressures": [0.0, 1.0]}],
            }
        }
    )
    window = settings.trust
    jobs = settings.exploration_jobs(3, window, seed=2)  # past the schedule's end: its last entry
    assert [(job.temperature, job.pressure) for job in jobs] == [
        ((300.0, 300.0), (0.0, 0.0)),
        ((300.0, 300.0), (1.0, 1.0)),
        ((600.0, 900.0), (0.0, 0.0)),
        ((600.0, 900.0), (1.0, 1.0)),
    ]
    assert len({job.seed for job in jobs}) == 4
    assert all(job.trust == window for job in jobs)


def test_a_labeller_must_be_a_calculator_class_or_mapping():
    with pytest.raises(TypeError, match="labeller must be an ASE calculator class"):
        run_active_learning([aluminium()], EMT(), TINY, log=None)


def test_a_parent_model_without_the_structures_elements_is_refused_before_anything_runs(tmp_path):
    from aiida_mlip.potentials.frames import Frames
    from aiida_mlip.potentials.train import save_committee, train_committee

    images = rattled_test_frames(count=4)
    result = train_committee(Frames.from_atoms(images), dict(TINY["training"], max_epochs=1), log=None)
    path = tmp_path / "parent.safetensors"
    save_committee(result.model, path)
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    settings = {**TINY, "training": {**TINY["training"], "parent_model": str(path), "bootstrap": True}}
    with pytest.raises(SettingsError, match=r"knows the elements \['Al'\], not \['Cu'\] of the structures"):
        run_active_learning([copper], EMT, settings, log=None)
    with pytest.raises(SettingsError, match="either a start `model` or training.parent_model"):
        run_active_learning([aluminium()], EMT, settings, model=result.model, log=None)
    with pytest.raises(SettingsError, match="does not exist"):
        LoopSettings.from_mapping({"training": {"parent_model": str(tmp_path / "none.safetensors")}})
