"""Figures of the linear stages: class templates, training curves, search trials."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cifarlab.linear.plots import search_figure, templates_figure, training_figure
from cifarlab.plots import save_figure

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_templates_are_the_weight_columns_as_32x32_colour_images():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3072, 10))
    fig = templates_figure(W, NAMES, "hinge")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == NAMES
    low, high = W.min(), W.max()
    for index in (0, 7):
        shown = panels[index].images[0].get_array()
        assert shown.shape == (32, 32, 3)
        # Pixel (row r, column c, channel k) of class j is W[k * 1024 + r * 32 + c, j].
        expected = (W[:, index].reshape(3, 32, 32).transpose(1, 2, 0) - low) / (high - low)
        np.testing.assert_allclose(shown, expected)
        assert shown[2, 5, 1] == pytest.approx((W[1024 + 2 * 32 + 5, index] - low) / (high - low))


def test_constant_weights_show_grey_instead_of_dividing_by_zero():
    fig = templates_figure(np.zeros((3072, 3)), NAMES[:3])
    assert np.all(fig.axes[0].images[0].get_array() == 0.5)


@pytest.mark.parametrize("shape", [(3071, 10), (3072, 9), (3072,)])
def test_templates_reject_a_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"W must have shape \(3072, 10\)"):
        templates_figure(np.zeros(shape), NAMES)


def test_training_figure_marks_the_kept_epoch_and_saves(tmp_path):
    fig = training_figure([3.0, 2.0, 1.5, 1.4], [0.3, 0.4], [0.28, 0.35], "t", best_epoch=1)
    ax_acc = fig.axes[1]
    assert [line.get_label() for line in ax_acc.get_lines()] == ["train", "val", "weights kept"]
    save_figure(fig, str(tmp_path / "plots" / "curves.png"))
    assert (tmp_path / "plots" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_search_figure_circles_the_best_trial():
    table = pd.DataFrame(
        {
            "learning_rate": [1e-6, 1e-5, 3e-6],
            "reg": [100.0, 1000.0, 300.0],
            "batch_size": [500, 1000, 500],
            "val_accuracy": [0.30, 0.41, 0.38],
        }
    )
    fig = search_figure(table)
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "best: val 0.410"
