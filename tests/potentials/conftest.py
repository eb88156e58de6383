"""Shared, session-scoped EMT data and trained committees for the potential tests."""

from __future__ import annotations

import pytest
import torch

from tests.potentials.emt_data import md_frames, test_set, training_set

torch.set_num_threads(1)  # steadier than 2 threads on a shared, loaded 2-core machine

ACCURACY_CONFIG = {"max_epochs": 8, "batch_size": 4, "lr": 5e-3, "patience": 100, "seed": 0}


@pytest.fixture(scope="session")
def al_train():
    """200 EMT frames of Al: MD at 300-1200 K, strained and vacancy cells (32/31 atoms)."""
    return training_set(seed=0)


@pytest.fixture(scope="session")
def al_test():
    """60 EMT frames like ``al_train``, from other trajectories."""
    return test_set(seed=1000)


@pytest.fixture(scope="session")
def trained(al_train):
    """A committee of 4 trained on ``al_train`` (the accuracy and NVE model)."""
    from aiida_mlip.potentials.train import train_committee

    return train_committee(al_train, ACCURACY_CONFIG, log=None)


@pytest.fixture(scope="session")
def cold_frames():
    """EMT frames at 300 K only (training set of the spread test) and held-out 300 K / 1500 K frames."""
    from aiida_mlip.potentials.frames import Frames

    return {
        "train": Frames.from_atoms(md_frames(300, 40, seed=7)),
        "like": Frames.from_atoms(md_frames(300, 8, seed=8)),
        "unlike": Frames.from_atoms(md_frames(1500, 8, seed=9)),
    }
