"""Linear classifiers trained by minibatch SGD: multiclass SVM (hinge) and softmax.

The numerical core is a set of pure functions (arrays and explicit hyperparameters in, arrays
out) so that each piece can be checked against a slow reference and against finite
differences. :class:`LinearClassifier` wraps them behind the scikit-learn estimator contract.

Conventions: ``W`` has shape ``(n_features, n_classes)``, ``b`` has shape ``(n_classes,)`` and
the scores are ``X @ W + b``. Training works in float32 (the CIFAR-10 training matrix is
49,000 x 3,072, i.e. 600 MB in float32 and twice that in float64); the pure functions compute
in the dtype they are given, so tests can use float64.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifarlab.errors import ConfigError, TrainingDiverged

LOSSES = ("hinge", "softmax")
REGULARIZERS = ("l2", "l1", "elasticnet")

# Rows per chunk when scoring a whole data set: the float32 temporary of a mean-subtracted chunk
# (12 MB for 3,072 features) stays in cache, instead of a full float copy of the data.
_CHUNK_ROWS = 1024

EpochCallback = Callable[[int, np.ndarray, float, "float | None"], Any]


# --------------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but batch_size=True is a mistake, not the number 1.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")


def _check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Require a finite real number in the interval given by ``low``/``high``."""
    if not _is_real(value) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite real number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{name} must be in {left}{lo}, {hi}{right}, got {value!r}")


def _check_int(name: str, value: Any, *, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_hyperparameters(
    *, loss: Any, reg: Any, reg_type: Any, l1_ratio: Any, delta: Any
) -> None:
    """Validate the hyperparameters of the objective (shared by loss_grad, sgd and fit)."""
    _check_choice("loss", loss, LOSSES)
    _check_regularization(reg=reg, reg_type=reg_type, l1_ratio=l1_ratio)
    _check_real("delta", delta, low=0.0, low_open=True)


def _check_regularization(*, reg: Any, reg_type: Any, l1_ratio: Any) -> None:
    _check_choice("reg_type", reg_type, REGULARIZERS)
    _check_real("reg", reg, low=0.0)
    _check_real("l1_ratio", l1_ratio, low=0.0, high=1.0)


def _check_sgd_hyperparameters(
    *,
    loss: Any,
    reg: Any,
    reg_type: Any,
    l1_ratio: Any,
    delta: Any,
    learning_rate: Any,
    batch_size: Any,
    epochs: Any,
    momentum: Any,
    nesterov: Any,
    lr_decay: Any,
    patience: Any = None,
    train_eval_size: Any = None,
) -> None:
    """Validate everything :func:`sgd` and :meth:`LinearClassifier.fit` share."""
    _check_hyperparameters(loss=loss, reg=reg, reg_type=reg_type, l1_ratio=l1_ratio, delta=delta)
    _check_real("learning_rate", learning_rate, low=0.0, low_open=True)
    _check_int("batch_size", batch_size, low=1)
    _check_int("epochs", epochs, low=1)
    _check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
    if not isinstance(nesterov, bool | np.bool_):
        raise ConfigError(f"nesterov must be a bool, got {nesterov!r}")
    if nesterov and momentum == 0:
        raise ConfigError("nesterov=True needs momentum > 0, got momentum=0")
    _check_real("lr_decay", lr_decay, low=0.0, high=1.0, low_open=True)
    if patience is not None:
        _check_int("patience", patience, low=1)
    if train_eval_size is not None:
        _check_int("train_eval_size", train_eval_size, low=1)


def _check_features(name: str, X: Any) -> np.ndarray:
    """Return ``X`` as a 2-D numeric, finite, non-empty ndarray (no copy when it already is)."""
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


def _check_labels(name: str, y: Any, n_samples: int, n_classes: int | None = None) -> np.ndarray:
    """Return ``y`` as a 1-D integer ndarray of length ``n_samples`` (labels in range if known)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"{name} must be 1-D (n_samples,), got shape {y.shape}")
    if y.dtype.kind not in "ui":
        raise ConfigError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.shape[0] != n_samples:
        raise ConfigError(
            f"{name} has {y.shape[0]} labels but X has {n_samples} samples; they must match"
        )
    if n_classes is not None and y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ConfigError(
            f"{name} must hold labels in [0, {n_classes - 1}], got values in [{y.min()}, {y.max()}]"
        )
    return y


def _check_params(W: Any, b: Any, X: Any, y: Any) -> tuple[np.ndarray, ...]:
    """Shape checks shared by the public loss functions (cheap: O(batch) at most)."""
    W = np.asarray(W)
    b = np.asarray(b)
    if W.ndim != 2:
        raise ConfigError(f"W must be 2-D (n_features, n_classes), got shape {W.shape}")
    if b.shape != (W.shape[1],):
        raise ConfigError(f"b must have shape ({W.shape[1]},) to match W, got {b.shape}")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ConfigError(f"X must have shape (n_samples, {W.shape[0]}), got {X.shape}")
    if X.shape[0] == 0:
        raise ConfigError("X must have at least one sample, got 0")
    y = _check_labels("y", y, X.shape[0], W.shape[1])
    return W, b, X, y


# --------------------------------------------------------------------------- losses


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
    if loss == "hinge":
        data_loss, dW, db = _hinge(W, b, X, y, delta)
    else:
        data_loss, dW, db = _softmax(W, b, X, y)
    if reg:
        penalty, dW_reg = _regularization(W, reg, reg_type, l1_ratio)
        data_loss += penalty
        dW += dW_reg
    return data_loss, dW, db


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
    W, b, X, y = _check_params(W, b, X, y)
    _check_real("delta", delta, low=0.0, low_open=True)
    return _hinge(W, b, X, y, delta)


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
    W, b, X, y = _check_params(W, b, X, y)
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
    _check_regularization(reg=reg, reg_type=reg_type, l1_ratio=l1_ratio)
    W = np.asarray(W)
    if W.ndim != 2:
        raise ConfigError(f"W must be 2-D (n_features, n_classes), got shape {W.shape}")
    return _regularization(W, reg, reg_type, l1_ratio)


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
        Hinge margin; validated but unused by ``softmax``.

    Returns
    -------
    loss : float
    dW : ndarray of shape (n_features, n_classes)
    db : ndarray of shape (n_classes,)
    """
    _check_hyperparameters(loss=loss, reg=reg, reg_type=reg_type, l1_ratio=l1_ratio, delta=delta)
    W, b, X, y = _check_params(W, b, X, y)
    return _loss_grad(W, b, X, y, loss, reg, reg_type, l1_ratio, delta)


# --------------------------------------------------------------------------- SGD


@dataclass(frozen=True)
class SGDResult:
    """What :func:`sgd` learned and how it got there.

    Attributes
    ----------
    W : ndarray of shape (n_features, n_classes)
        The weights after the last epoch, or with ``patience`` those of ``best_epoch``.
    b : ndarray of shape (n_classes,)
    loss_history : float64 ndarray of shape (n_steps,)
        Minibatch objective (data loss + penalty) at each step, before that step's update.
    train_accuracy : float64 ndarray of shape (n_epochs,)
        Accuracy at the end of each epoch on the training set (or on its fixed random subset of
        ``train_eval_size`` samples).
    val_accuracy : float64 ndarray of shape (n_epochs,), or shape (0,) without a validation set
    n_steps : int
        Steps taken: ``n_epochs * ceil(n_samples / batch_size)``.
    n_epochs : int
        Epochs run: ``epochs``, or fewer when early stopping ended training.
    best_epoch : int
        The epoch (from 0) whose weights are returned: the last one, or with ``patience`` the
        first epoch with the highest validation accuracy.
    """

    W: np.ndarray
    b: np.ndarray
    loss_history: np.ndarray
    train_accuracy: np.ndarray
    val_accuracy: np.ndarray
    n_steps: int
    n_epochs: int
    best_epoch: int


def _scores(
    X: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    mean: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of shape (n_samples, n_classes), in chunks so that raw uint8 input is only ever
    converted (and mean-subtracted) ``_CHUNK_ROWS`` rows at a time."""
    chunk_rows = _CHUNK_ROWS
    out = np.empty((X.shape[0], W.shape[1]), dtype=W.dtype)
    for start in range(0, X.shape[0], chunk_rows):
        chunk = X[start : start + chunk_rows].astype(W.dtype, copy=False)
        if mean is not None:
            chunk = chunk - mean
        np.matmul(chunk, W, out=out[start : start + chunk_rows])
    out += b
    return out


def _accuracy(
    X: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, mean: np.ndarray | None = None
) -> float:
    return float(np.mean(_scores(X, W, b, mean).argmax(axis=1) == y))


def _work_dtype(X: np.ndarray, mean: np.ndarray | None = None) -> type[np.floating]:
    # With a mean, its dtype is the working dtype. Otherwise float64 input keeps float64 (exact
    # checks in tests) and everything else trains in float32.
    if mean is not None:
        return np.float64 if mean.dtype == np.float64 else np.float32
    return np.float64 if X.dtype == np.float64 else np.float32


def _check_mean(mean: Any, n_features: int) -> np.ndarray:
    mean = np.asarray(mean)
    if mean.shape != (n_features,) or mean.dtype.kind != "f":
        raise ConfigError(
            f"mean must be a float array of shape ({n_features},), "
            f"got shape {mean.shape} and dtype {mean.dtype}"
        )
    if not np.isfinite(mean).all():
        raise ConfigError("mean contains NaN or infinite values")
    return mean


def sgd(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    loss: str,
    reg: float,
    reg_type: str,
    l1_ratio: float,
    delta: float,
    learning_rate: float,
    batch_size: int,
    epochs: int,
    momentum: float = 0.0,
    nesterov: bool = False,
    lr_decay: float = 1.0,
    patience: int | None = None,
    train_eval_size: int | None = None,
    rng: np.random.Generator,
    W0_scale: float = 1e-3,
    mean: np.ndarray | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> SGDResult:
    """Minibatch stochastic gradient descent on :func:`loss_grad`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The features, never modified. Without ``mean`` they are used as they are (float64 stays
        float64, anything else is converted to float32 once). With ``mean`` they may be raw
        (uint8 images): each minibatch, and each chunk scored for the accuracies, is converted
        to the dtype of ``mean`` and centred on the fly, so no float copy of the whole ``X`` is
        ever made; the numbers are the same as centring ``X`` first.
    y : ndarray of shape (n_samples,), int in ``[0, n_classes)``
    n_classes : int >= 2
    loss, reg, reg_type, l1_ratio, delta
        The objective; see :func:`loss_grad`.
    learning_rate : float > 0
        Initial step size.
    batch_size : int >= 1
    epochs : int >= 1
        The most epochs to run.
    momentum : float in [0, 1)
        Classical momentum ``v = momentum * v - lr * g; W += v`` (on ``W`` and ``b``).
    nesterov : bool
        Nesterov momentum: the gradient is taken at the look-ahead point ``W + momentum * v``.
        Requires ``momentum > 0``.
    lr_decay : float in (0, 1]
        The learning rate is multiplied by this after each epoch.
    patience : int >= 1, optional
        Early stopping on validation accuracy (requires ``X_val``): training ends once
        ``patience`` epochs in a row have not raised the best validation accuracy, and the
        weights of the best epoch (the first one, on ties) are returned.
    train_eval_size : int >= 1, optional
        The per-epoch training accuracy is measured on a fixed random subset of this many
        training samples (drawn once, before the first epoch), not on all of them; None or a
        size >= n_samples uses them all.
    rng : numpy.random.Generator
        The only source of randomness: ``W`` starts as ``W0_scale * rng.standard_normal``
        (``b`` at 0), then every epoch draws ``rng.permutation(n_samples)`` and takes
        consecutive slices of ``batch_size`` of it as minibatches, the last partial one
        included. The ``train_eval_size`` subset comes from ``rng.spawn(1)[0]``, which leaves
        that sequence unchanged.
    W0_scale : float >= 0
    mean : float ndarray of shape (n_features,), optional
        Subtracted from every row of ``X`` and ``X_val`` (see ``X``).
    X_val : ndarray of shape (n_val, n_features), optional
    y_val : ndarray of shape (n_val,), optional; required with ``X_val``
    on_epoch_end : callable, optional
        Called after each epoch as ``on_epoch_end(epoch, step_losses, train_acc, val_acc)``:
        ``epoch`` counts from 0 (it indexes the accuracy histories), ``step_losses`` is a float64
        array of that epoch's minibatch losses, ``val_acc`` is None without a validation set.

    Returns
    -------
    SGDResult

    Raises
    ------
    ConfigError
        For any invalid argument.
    TrainingDiverged
        When a minibatch loss (or the weights) becomes NaN or infinite; the message names the
        step, the epoch and every hyperparameter, since the usual cure is a smaller learning rate.
    """
    _check_sgd_hyperparameters(
        loss=loss, reg=reg, reg_type=reg_type, l1_ratio=l1_ratio, delta=delta,
        learning_rate=learning_rate, batch_size=batch_size, epochs=epochs,
        momentum=momentum, nesterov=nesterov, lr_decay=lr_decay, patience=patience,
        train_eval_size=train_eval_size,
    )  # fmt: skip
    _check_real("W0_scale", W0_scale, low=0.0)
    _check_int("n_classes", n_classes, low=2)
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise ConfigError(f"on_epoch_end must be callable or None, got {on_epoch_end!r}")

    X = _check_features("X", X)
    y = _check_labels("y", y, X.shape[0], n_classes)
    if mean is not None:
        mean = _check_mean(mean, X.shape[1])
    dtype = _work_dtype(X, mean)
    if mean is None:
        X = X.astype(dtype, copy=False)
    if (X_val is None) != (y_val is None):
        raise ConfigError("X_val and y_val must be given together (or both left as None)")
    if patience is not None and X_val is None:
        raise ConfigError(f"patience={patience!r} (early stopping) needs X_val and y_val")
    if X_val is not None:
        X_val = _check_features("X_val", X_val)
        if X_val.shape[1] != X.shape[1]:
            raise ConfigError(
                f"X_val has {X_val.shape[1]} features but X has {X.shape[1]}; they must match"
            )
        y_val = _check_labels("y_val", y_val, X_val.shape[0], n_classes)
        if mean is None:
            X_val = X_val.astype(dtype, copy=False)

    n_samples, n_features = X.shape
    steps_per_epoch = -(-n_samples // batch_size)
    max_steps = epochs * steps_per_epoch

    W = (W0_scale * rng.standard_normal((n_features, n_classes))).astype(dtype)
    b = np.zeros(n_classes, dtype=dtype)
    X_eval, y_eval = X, y
    if train_eval_size is not None and train_eval_size < n_samples:
        # A spawned child generator: the subset does not shift the parent's stream, so the
        # training itself (initialisation, shuffles) does not depend on train_eval_size.
        eval_rng = rng.spawn(1)[0]
        rows = np.sort(eval_rng.choice(n_samples, size=train_eval_size, replace=False))
        X_eval, y_eval = X[rows], y[rows]
    vW = np.zeros_like(W)
    vb = np.zeros_like(b)
    loss_history = np.empty(max_steps, dtype=np.float64)
    train_accuracy = np.empty(epochs, dtype=np.float64)
    val_accuracy = np.empty(epochs if X_val is not None else 0, dtype=np.float64)
    best_epoch, best_val, best_W, best_b = -1, -math.inf, W, b

    def diverged(what: str, step: int, epoch: int, lr: float) -> TrainingDiverged:
        return TrainingDiverged(
            f"training diverged: {what} at step {step} of {max_steps} (epoch {epoch} of {epochs}; "
            f"both counted from 0) with loss={loss!r}, learning_rate={learning_rate!r} "
            f"(current {lr!r}), reg={reg!r}, reg_type={reg_type!r}, l1_ratio={l1_ratio!r}, "
            f"delta={delta!r}, batch_size={batch_size!r}, momentum={momentum!r}, "
            f"nesterov={nesterov!r}, lr_decay={lr_decay!r}, W0_scale={W0_scale!r}. "
            f"Try a smaller learning_rate (or a smaller reg)."
        )

    lr = float(learning_rate)
    step = 0
    n_epochs = 0
    for epoch in range(epochs):
        order = rng.permutation(n_samples)
        epoch_start = step
        # Overflow in float32 is expected once training diverges; it is reported as
        # TrainingDiverged below instead of as a stream of RuntimeWarnings.
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, n_samples, batch_size):
                idx = order[start : start + batch_size]
                X_batch, y_batch = X[idx], y[idx]
                if mean is not None:
                    # X[idx] is already a copy: convert (if needed) and centre it in place.
                    X_batch = X_batch.astype(dtype, copy=False)
                    X_batch -= mean
                if nesterov:
                    value, dW, db = _loss_grad(
                        W + momentum * vW, b + momentum * vb, X_batch, y_batch,
                        loss, reg, reg_type, l1_ratio, delta,
                    )  # fmt: skip
                else:
                    value, dW, db = _loss_grad(
                        W, b, X_batch, y_batch, loss, reg, reg_type, l1_ratio, delta
                    )
                if not math.isfinite(value):
                    raise diverged(f"the loss became {value}", step, epoch, lr)
                loss_history[step] = value
                if momentum:
                    vW *= momentum
                    vW -= lr * dW
                    vb *= momentum
                    vb -= lr * db
                    W += vW
                    b += vb
                else:
                    W -= lr * dW
                    b -= lr * db
                step += 1
        # The loss of the last step was computed before its update; make sure that update
        # did not overflow either, so the returned weights are always finite.
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise diverged("the weights became non-finite", step - 1, epoch, lr)
        n_epochs = epoch + 1

        train_accuracy[epoch] = _accuracy(X_eval, y_eval, W, b, mean)
        val_acc = None
        if X_val is not None:
            val_acc = val_accuracy[epoch] = _accuracy(X_val, y_val, W, b, mean)
        if on_epoch_end is not None:
            on_epoch_end(
                epoch, loss_history[epoch_start:step].copy(), train_accuracy[epoch], val_acc
            )
        if patience is not None:
            if val_acc > best_val:
                best_epoch, best_val, best_W, best_b = epoch, val_acc, W.copy(), b.copy()
            elif epoch - best_epoch >= patience:
                break
        lr *= lr_decay

    if patience is None:
        best_epoch, best_W, best_b = n_epochs - 1, W, b
    return SGDResult(
        W=best_W,
        b=best_b,
        loss_history=loss_history[:step],
        train_accuracy=train_accuracy[:n_epochs],
        val_accuracy=val_accuracy[:n_epochs],
        n_steps=step,
        n_epochs=n_epochs,
        best_epoch=best_epoch,
    )


# --------------------------------------------------------------------------- estimator


class LinearClassifier:
    """Linear classifier (multiclass SVM or softmax) on mean-subtracted inputs, trained by SGD.

    Follows the scikit-learn estimator contract: ``__init__`` only stores its keyword
    hyperparameters (validated in :meth:`fit`), ``fit`` returns ``self``, and learned state
    ends in ``_``. The defaults are the classic cs231n settings for raw CIFAR-10 pixels.

    Parameters
    ----------
    loss : {"hinge", "softmax"}
    reg : float >= 0
    reg_type : {"l2", "l1", "elasticnet"}
    l1_ratio : float in [0, 1]
    delta : float > 0
    learning_rate : float > 0
    batch_size : int >= 1
    epochs : int >= 1
    momentum : float in [0, 1)
    nesterov : bool
    lr_decay : float in (0, 1]
    patience : int >= 1 or None
        Early stopping on validation accuracy (needs ``X_val`` in :meth:`fit`); see :func:`sgd`.
    train_eval_size : int >= 1 or None
        Size of the training subset the per-epoch training accuracy is measured on.
    random_state : int >= 0
        Seed of the ``numpy.random.default_rng`` driving initialisation and shuffling.

    Attributes
    ----------
    mean_ : float32 ndarray of shape (n_features,)
        Mean image of the training data, subtracted from every input.
    W_ : float32 ndarray of shape (n_features, n_classes)
    b_ : float32 ndarray of shape (n_classes,)
    classes_ : ndarray of shape (n_classes,), equal to ``arange(n_classes)``
    n_features_in_ : int
    loss_history_ : float64 ndarray of shape (n_steps_,)
    train_accuracy_history_ : float64 ndarray of shape (n_epochs_,)
    val_accuracy_history_ : float64 ndarray of shape (n_epochs_,), or (0,) when fit without X_val
    n_steps_ : int
    n_epochs_ : int
        Epochs run (fewer than ``epochs`` when early stopping ended training).
    best_epoch_ : int
        The epoch (from 0) whose weights the model holds.
    """

    _PARAM_NAMES = (
        "loss",
        "reg",
        "reg_type",
        "l1_ratio",
        "delta",
        "learning_rate",
        "batch_size",
        "epochs",
        "momentum",
        "nesterov",
        "lr_decay",
        "patience",
        "train_eval_size",
        "random_state",
    )

    def __init__(
        self,
        *,
        loss: str = "hinge",
        reg: float = 2.5e4,
        reg_type: str = "l2",
        l1_ratio: float = 0.5,
        delta: float = 1.0,
        learning_rate: float = 1e-7,
        batch_size: int = 200,
        epochs: int = 10,
        momentum: float = 0.0,
        nesterov: bool = False,
        lr_decay: float = 1.0,
        patience: int | None = None,
        train_eval_size: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.loss = loss
        self.reg = reg
        self.reg_type = reg_type
        self.l1_ratio = l1_ratio
        self.delta = delta
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.momentum = momentum
        self.nesterov = nesterov
        self.lr_decay = lr_decay
        self.patience = patience
        self.train_eval_size = train_eval_size
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The ``__init__`` hyperparameters as a dict (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._PARAM_NAMES}

    def set_params(self, **params: Any) -> LinearClassifier:
        """Set hyperparameters by name (scikit-learn contract); unknown names raise ConfigError."""
        _check_param_names(params)
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> LinearClassifier:
        """Subtract the training mean image and train with :func:`sgd`.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Raw images (uint8 CIFAR-10 rows of 3,072) or any numeric features; not modified and
            not copied: minibatches are converted to float32 and centred as they are drawn.
        y : ndarray of shape (n_samples,)
            Integer labels; the classes present must be exactly ``0 .. n_classes-1``.
        X_val : ndarray of shape (n_val, n_features), optional
            Raw like ``X``; the *training* mean is subtracted from it, never its own.
        y_val : ndarray of shape (n_val,), optional
        on_epoch_end : callable, optional
            Passed to :func:`sgd`.

        Returns
        -------
        self
        """
        check_hyperparameters(self.get_params())
        X = _check_features("X", X)
        y = _check_labels("y", y, X.shape[0])
        classes = np.unique(y)
        if classes.size < 2 or classes[0] != 0 or classes[-1] != classes.size - 1:
            raise ConfigError(
                "y must use the contiguous labels 0 .. n_classes-1 with n_classes >= 2, "
                f"got classes {classes.tolist()[:20]}"
            )
        n_classes = int(classes.size)
        if (X_val is None) != (y_val is None):
            raise ConfigError("X_val and y_val must be given together (or both left as None)")
        if X_val is not None:
            X_val = _check_features("X_val", X_val)
            if X_val.shape[1] != X.shape[1]:
                raise ConfigError(
                    f"X_val has {X_val.shape[1]} features but X has {X.shape[1]}; they must match"
                )
            y_val = _check_labels("y_val", y_val, X_val.shape[0], n_classes)
        if on_epoch_end is not None and not callable(on_epoch_end):
            raise ConfigError(f"on_epoch_end must be callable or None, got {on_epoch_end!r}")

        # Accumulate in float64: a float32 running sum over 49,000 rows loses precision.
        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        result = sgd(
            X,
            y,
            n_classes,
            loss=self.loss,
            reg=self.reg,
            reg_type=self.reg_type,
            l1_ratio=self.l1_ratio,
            delta=self.delta,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            epochs=self.epochs,
            momentum=self.momentum,
            nesterov=self.nesterov,
            lr_decay=self.lr_decay,
            patience=self.patience,
            train_eval_size=self.train_eval_size,
            rng=np.random.default_rng(self.random_state),
            mean=mean,
            X_val=X_val,
            y_val=y_val,
            on_epoch_end=on_epoch_end,
        )
        self.mean_ = mean
        self.W_ = result.W
        self.b_ = result.b
        self.classes_ = classes
        self.n_features_in_ = int(X.shape[1])
        self.loss_history_ = result.loss_history
        self.train_accuracy_history_ = result.train_accuracy
        self.val_accuracy_history_ = result.val_accuracy
        self.n_steps_ = result.n_steps
        self.n_epochs_ = result.n_epochs
        self.best_epoch_ = result.best_epoch
        return self

    def _check_fitted_input(self, X: Any) -> np.ndarray:
        if not hasattr(self, "W_"):
            raise ConfigError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) before using it"
            )
        X = _check_features("X", X)
        if X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"X has {X.shape[1]} features but the classifier was fit on "
                f"{self.n_features_in_}; they must match"
            )
        return X

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Class scores of raw inputs (the training mean is subtracted here).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        scores : float32 ndarray of shape (n_samples, n_classes)
        """
        X = self._check_fitted_input(X)
        return _scores(X, self.W_, self.b_, mean=self.mean_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels of shape (n_samples,) for X of shape (n_samples, n_features)."""
        scores = self.decision_function(X)  # checks fitted-ness before classes_ is touched
        return self.classes_[scores.argmax(axis=1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean accuracy on X of shape (n_samples, n_features) and y of shape (n_samples,)."""
        X = self._check_fitted_input(X)
        y = _check_labels("y", y, X.shape[0])
        return float(np.mean(self.predict(X) == y))


def _check_param_names(params: Mapping[str, Any]) -> None:
    unknown = [name for name in params if name not in LinearClassifier._PARAM_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r} for LinearClassifier; "
            f"valid ones are {LinearClassifier._PARAM_NAMES}"
        )


def check_hyperparameters(params: Mapping[str, Any]) -> None:
    """Validate ``LinearClassifier`` keyword arguments without fitting (missing ones default).

    Raises ConfigError naming the first unknown or invalid one, so that a search can reject a
    bad candidate before any training starts.
    """
    _check_param_names(params)
    full = {**LinearClassifier().get_params(), **params}
    random_state = full.pop("random_state")
    _check_sgd_hyperparameters(**full)
    if not _is_int(random_state) or random_state < 0:
        raise ConfigError(f"random_state must be an integer >= 0, got {random_state!r}")
