"""Multiclass SVM (hinge) and softmax losses with their gradients, and the weight penalty.

Shapes: ``W`` (n_features, n_classes), ``b`` (n_classes,), ``X`` (n_samples, n_features),
``y`` (n_samples,) with labels in ``[0, n_classes)``; the scores are ``X @ W + b``. Every function
computes in the dtype it is given (float32 in training, float64 in the exact tests).

The public functions check their arrays (:mod:`cifarlab.checks`) and their hyperparameters
(the declarations of :data:`cifarlab.params.LINEAR`), then call the unchecked ``_`` functions.
The SGD loop calls :func:`_loss_grad` on every minibatch: its ``SGDConfig`` was checked once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarlab.checks import check_labels
from cifarlab.errors import ConfigError
from cifarlab.params import LINEAR, check_values

# --------------------------------------------------------------------------- unchecked


def _hinge(
    W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, delta: float
) -> tuple[float, np.ndarray, np.ndarray]:
    n = X.shape[0]
    rows = np.arange(n)
    scores = X @ W + b
    correct = scores[rows, y]
    margins = np.maximum(scores - correct[:, None] + delta, 0)
    # The correct class would contribute max(0, delta) = delta; it is not part of the loss.
    margins[rows, y] = 0
    loss = float(margins.sum(dtype=np.float64)) / n

    # d loss / d scores: +1 for every violating class, -(number of violators) for the correct one.
    dscores = (margins > 0).astype(scores.dtype)
    dscores[rows, y] = -dscores.sum(axis=1)
    dscores /= n
    return loss, X.T @ dscores, dscores.sum(axis=0)


def _softmax(
    W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    n = X.shape[0]
    rows = np.arange(n)
    scores = X @ W + b
    # Shifting each row by its max leaves the softmax unchanged and keeps exp() <= 1.
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1)
    # -log p_y = log(sum_j exp(s_j)) - s_y, computed from the shifted scores (no log(0)).
    loss = float((np.log(sum_exp) - shifted[rows, y]).sum(dtype=np.float64)) / n

    dscores = exp / sum_exp[:, None]
    dscores[rows, y] -= 1
    dscores /= n
    return loss, X.T @ dscores, dscores.sum(axis=0)


def _regularization(
    W: np.ndarray, reg: float, reg_type: str, l1_ratio: float
) -> tuple[float, np.ndarray]:
    if reg_type == "l2":
        l1_weight, l2_weight = 0.0, 1.0
    elif reg_type == "l1":
        l1_weight, l2_weight = 1.0, 0.0
    else:
        l1_weight, l2_weight = l1_ratio, 1.0 - l1_ratio
    penalty = 0.0
    dW = np.zeros_like(W)
    if l1_weight:
        penalty += l1_weight * float(np.abs(W).sum(dtype=np.float64))
        # sign(0) = 0 is a valid subgradient of |w| at 0.
        dW += l1_weight * np.sign(W)
    if l2_weight:
        penalty += l2_weight * float(np.square(W).sum(dtype=np.float64))
        dW += (2.0 * l2_weight) * W
    return reg * penalty, reg * dW


def _loss_grad(
    W: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    loss: str,
    reg: float,
    reg_type: str,
    l1_ratio: float,
    delta: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    # Unchecked, with positional hyperparameters: the SGD loop calls this on every minibatch.
    if loss == "hinge":
        data_loss, dW, db = _hinge(W, b, X, y, delta)
    else:
        data_loss, dW, db = _softmax(W, b, X, y)
    if reg:
        penalty, dW_reg = _regularization(W, reg, reg_type, l1_ratio)
        data_loss += penalty
        dW += dW_reg
    return data_loss, dW, db


# --------------------------------------------------------------------------- checked


def _check_weights(W: Any) -> np.ndarray:
    W = np.asarray(W)
    if W.ndim != 2:
        raise ConfigError(f"W must be 2-D (n_features, n_classes), got shape {W.shape}")
    return W


def _check_arrays(W: Any, b: Any, X: Any, y: Any) -> tuple[np.ndarray, ...]:
    """``W, b, X, y`` as ndarrays of matching shapes (cheap: O(n_samples) at most)."""
    W = _check_weights(W)
    b = np.asarray(b)
    if b.shape != (W.shape[1],):
        raise ConfigError(f"b must have shape ({W.shape[1]},) to match W, got {b.shape}")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ConfigError(f"X must have shape (n_samples, {W.shape[0]}), got {X.shape}")
    if X.shape[0] == 0:
        raise ConfigError("X must have at least one sample, got 0")
    y = check_labels("y", y, X.shape[0], W.shape[1])
    return W, b, X, y


def hinge_loss_grad(
    W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, delta: float = 1.0
) -> tuple[float, np.ndarray, np.ndarray]:
    """Multiclass SVM loss (Weston-Watkins, as in cs231n) and its gradient, vectorised.

    Parameters
    ----------
    W : ndarray of shape (n_features, n_classes)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features), float
    y : ndarray of shape (n_samples,), int in ``[0, n_classes)``
    delta : float > 0
        The margin the correct class score must exceed every other score by.

    Returns
    -------
    loss : float
        ``mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + delta)`` with ``s = X @ W + b``.
    dW : ndarray of shape (n_features, n_classes), dtype of the scores
    db : ndarray of shape (n_classes,)

    At a kink (margin exactly 0) the subgradient with the violation counted as 0 is used.
    """
    W, b, X, y = _check_arrays(W, b, X, y)
    return _hinge(W, b, X, y, LINEAR["delta"].check("delta", delta))


def softmax_loss_grad(
    W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Softmax (mean cross-entropy) loss and its gradient, vectorised and numerically stable.

    Parameters
    ----------
    W : ndarray of shape (n_features, n_classes)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features), float
    y : ndarray of shape (n_samples,), int in ``[0, n_classes)``

    Returns
    -------
    loss : float
        ``mean_i -log softmax(s_i)[y_i]`` with ``s = X @ W + b``.
    dW : ndarray of shape (n_features, n_classes)
    db : ndarray of shape (n_classes,)
    """
    W, b, X, y = _check_arrays(W, b, X, y)
    return _softmax(W, b, X, y)


def regularization(
    W: np.ndarray, reg: float, reg_type: str = "l2", l1_ratio: float = 0.5
) -> tuple[float, np.ndarray]:
    """Weight penalty and its (sub)gradient. The bias is never regularised, so it is not an input.

    Parameters
    ----------
    W : ndarray of shape (n_features, n_classes)
    reg : float >= 0
        Regularization strength.
    reg_type : {"l2", "l1", "elasticnet"}
        ``l2``: ``reg * sum(W**2)`` (gradient ``2 reg W``);
        ``l1``: ``reg * sum(|W|)`` (subgradient ``reg sign(W)``, 0 at 0);
        ``elasticnet``: ``reg * (l1_ratio * sum(|W|) + (1 - l1_ratio) * sum(W**2))``.
    l1_ratio : float in [0, 1]
        Share of the l1 term; used by ``elasticnet`` only.

    Returns
    -------
    penalty : float
    dW : ndarray of shape (n_features, n_classes), dtype of ``W``
    """
    checked = check_values(LINEAR, {"reg": reg, "reg_type": reg_type, "l1_ratio": l1_ratio})
    return _regularization(_check_weights(W), **checked)


def loss_grad(
    W: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    *,
    loss: str,
    reg: float,
    reg_type: str,
    l1_ratio: float,
    delta: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Full objective: data loss (hinge or softmax) plus the weight penalty, and its gradient.

    Parameters
    ----------
    W : ndarray of shape (n_features, n_classes)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features), float
    y : ndarray of shape (n_samples,), int in ``[0, n_classes)``
    loss : {"hinge", "softmax"}
    reg, reg_type, l1_ratio
        See :func:`regularization`.
    delta : float > 0
        Hinge margin; checked but unused by ``softmax``.

    Returns
    -------
    loss : float
    dW : ndarray of shape (n_features, n_classes)
    db : ndarray of shape (n_classes,)
    """
    objective = dict(loss=loss, reg=reg, reg_type=reg_type, l1_ratio=l1_ratio, delta=delta)
    checked = check_values(LINEAR, objective)
    W, b, X, y = _check_arrays(W, b, X, y)
    return _loss_grad(W, b, X, y, **checked)
