"""Array checks at the public edge of the numerical core: one clear error, naming the argument.

Used by the public functions and estimators of ``cifarlab.knn``, ``cifarlab.linear`` and
``cifarlab.data.split``; what they call behind that edge trusts its inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarlab.errors import ConfigError


def check_features(name: str, X: Any) -> np.ndarray:
    """``X`` as a 2-D numeric, finite, non-empty ndarray (n_samples, n_features); no copy when it
    already is one."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "uif":
        raise ConfigError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ConfigError(f"{name} must have at least one sample and one feature, got {X.shape}")
    # Integer images are finite by construction; only float input can carry NaN/inf.
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return X


def check_images(name: str, X: Any, n_features: int | None = None) -> np.ndarray:
    """``X`` as a C-contiguous 2-D uint8 ndarray (n_samples, n_features) of raw pixel values,
    with ``n_features`` columns when given."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype != np.uint8:
        raise ConfigError(f"{name} must have dtype uint8 (raw pixel values), got {X.dtype}")
    if X.shape[1] == 0:
        raise ConfigError(f"{name} must have at least one feature, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ConfigError(
            f"{name} has {X.shape[1]} features but the reference images have {n_features}"
        )
    return np.ascontiguousarray(X)


def check_labels(
    name: str,
    y: Any,
    n_samples: int | None = None,
    n_classes: int | None = None,
    *,
    allow_empty: bool = False,
) -> np.ndarray:
    """``y`` as a 1-D integer ndarray (n_samples,) of labels >= 0 (and < ``n_classes`` when
    given); ``n_samples`` is the row count of the matching ``X`` when there is one."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"{name} must be 1-D (n_samples,), got shape {y.shape}")
    if y.size == 0 and allow_empty and n_samples in (None, 0):
        return y.astype(np.int64)
    if y.dtype == np.bool_ or y.dtype.kind not in "ui":
        raise ConfigError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ConfigError(
            f"{name} has {y.shape[0]} labels but X has {n_samples} samples; they must match"
        )
    if y.size == 0:
        raise ConfigError(f"{name} is empty")
    if y.min() < 0:
        raise ConfigError(f"{name} must hold labels >= 0, got {y.min()}")
    if n_classes is not None and y.max() >= n_classes:
        raise ConfigError(
            f"{name} must hold labels in [0, {n_classes - 1}], got values in [{y.min()}, {y.max()}]"
        )
    return y


def check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(
            f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng
