"""``KNearestNeighbor``: the k-NN classifier with the scikit-learn estimator contract."""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarlab.checks import check_images, check_labels
from cifarlab.errors import ConfigError
from cifarlab.knn.neighbors import _kneighbors, _vote
from cifarlab.params import KNN, check_values

__all__ = ["KNearestNeighbor"]


class KNearestNeighbor:
    """k-NN classifier of raw uint8 images (fit / predict / score, get_params / set_params).

    k : neighbours that vote; distance : "l1" or "l2"; memory_budget_bytes, progress : passed
    to :func:`cifarlab.knn.neighbors.kneighbors`. The constructor stores them as given; ``fit``
    checks them against :data:`cifarlab.params.KNN` and predicts with those it checked, so a
    ``set_params`` takes effect at the next ``fit``.

    Fitted attributes: X_ (uint8 (n_samples, n_features)), y_ ((n_samples,)), classes_ (sorted
    unique labels), n_classes_, n_features_in_. Ties in the vote go to the class of the nearest
    tied neighbour.
    """

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

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in KNN}

    def set_params(self, **params: Any) -> KNearestNeighbor:
        for name, value in params.items():
            if name not in KNN:
                raise ConfigError(
                    f"invalid parameter {name!r} for KNearestNeighbor (known: {', '.join(KNN)})"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"KNearestNeighbor({args})"

    def fit(self, X: np.ndarray, y: np.ndarray) -> KNearestNeighbor:
        """X : ndarray of shape (n_samples, n_features), uint8; y : (n_samples,) integer labels
        >= 0 (any such values: they are mapped to classes_)."""
        params = check_values(KNN, self.get_params())
        X = check_images("X", X)
        y = check_labels("y", y, X.shape[0])
        if params["k"] > X.shape[0]:
            raise ConfigError(
                f"k must be <= the number of training images ({X.shape[0]}), got {params['k']}"
            )
        self._params = params
        self.X_ = X
        self.y_ = y
        self.classes_, encoded = np.unique(y, return_inverse=True)
        self._y_encoded = encoded.astype(np.int64).reshape(-1)
        self.n_classes_ = len(self.classes_)
        self.n_features_in_ = X.shape[1]
        return self

    def kneighbors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X : ndarray of shape (n_query, n_features), uint8. Returns (indices, distances),
        int64 (n_query, k), as :func:`cifarlab.knn.neighbors.kneighbors` against X_."""
        return self._neighbors(self._check_query(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """X : ndarray of shape (n_query, n_features), uint8. Returns labels (n_query,)."""
        return self._predict(self._check_query(X))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """X : ndarray of shape (n_query, n_features), uint8; y : (n_query,) integer labels.
        Returns the accuracy of predict(X) against y."""
        X = self._check_query(X)
        y = check_labels("y", y, X.shape[0])
        return float(np.mean(self._predict(X) == y))

    def _check_query(self, X: Any) -> np.ndarray:
        if not hasattr(self, "X_"):
            raise ConfigError("this KNearestNeighbor is not fitted yet; call fit(X, y) first")
        return check_images("X", X, self.n_features_in_)

    def _neighbors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = self._params
        return _kneighbors(
            X,
            self.X_,
            **params,
            desc=f"k-NN predict (k={params['k']}, {params['distance']})",
        )

    def _predict(self, X: np.ndarray) -> np.ndarray:
        idx, _ = self._neighbors(X)
        return self.classes_[_vote(self._y_encoded[idx], self.n_classes_)]
