"""``KNearestNeighbor``: the k-NN classifier, a scikit-learn estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm import tqdm

from cifarlab.errors import ConfigError
from cifarlab.knn.neighbors import _kneighbors, _vote
from cifarlab.params import KNN, DeclaredParameters, check_values

__all__ = ["KNearestNeighbor"]


def _kernel_dtype(X: np.ndarray) -> np.ndarray:
    """Validated ``X`` as uint8 (the exact integer kernels) or else float64 (C order kept)."""
    return X if X.dtype == np.uint8 else X.astype(np.float64, copy=False)


class KNearestNeighbor(ClassifierMixin, DeclaredParameters, BaseEstimator):
    """k-NN classifier of raw images, a scikit-learn classifier (``clone``, ``Pipeline``,
    ``GridSearchCV``, ``cross_val_score``; it passes ``check_estimator``).

    k : neighbours that vote; distance : "l1" or "l2" (squared Euclidean, which ranks like
    it); memory_budget_bytes, progress : as in :func:`cifarlab.knn.neighbors.kneighbors`. The
    constructor stores them as given; ``fit`` checks them against :data:`cifarlab.params.KNN`
    and predicts with those it checked, so a ``set_params`` takes effect at the next ``fit``.

    Training and query rows that are both uint8 (raw pixels) take the exact integer kernels
    of :mod:`cifarlab.knn.neighbors`; any other numeric input is compared in float64 (see
    :func:`_kneighbors_float`). Either way neighbours are ordered by (distance, training
    index), and a tie in the vote goes to the class of the nearest tied neighbour.

    Fitted attributes: X_ (uint8 or float64, (n_samples, n_features)), y_ ((n_samples,)),
    classes_ (sorted distinct labels, any values), n_classes_, n_features_in_, and
    feature_names_in_ when fit on a DataFrame with string column names.
    """

    _declaration = KNN  # the parameters: get_params / set_params (DeclaredParameters)

    def __init__(
        self,
        k: int = 1,
        distance: str = "l2",
        memory_budget_bytes: int = 1 << 30,
        progress: bool = False,
    ) -> None:
        self.k = k
        self.distance = distance
        self.memory_budget_bytes = memory_budget_bytes
        self.progress = progress

    def __sklearn_is_fitted__(self) -> bool:
        # Not "any attribute ending in _": a fit refused after its array checks (k too large)
        # has set n_features_in_ already.
        return hasattr(self, "X_")

    def fit(self, X: Any, y: Any) -> KNearestNeighbor:
        """X : array-like of shape (n_samples, n_features), numeric (uint8 for the exact
        integer kernels); y : (n_samples,) class labels, any values (they become classes_)."""
        params = check_values(KNN, self.get_params())
        X, y = validate_data(self, X, y, order="C")
        X = _kernel_dtype(X)
        check_classification_targets(y)
        if params["k"] > X.shape[0]:
            raise ConfigError(
                f"k must be <= the number of training samples: got k={params['k']}, "
                f"n_samples={X.shape[0]}"
            )
        self._params = params
        self.X_ = X
        self.y_ = y
        self.classes_, encoded = np.unique(y, return_inverse=True)
        self._y_encoded = encoded.astype(np.int64).reshape(-1)
        self.n_classes_ = len(self.classes_)
        return self

    def kneighbors(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """X : array-like of shape (n_query, n_features). Returns (indices, distances), both
        of shape (n_query, k): int64 indices into X_, and int64 distances (uint8 X and X_, as
        :func:`cifarlab.knn.neighbors.kneighbors`) or float64 ones (any other input)."""
        return self._neighbors(self._check_query(X))

    def predict(self, X: Any) -> np.ndarray:
        """X : array-like of shape (n_query, n_features). Returns labels (n_query,)."""
        idx, _ = self._neighbors(self._check_query(X))
        return self.classes_[_vote(self._y_encoded[idx], self.n_classes_)]

    def _check_query(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return _kernel_dtype(validate_data(self, X, reset=False, order="C"))

    def _neighbors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = self._params
        desc = f"k-NN predict (k={params['k']}, {params['distance']})"
        if X.dtype == np.uint8 and self.X_.dtype == np.uint8:
            return _kneighbors(X, self.X_, **params, desc=desc)
        return _kneighbors_float(X, self.X_, **params, desc=desc)


def _kneighbors_float(
    X_query: np.ndarray,
    X_ref: np.ndarray,
    k: int,
    distance: str,
    *,
    memory_budget_bytes: int,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``X_ref`` (n_ref, n_features) to each row of ``X_query``
    (n_query, n_features), numeric, compared in float64.

    Distances are scipy's ``cdist`` "cityblock" (sum |q - r|, for "l1") or "sqeuclidean"
    (sum (q - r)^2, for "l2"), summed from the differences (no |q|^2 - 2 q.r + |r|^2
    cancellation), so integer-valued rows get the exact integer distances. Returns (indices,
    distances), int64 and float64 of shape (n_query, k), each row ordered by (distance,
    reference index) like the integer kernels. Query rows are taken in chunks whose distance
    matrix and sort order fit ``memory_budget_bytes``; a float64 copy of ``X_ref`` (when it is
    uint8) and the output come on top.
    """
    metric = "cityblock" if distance == "l1" else "sqeuclidean"
    X_ref = X_ref.astype(np.float64, copy=False)
    n_query = X_query.shape[0]
    # Per query row: its float64 distances and their int64 sort order.
    rows = max(1, memory_budget_bytes // (16 * X_ref.shape[0]))
    indices = np.empty((n_query, k), np.int64)
    distances = np.empty((n_query, k), np.float64)
    with tqdm(total=n_query, desc=desc, unit="query", disable=not progress) as bar:
        for a in range(0, n_query, rows):
            block = cdist(X_query[a : a + rows], X_ref, metric)
            # A stable sort keeps equal distances in reference order: ties to the smaller index.
            order = np.argsort(block, axis=1, kind="stable")[:, :k]
            indices[a : a + rows] = order
            distances[a : a + rows] = np.take_along_axis(block, order, axis=1)
            bar.update(block.shape[0])
    return indices, distances
