"""The k-NN cross-validation figure: one panel per distance, folds as points, means joined."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifarlab.knn.plots import cv_figure


def test_one_panel_per_distance_with_fold_points_and_mean_line():
    rows = [
        {"distance": d, "k": k, "fold": f, "accuracy": 0.1 * k + 0.01 * f + (d == "l2")}
        for d in ("l1", "l2")
        for k in (1, 3, 5)
        for f in range(3)
    ]
    fig = cv_figure(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["k-NN, L1 distance", "k-NN, L2 distance"]
    for ax, offset in zip(fig.axes, (0.0, 1.0), strict=True):
        points = ax.collections[0].get_offsets()
        assert len(points) == 9  # every fold of every k
        mean_line = ax.get_lines()[0]
        expected = np.array([0.11, 0.31, 0.51]) + offset
        np.testing.assert_allclose(np.asarray(mean_line.get_ydata(), dtype=float), expected)
