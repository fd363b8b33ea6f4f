"""k-NN's own evaluation figure: test images with their nearest training images.

The only module of ``cifarlab.evaluation`` that imports ``cifarlab.knn``; ``svm_evaluate``
does not import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from cifarlab.evaluation.metrics import first_per_class
from cifarlab.evaluation.plots import neighbors_figure
from cifarlab.knn.neighbors import kneighbors

N_NEIGHBORS = 10  # neighbours shown per test image, as in the lecture's picture


def neighbors_examples(
    X_ref: np.ndarray,
    y_ref: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    *,
    k: int,
    distance: str,
    memory_budget_bytes: int = 1 << 30,
    n_neighbors: int = N_NEIGHBORS,
) -> Figure:
    """The first test image of each class and its ``n_neighbors`` nearest reference images.

    X_ref : uint8 (n_ref, 3072), y_ref : (n_ref,): the k-NN model's reference set; X_test :
    uint8 (n_test, 3072), y_test, y_pred : (n_test,) true and predicted labels; k, distance:
    the model's. Neighbours are found as the model finds them (ordered by distance, then
    reference index), so the first k shown are the ones that voted for y_pred.
    """
    rows = first_per_class(y_test, len(class_names), 1)[:, 0]
    rows = rows[rows >= 0]  # a class absent from the test images has no row
    shown = min(n_neighbors, len(y_ref))
    idx, _ = kneighbors(
        X_test[rows], X_ref, shown, distance, memory_budget_bytes=memory_budget_bytes
    )
    return neighbors_figure(
        X_test[rows],
        y_test[rows],
        y_pred[rows],
        X_ref[idx],
        y_ref[idx],
        class_names,
        n_voting=k,
        title=(
            f"k-NN ({distance.upper()}, k={k}): each test image (true → predicted), then its "
            f"{shown} nearest training images; the first {min(k, shown)} vote (solid frames); "
            "green = same class"
        ),
    )
