"""The history of the session's shared run: its records, what was reported of them, its plot."""

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from aiida_mlip.history import plot_history


def test_records_match_the_provenance(finished_run):
    first, second = finished_run.node.outputs.history["iterations"]
    summary = finished_run.called("explore_1").outputs.summary
    assert first["n_explored"] == summary["n_checked"]
    assert first["n_accurate"] + first["n_candidate"] + first["n_failed"] == first["n_explored"]
    assert first["n_selected"] == finished_run.called("select_1").outputs.selected.n_frames
    assert first["n_labelled"] == finished_run.called("label_1").outputs.dataset.n_frames > 0
    assert first["n_train_frames"] == second["n_train_frames"] == finished_run.node.outputs.dataset.n_frames
    metrics = finished_run.called("train_1").outputs.metrics["valid"]["mean"]
    assert first["rmse_forces"] == metrics["forces"]
    # iteration 2 explores with a window no frame reaches: all accurate, nothing labelled
    assert second["n_accurate"] == second["n_explored"] > 0 and second["accurate_fraction"] == 1.0
    assert second["n_labelled"] == 0


def test_records_match_what_was_reported_on_the_way(finished_run):
    records = finished_run.node.outputs.history["iterations"]
    assert finished_run.node.base.extras.get("history") == records  # what `status` and polling read
    reported = [fields for step, fields in finished_run.watched() if step == "iteration"]
    assert len(reported) == len(records)
    for event, record in zip(reported, records, strict=True):
        for key in (
            "n_explored",
            "n_accurate",
            "n_candidate",
            "n_selected",
            "n_labelled",
            "accurate_fraction",
        ):
            # the database keeps 15 significant digits of a float (PostgreSQL JSONB), the event all 17
            assert event[key] == pytest.approx(record[key], rel=1e-12), key


def test_plot_shows_this_history(finished_run, tmp_path, monkeypatch):
    node = finished_run.node
    image = Image.open(io.BytesIO(node.outputs.history_plot.get_content(mode="rb")))
    assert image.format == "PNG"
    assert image.size == (1100, 770)  # 10 x 7 inches at 110 dpi
    pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank
    green = np.all(pixels == (44, 160, 44), axis=-1)  # tab:green, the training-set size bars
    assert green.sum() > 500
    # drawn from the records of the history output: the same records give the same pixels, also in a
    # process whose global style another library changed (importing mace-torch sets font.size 8)
    monkeypatch.setitem(matplotlib.rcParams, "font.size", 8.0)
    plot_history(
        node.outputs.history["iterations"], tmp_path / "again.png", title=f"Active learning <{node.pk}>"
    )
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "again.png").convert("RGB")), pixels)
