"""Figures of a test evaluation: the confusion matrix and grids of test images.

Images are raw CIFAR-10 rows: uint8 (3072,) in the official channel-major layout (1024 R, 1024
G, 1024 B values, each a row-major 32 x 32 plane), shown pixel for pixel (no smoothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import cifarlab.plots  # noqa: F401  (headless matplotlib backend, before any figure)
from cifarlab.errors import ConfigError

SIDE = 32  # CIFAR-10 images are 32 x 32 pixels, 3 channels
SAME, OTHER = "#1a9850", "#d73027"  # green: a neighbour of the test image's class; red: not
_CELL = 1.05  # inches per image in the grids: 105 px at the 100 dpi of save_figure


def as_image(row: np.ndarray) -> np.ndarray:
    """(3072,) uint8 channel-major row → (32, 32, 3) uint8 height x width x RGB."""
    return np.asarray(row).reshape(3, SIDE, SIDE).transpose(1, 2, 0)


def _check_rows(name: str, images: Any, leading: tuple[int, ...]) -> np.ndarray:
    images = np.asarray(images)
    expected = (*leading, 3 * SIDE * SIDE)
    if images.shape != expected or images.dtype != np.uint8:
        raise ConfigError(
            f"{name} must be uint8 of shape {expected} (raw CIFAR-10 rows), "
            f"got {images.dtype} {images.shape}"
        )
    return images


def confusion_figure(confusion: Any, class_names: Sequence[str], title: str = "") -> Figure:
    """The confusion matrix as a heat map: confusion (n_classes, n_classes) counts, row = true
    class, column = predicted class. Each cell shows its count; its colour is the count's share
    of the row (so the diagonal reads as per-class accuracy whatever the class sizes)."""
    confusion = np.asarray(confusion)
    n = len(class_names)
    if confusion.shape != (n, n):
        raise ConfigError(
            f"confusion must have shape ({n}, {n}) for {n} class names, got {confusion.shape}"
        )
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n, 0.6 + 0.55 * n))
    shown = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), count in np.ndenumerate(confusion):
        colour = "white" if share[i, j] > 0.5 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(shown, ax=ax, label="share of the true class", fraction=0.046, pad=0.04)
    ax.set_title(title or "confusion matrix (test)")
    fig.tight_layout()
    return fig


def _image_cell(ax: Axes, row: np.ndarray, caption: str = "", colour: str | None = None) -> None:
    ax.imshow(as_image(row), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if caption:
        ax.set_title(caption, fontsize=7, pad=2)
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)


def misclassified_figure(
    X: Any, y_pred: Any, picked: Any, class_names: Sequence[str], title: str = ""
) -> Figure:
    """Misclassified test images, one row per true class, captioned with the predicted class.

    X : uint8 (n_test, 3072); y_pred : (n_test,) predicted labels; picked : int (n_classes,
    per_row) indices into X, row c holding misclassified images of true class c, -1 for an
    empty cell (as :func:`cifarlab.evaluation.metrics.first_per_class` returns them).
    """
    picked = np.asarray(picked)
    n = len(class_names)
    if picked.ndim != 2 or picked.shape[0] != n or picked.shape[1] == 0:
        raise ConfigError(f"picked must have shape ({n}, per_row), got {picked.shape}")
    X = _check_rows("X", X, (len(np.asarray(X)),))
    y_pred = np.asarray(y_pred)
    per_row = picked.shape[1]
    fig, axes = plt.subplots(
        n, per_row, figsize=(1.2 + _CELL * per_row, 0.6 + _CELL * n), squeeze=False
    )
    for c, (row_axes, indices) in enumerate(zip(axes, picked, strict=True)):
        row_axes[0].set_ylabel(class_names[c], rotation=0, ha="right", va="center", fontsize=9)
        for ax, index in zip(row_axes, indices, strict=True):
            if index < 0:  # fewer misclassified images of this class than cells
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                continue
            _image_cell(ax, X[index], f"→ {class_names[y_pred[index]]}")
    if not (picked >= 0).any():
        fig.text(0.5, 0.5, "no misclassified test image", ha="center", va="center", fontsize=14)
    fig.suptitle(title or "misclassified test images (row: true class; caption: predicted)")
    fig.tight_layout()
    return fig


def neighbors_figure(
    query: Any,
    query_labels: Any,
    query_predicted: Any,
    neighbors: Any,
    neighbor_labels: Any,
    class_names: Sequence[str],
    n_voting: int,
    title: str = "",
) -> Figure:
    """Test images and their nearest training images (the picture of the cs231n k-NN lecture).

    query : uint8 (n_rows, 3072) test images; query_labels, query_predicted : (n_rows,) their
    true and predicted labels. neighbors : uint8 (n_rows, n_neighbors, 3072), each row's
    nearest training images, nearest first; neighbor_labels : (n_rows, n_neighbors).
    Row r shows test image r (captioned true → predicted) then its neighbours, each captioned
    with its class and framed green if that is the test image's true class, else red; the
    first ``n_voting`` (k) are the ones that vote: solid frames, the rest dashed.
    """
    query_labels, query_predicted = np.asarray(query_labels), np.asarray(query_predicted)
    neighbor_labels = np.asarray(neighbor_labels)
    n_rows = len(query_labels)
    if n_rows == 0 or neighbor_labels.ndim != 2 or neighbor_labels.shape[0] != n_rows:
        raise ConfigError(
            f"neighbor_labels must have shape ({n_rows}, n_neighbors) for {n_rows} test images, "
            f"got {neighbor_labels.shape}"
        )
    if query_predicted.shape != (n_rows,):
        raise ConfigError(
            f"query_predicted must have shape ({n_rows},), got {query_predicted.shape}"
        )
    n_neighbors = neighbor_labels.shape[1]
    query = _check_rows("query", query, (n_rows,))
    neighbors = _check_rows("neighbors", neighbors, (n_rows, n_neighbors))
    fig, axes = plt.subplots(
        n_rows,
        n_neighbors + 2,
        figsize=(0.4 + _CELL * (n_neighbors + 1.3), 0.7 + _CELL * n_rows),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.0, 0.3] + [1.0] * n_neighbors},
    )
    for r, row_axes in enumerate(axes):
        true, predicted = class_names[query_labels[r]], class_names[query_predicted[r]]
        _image_cell(row_axes[0], query[r], f"{true} → {predicted}")
        row_axes[1].axis("off")  # a gap between the test image and its neighbours
        for j, ax in enumerate(row_axes[2:]):
            same = neighbor_labels[r, j] == query_labels[r]
            _image_cell(
                ax, neighbors[r, j], class_names[neighbor_labels[r, j]], SAME if same else OTHER
            )
            if j >= n_voting:
                for spine in ax.spines.values():
                    spine.set_linestyle((0, (2, 2)))
                    spine.set_linewidth(1.5)
    fig.suptitle(
        title or "test images (true → predicted) and their nearest training images",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
