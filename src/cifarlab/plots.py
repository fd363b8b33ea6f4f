"""Figures as files: matplotlib without a display, PNGs written atomically.

The figures themselves live with their models (``cifarlab.knn.plots``, ``cifarlab.linear.plots``),
so that a stage depends only on the drawing code of its own figures.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: stages run under DVC, CI and servers without a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cifarlab.io import atomic_path  # noqa: E402


def save_figure(fig: Figure, path: str) -> None:
    """Write ``fig`` as PNG atomically and release it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
