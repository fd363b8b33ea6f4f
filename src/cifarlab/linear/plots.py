"""The figures of the linear classifier: training curves, class templates, search trials."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

import cifarlab.plots  # noqa: F401  (headless matplotlib backend, before any figure)


def training_figure(
    loss_history: Sequence[float],
    train_accuracy: Sequence[float],
    val_accuracy: Sequence[float] | None = None,
    title: str = "",
    best_epoch: int | None = None,
) -> Figure:
    """Loss at every SGD step (left) and train / val accuracy at every epoch (right).

    loss_history : (n_steps,); train_accuracy, val_accuracy : (n_epochs,), epoch 0 drawn at 1.
    best_epoch : the epoch (from 0) whose weights were kept, marked on the accuracy panel.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(np.arange(len(loss_history)), loss_history, linewidth=0.8)
    ax_loss.set_xlabel("SGD step")
    ax_loss.set_ylabel("training loss (minibatch)")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    epochs = np.arange(1, len(train_accuracy) + 1)
    ax_acc.plot(epochs, train_accuracy, marker="o", label="train")
    if val_accuracy is not None and len(val_accuracy):
        ax_acc.plot(epochs, val_accuracy, marker="o", label="val")
    if best_epoch is not None:
        ax_acc.axvline(best_epoch + 1, color="grey", linestyle="--", label="weights kept")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def templates_figure(W: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """The weight vector of each class as a 32 x 32 colour image, one panel per class.

    W : (3072, n_classes), rows in the CIFAR-10 pixel order (1024 R, 1024 G, 1024 B values, each
    a row-major 32 x 32 plane). All panels share one linear colour scale, from the smallest to
    the largest weight of W, so that their contrasts compare.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != 3 * 32 * 32 or W.shape[1] != len(class_names):
        raise ValueError(
            f"W must have shape (3072, {len(class_names)}) for {len(class_names)} class names, "
            f"got {W.shape}"
        )
    low, high = W.min(), W.max()
    scaled = (W - low) / (high - low) if high > low else np.full_like(W, 0.5)
    n_classes = W.shape[1]
    columns = min(n_classes, 5)
    rows = -(-n_classes // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.7 * rows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < n_classes:
            image = scaled[:, index].reshape(3, 32, 32).transpose(1, 2, 0)
            ax.imshow(image, interpolation="nearest")
            ax.set_title(class_names[index])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def search_figure(table: pd.DataFrame, title: str = "") -> Figure:
    """Validation accuracy of every search trial over learning rate and regularization.

    table : one row per trial with columns learning_rate, reg, batch_size, val_accuracy, and
        optionally state (Optuna's: COMPLETE, PRUNED, FAIL).
    Colour is the val accuracy, marker size the batch size; a pruned trial is a cross (its
    val accuracy when it was stopped), a failed one is left out; the best complete trial is
    circled.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    state = table["state"] if "state" in table else pd.Series("COMPLETE", index=table.index)
    sizes = 20 + 80 * table["batch_size"] / table["batch_size"].max()
    low, high = table["val_accuracy"].min(), table["val_accuracy"].max()
    points = None
    for name, marker, label in (("COMPLETE", "o", None), ("PRUNED", "X", "pruned")):
        rows = state == name
        if rows.any():
            drawn = ax.scatter(
                table["learning_rate"][rows], table["reg"][rows], c=table["val_accuracy"][rows],
                s=sizes[rows], cmap="viridis", vmin=low, vmax=high, marker=marker, label=label,
            )  # fmt: skip
            points = points or drawn
    complete = table[state == "COMPLETE"]
    best = complete.iloc[int(np.argmax(complete["val_accuracy"].to_numpy()))]
    ax.scatter(
        [best["learning_rate"]], [best["reg"]], s=250, facecolors="none", edgecolors="red",
        label=f"best: val {best['val_accuracy']:.3f}",
    )  # fmt: skip
    fig.colorbar(points, ax=ax, label="val accuracy")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # ticks at 1, 2, 5 x 10^k, written plainly
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("learning rate")
    ax.set_ylabel("regularization strength")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    ax.set_title(title or "search trials (marker size: batch size)")
    fig.tight_layout()
    return fig
