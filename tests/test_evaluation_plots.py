"""Figures of a test evaluation: confusion heat map, misclassified grid, nearest neighbours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from cifarlab.errors import ConfigError
from cifarlab.evaluation.metrics import evaluate_predictions, first_per_class
from cifarlab.evaluation.neighbors import neighbors_examples
from cifarlab.evaluation.outputs import EvaluationFiles, write_evaluation
from cifarlab.evaluation.plots import (
    OTHER,
    SAME,
    as_image,
    confusion_figure,
    misclassified_figure,
    neighbors_figure,
)
from cifarlab.io import staged_outputs
from cifarlab.knn.estimator import KNearestNeighbor
from cifarlab.plots import save_figure

NAMES = ["plane", "car", "bird"]


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072)).astype(np.uint8)


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_as_image_reads_the_channel_major_layout():
    row = np.arange(3072) % 251
    image = as_image(row)
    assert image.shape == (32, 32, 3)
    # Pixel (row r, column c, channel k) is row[k * 1024 + r * 32 + c].
    assert image[2, 5, 1] == row[1024 + 2 * 32 + 5]
    assert image[31, 0, 2] == row[2048 + 31 * 32]


def test_confusion_figure_shows_counts_and_colours_by_row_share():
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    fig = confusion_figure(confusion, NAMES, "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in confusion.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    shown = np.asarray(ax.images[0].get_array())
    # A class without test images is a row of zeros, not NaN.
    np.testing.assert_allclose(shown, [[0.8, 0.2, 0], [0.25, 0.75, 0], [0, 0, 0]])


def test_confusion_figure_refuses_a_wrong_shape():
    with pytest.raises(ConfigError, match=r"confusion must have shape \(3, 3\)"):
        confusion_figure(np.zeros((2, 3)), NAMES)


def test_misclassified_grid_is_one_row_per_true_class_captioned_with_the_prediction():
    X = images(6)
    y_true = np.array([0, 0, 1, 0, 2, 1])
    y_pred = np.array([1, 2, 1, 2, 0, 1])
    picked = first_per_class(y_true, 3, 2, where=y_true != y_pred)  # [[0, 1], [-1, -1], [4, -1]]
    fig = misclassified_figure(X, y_pred, picked, NAMES)
    assert len(fig.axes) == 3 * 2
    shown = image_axes(fig)
    assert [ax.get_title() for ax in shown] == ["→ car", "→ bird", "→ plane"]
    np.testing.assert_array_equal(shown[2].images[0].get_array(), as_image(X[4]))
    assert [fig.axes[i].get_ylabel() for i in (0, 2, 4)] == NAMES


def test_misclassified_grid_without_mistakes_says_so():
    picked = np.full((3, 4), -1)
    fig = misclassified_figure(images(2), [0, 1], picked, NAMES)
    assert not image_axes(fig)
    assert fig.texts[0].get_text() == "no misclassified test image"


@pytest.mark.parametrize(
    ("X", "picked", "message"),
    [
        (images(2), np.zeros((2, 4), int), r"picked must have shape \(3, per_row\)"),
        (images(2)[:, :100], np.zeros((3, 1), int), r"X must be uint8 of shape \(2, 3072\)"),
    ],
)
def test_misclassified_grid_refuses_bad_shapes(X, picked, message):
    with pytest.raises(ConfigError, match=message):
        misclassified_figure(X, [0, 0], picked, NAMES)


def test_neighbors_grid_frames_same_class_green_and_dashes_the_ones_that_do_not_vote():
    query, query_labels, predicted = images(2), np.array([0, 2]), np.array([1, 2])
    neighbors = images(2 * 4, seed=1).reshape(2, 4, 3072)
    neighbor_labels = np.array([[1, 0, 1, 0], [2, 2, 1, 2]])
    fig = neighbors_figure(query, query_labels, predicted, neighbors, neighbor_labels, NAMES, 3)
    assert len(fig.axes) == 2 * (1 + 1 + 4)  # test image, gap, 4 neighbours per row
    rows = [fig.axes[r * 6 : (r + 1) * 6] for r in range(2)]
    assert [row[0].get_title() for row in rows] == ["plane → car", "bird → bird"]
    np.testing.assert_array_equal(rows[1][0].images[0].get_array(), as_image(query[1]))
    for r, row in enumerate(rows):
        assert not row[1].images  # the gap
        for j, ax in enumerate(row[2:]):
            np.testing.assert_array_equal(ax.images[0].get_array(), as_image(neighbors[r, j]))
            assert ax.get_title() == NAMES[neighbor_labels[r, j]]
            spine = ax.spines["left"]
            expected = SAME if neighbor_labels[r, j] == query_labels[r] else OTHER
            assert mcolors.to_hex(spine.get_edgecolor()) == expected
            assert (spine.get_linestyle() == "solid") == (j < 3)  # the first k vote


def test_neighbors_grid_refuses_mismatched_shapes():
    with pytest.raises(ConfigError, match=r"neighbor_labels must have shape \(2, n_neighbors\)"):
        neighbors_figure(images(2), [0, 1], [0, 1], images(3).reshape(1, 3, 3072),
                         np.zeros((1, 3), int), NAMES, 1)  # fmt: skip
    with pytest.raises(ConfigError, match=r"neighbors must be uint8 of shape \(2, 3, 3072\)"):
        neighbors_figure(images(2), [0, 1], [0, 1], images(4).reshape(2, 2, 3072),
                         np.zeros((2, 3), int), NAMES, 1)  # fmt: skip


def test_neighbors_examples_show_the_neighbours_that_voted():
    rng = np.random.default_rng(3)
    X_ref, y_ref = images(40, seed=4), rng.integers(0, 3, 40)
    X_test, y_test = images(12, seed=5), np.arange(12) % 3
    model = KNearestNeighbor(k=3, distance="l1").fit(X_ref, y_ref)
    predicted = model.predict(X_test)
    fig = neighbors_examples(X_ref, y_ref, X_test, y_test, predicted, NAMES, k=3, distance="l1",
                             n_neighbors=5)  # fmt: skip
    idx, _ = model.kneighbors(X_test[:3])  # the first test image of each class: rows 0, 1, 2
    for r in range(3):
        row = fig.axes[r * 7 : (r + 1) * 7]
        assert row[0].get_title() == f"{NAMES[y_test[r]]} → {NAMES[predicted[r]]}"
        assert [ax.get_title() for ax in row[2:5]] == [NAMES[c] for c in y_ref[idx[r]]]
        np.testing.assert_array_equal(row[2].images[0].get_array(), as_image(X_ref[idx[r, 0]]))


def render_all(folder):
    """Every evaluation figure of a fixed example, written under ``folder``."""
    X, y = images(30), np.arange(30) % 3
    predicted = (y + (np.arange(30) % 4 == 0)) % 3
    evaluation = evaluate_predictions(y, predicted, NAMES)
    files = EvaluationFiles(*(f"{folder}/{name}" for name in ("p.csv", "c.csv", "m.png", "x.png")))
    with staged_outputs():
        write_evaluation(files, evaluation, X, "model")
        fig = neighbors_examples(X, y, X, y, predicted, NAMES, k=1, distance="l2", n_neighbors=3)
        save_figure(fig, f"{folder}/n.png")
    return files


def test_write_evaluation_writes_its_files(tmp_path):
    files = render_all(tmp_path)
    assert pd.read_csv(files.predictions).columns.tolist() == ["actual", "predicted"]
    assert len(pd.read_csv(files.predictions)) == 30
    per_class = pd.read_csv(files.per_class)
    assert per_class.columns.tolist() == ["class", "accuracy", "n"]
    assert per_class["class"].tolist() == NAMES and per_class["n"].tolist() == [10, 10, 10]
    for png in (files.confusion, files.misclassified, tmp_path / "n.png"):
        with open(png, "rb") as fh:
            assert fh.read(4) == b"\x89PNG"


def test_figures_are_byte_for_byte_the_same_in_a_new_process(tmp_path):
    render_all(tmp_path / "here")
    code = f"import test_evaluation_plots as t; t.render_all({str(tmp_path / 'there')!r})"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent, timeout=300)
    for name in ("p.csv", "c.csv", "m.png", "x.png", "n.png"):
        here = (tmp_path / "here" / name).read_bytes()
        assert here == (tmp_path / "there" / name).read_bytes(), name
