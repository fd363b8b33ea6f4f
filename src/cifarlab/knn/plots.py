"""The figure of k-NN cross-validation (``knn_cv``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

import cifarlab.plots  # noqa: F401  (headless matplotlib backend, before any figure)


def cv_figure(cv_table: pd.DataFrame) -> Figure:
    """Cross-validation accuracy against k, one panel per distance.

    cv_table : DataFrame with columns distance, k, fold, accuracy (one row per fold).
    Every fold's accuracy is a point; the line joins the means; bars are ±1 standard deviation.
    """
    distances = list(dict.fromkeys(cv_table["distance"]))
    fig, axes = plt.subplots(1, len(distances), figsize=(5.5 * len(distances), 4), squeeze=False)
    for ax, distance in zip(axes[0], distances, strict=True):
        rows = cv_table[cv_table["distance"] == distance]
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
        ax.set_title(f"k-NN, {distance.upper()} distance")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
