"""The MLflow pyfunc loader of a cifarlab linear model (``loader_module`` of the logged model).

``mlflow.pyfunc.load_model`` calls :func:`_load_pyfunc` with the model's data file: the ``.npz``
of :func:`cifarlab.linear.classifier.save_linear_model` (weights, bias, training mean image,
classes and hyperparameters). The returned object predicts class labels from raw images,
preprocessing included. This module does not import mlflow; the model's ``code/`` folder carries
the cifarlab package, so it loads where cifarlab is not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarlab.errors import ConfigError
from cifarlab.linear.classifier import LinearClassifier, load_linear_model


class ServedLinearClassifier:
    """Raw CIFAR-10 rows in, class labels out.

    model_input : uint8 array of shape (n_images, 3072) (1024 R, 1024 G, 1024 B values of a
    32 x 32 image, row-major), or a DataFrame of those columns.
    Returns int64 labels of shape (n_images,).
    """

    def __init__(self, model: LinearClassifier) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        X = model_input.to_numpy() if hasattr(model_input, "to_numpy") else np.asarray(model_input)
        if X.ndim != 2 or X.shape[1] != self.model.n_features_in_:
            raise ConfigError(
                f"expected images of shape (n, {self.model.n_features_in_}), got {X.shape}"
            )
        return self.model.predict(X).astype(np.int64)


def _load_pyfunc(data_path: str) -> ServedLinearClassifier:
    return ServedLinearClassifier(load_linear_model(data_path))
