"""Figures the pipeline writes to ``reports/plots/`` and logs to MLflow (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: stages run under DVC, CI and servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def cv_figure(cv_table: pd.DataFrame) -> Figure:
    """Cross-validation accuracy against k, one panel per distance.

    cv_table : DataFrame with columns metric, k, fold, accuracy (one row per fold).
    Every fold's accuracy is a point; the line joins the means; bars are ±1 standard deviation.
    """
    metrics = list(dict.fromkeys(cv_table["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        rows = cv_table[cv_table["metric"] == metric]
        ax.scatter(rows["k"], rows["accuracy"], s=12, alpha=0.6, label="folds")
        stats = rows.groupby("k")["accuracy"].agg(["mean", "std"]).reset_index()
        ax.errorbar(
            stats["k"],
            stats["mean"],
            yerr=stats["std"].fillna(0.0),
            marker="o",
            capsize=3,
            label="mean ± 1 std",
        )
        ax.set_xscale("log")
        ax.set_xlabel("k (number of neighbours)")
        ax.set_ylabel("cross-validation accuracy")
        ax.set_title(f"k-NN, {metric.upper()} distance")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def training_figure(
    loss_history: Sequence[float],
    train_accuracy: Sequence[float],
    val_accuracy: Sequence[float] | None = None,
    title: str = "",
) -> Figure:
    """Loss at every SGD step (left) and train / val accuracy at every epoch (right)."""
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
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str) -> None:
    """Write ``fig`` as PNG atomically and release it."""
    from cifarlab.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
