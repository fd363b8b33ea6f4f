"""Minibatch SGD: ``X`` (n_samples, n_features), ``y`` (n_samples,) and a checked
:class:`SGDConfig` in; ``W`` (n_features, n_classes), ``b`` (n_classes,) and histories out.

Training works in float32 (the CIFAR-10 training matrix is 49,000 x 3,072: 600 MB in float32,
twice that in float64); float64 input without a mean trains in float64, for exact tests.

Each step is one call of a compiled kernel (:mod:`cifarlab.linear._sgd_kernels`) that reads
the minibatch's rows of ``X`` once, straight from the raw uint8 images: tiles of a few rows are
converted and centred into a cache-resident buffer that serves both the scores and the
gradient. The loss, the penalty and the update are the ones of
:func:`cifarlab.linear.losses.loss_grad` and the documented momentum rules; the sums run in
another order than numpy's, so results agree with the plain numpy loop to float tolerance
(``tests/test_linear_sgd_kernel.py``), and are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cifarlab.checks import check_features, check_labels, check_rng
from cifarlab.errors import ConfigError, TrainingDiverged
from cifarlab.params import Param, check_linear

# Rows per chunk when scoring a whole data set: the float32 temporary of a mean-subtracted chunk
# (12 MB for 3,072 features) stays in cache, instead of a full float copy of the data.
_CHUNK_ROWS = 1024

# Arguments of this module only, not LinearClassifier hyperparameters (so not in params.LINEAR).
_W0_SCALE = Param("float", low=0)
_N_CLASSES = Param("int", low=2)
# Codes of the step kernel (cifarlab.linear._sgd_kernels: HINGE, SOFTMAX; L2, L1, ELASTICNET).
_LOSS_CODES = {"hinge": 0, "softmax": 1}
_REG_CODES = {"l2": 0, "l1": 1, "elasticnet": 2}

EpochCallback = Callable[[int, np.ndarray, float, "float | None"], Any]


@dataclass(frozen=True)
class SGDConfig:
    """The objective and the schedule of :func:`sgd`, checked once: when the config is made.

    The fields are the ``LinearClassifier`` hyperparameters but ``random_state``, plus
    ``W0_scale``, with the types and bounds declared in :data:`cifarlab.params.LINEAR`. Values are
    stored converted (``epochs=3.0`` becomes ``3``); an invalid one is a ConfigError naming it.

    loss : {"hinge", "softmax"}; reg : float >= 0; reg_type : {"l2", "l1", "elasticnet"};
    l1_ratio : float in [0, 1]; delta : float > 0
        The objective; see :func:`cifarlab.linear.losses.loss_grad`.
    learning_rate : float > 0
        Step size of the first epoch.
    batch_size : int >= 1
    epochs : int >= 1
        The most epochs to run.
    momentum : float in [0, 1)
        Classical momentum ``v = momentum * v - lr * g; W += v`` (on ``W`` and ``b``).
    nesterov : bool
        Nesterov momentum: the gradient is taken at the look-ahead point ``W + momentum * v``.
        Needs ``momentum > 0``.
    lr_decay : float in (0, 1]
        The learning rate is multiplied by this after each epoch.
    patience : int >= 1 or None
        Early stopping on validation accuracy (needs ``X_val``): training ends once ``patience``
        epochs in a row have not raised it; the weights of the best epoch (the first one, on
        ties) are returned.
    train_eval_size : int >= 1 or None
        The per-epoch training accuracy is measured on a fixed random subset of this many
        training samples, not on all of them; None or a size >= n_samples uses them all.
    W0_scale : float >= 0
        ``W`` starts as ``W0_scale * rng.standard_normal((n_features, n_classes))``.
    """

    loss: str
    reg: float
    reg_type: str
    l1_ratio: float
    delta: float
    learning_rate: float
    batch_size: int
    epochs: int
    momentum: float = 0.0
    nesterov: bool = False
    lr_decay: float = 1.0
    patience: int | None = None
    train_eval_size: int | None = None
    W0_scale: float = 1e-3

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        W0_scale = values.pop("W0_scale")
        checked = {**check_linear(values), "W0_scale": _W0_SCALE.check("W0_scale", W0_scale)}
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: how dataclasses set fields


@dataclass(frozen=True)
class SGDResult:
    """What :func:`sgd` learned and how it got there.

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
        ``n_epochs * ceil(n_samples / batch_size)``.
    n_epochs : int
        ``epochs``, or fewer when early stopping ended training.
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


def single_blas_thread() -> Any:
    """Limit BLAS to one thread (a context manager; or, called bare, for the whole process):
    OpenBLAS results differ in the last bits between thread counts."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _scores(
    X: np.ndarray, W: np.ndarray, b: np.ndarray, mean: np.ndarray | None = None
) -> np.ndarray:
    """Scores (n_samples, n_classes) of ``X`` (n_samples, n_features), in chunks so that raw
    uint8 input is only ever converted (and mean-subtracted) ``_CHUNK_ROWS`` rows at a time."""
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


def _kernel_accuracy(
    X: np.ndarray, y: np.ndarray, Wt: np.ndarray, b: np.ndarray, centre: np.ndarray, buffers
) -> float:
    """:func:`_accuracy` by the step kernel's tiles (X as :func:`_kernel_input` makes it, Wt
    class-major, buffers from ``_sgd_kernels.scratch``): the per-epoch accuracies of
    :func:`sgd`, read a few rows at a time with no float copy."""
    from cifarlab.linear import _sgd_kernels as kern

    scores = np.empty((X.shape[0], Wt.shape[0]), dtype=Wt.dtype)
    kern.scores(X, centre, Wt, b, scores, buffers[1], buffers[2])
    return float(np.mean(scores.argmax(axis=1) == y))


def _kernel_input(X: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``X`` as the kernels read it: C-contiguous uint8 or ``dtype`` (other types converted,
    once; the pipeline's raw images pass as they are)."""
    if X.dtype not in (np.uint8, dtype):
        X = X.astype(dtype)
    return np.ascontiguousarray(X)


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


def _check_validation(
    X_val: Any, y_val: Any, n_features: int, n_classes: int, patience: int | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``X_val`` (n_val, n_features) and ``y_val`` (n_val,) as ndarrays, or both None."""
    if (X_val is None) != (y_val is None):
        raise ConfigError("X_val and y_val must be given together (or both left as None)")
    if X_val is None:
        if patience is not None:
            raise ConfigError(f"patience={patience!r} (early stopping) needs X_val and y_val")
        return None, None
    X_val = check_features("X_val", X_val)
    if X_val.shape[1] != n_features:
        raise ConfigError(
            f"X_val has {X_val.shape[1]} features but X has {n_features}; they must match"
        )
    return X_val, check_labels("y_val", y_val, X_val.shape[0], n_classes)


def _check_callback(on_epoch_end: Any) -> None:
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise ConfigError(f"on_epoch_end must be callable or None, got {on_epoch_end!r}")


# --------------------------------------------------------------------------- the loop


def sgd(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: SGDConfig,
    *,
    rng: np.random.Generator,
    mean: np.ndarray | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> SGDResult:
    """Minibatch stochastic gradient descent on :func:`cifarlab.linear.losses.loss_grad`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Never modified. Without ``mean``, used as it is (float64 stays float64, anything else is
        converted to float32 once). With ``mean`` it may be raw (uint8 images): each minibatch,
        and each chunk scored for the accuracies, is converted to the dtype of ``mean`` and
        centred on the fly, with the same numbers as centring ``X`` first but no float copy.
    y : ndarray of shape (n_samples,), int in ``[0, n_classes)``
    n_classes : int >= 2
    config : SGDConfig
    rng : numpy.random.Generator
        The only source of randomness: ``W`` starts as ``W0_scale * rng.standard_normal``
        (``b`` at 0), then every epoch draws ``rng.permutation(n_samples)``, whose consecutive
        slices of ``batch_size`` (the last partial one included) are the minibatches. The
        ``train_eval_size`` subset comes from ``rng.spawn(1)[0]``, which leaves that unchanged.
    mean : float ndarray of shape (n_features,), optional
        Subtracted from every row of ``X`` and ``X_val`` (see ``X``).
    X_val, y_val : ndarrays of shape (n_val, n_features) and (n_val,), optional; both or neither
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
        step, the epoch and the config: the usual cure is a smaller learning rate.
    """
    if not isinstance(config, SGDConfig):
        raise ConfigError(f"config must be an SGDConfig, got {type(config).__name__}")
    n_classes = _N_CLASSES.check("n_classes", n_classes)
    check_rng(rng)
    _check_callback(on_epoch_end)
    X = check_features("X", X)
    y = check_labels("y", y, X.shape[0], n_classes)
    if mean is not None:
        mean = _check_mean(mean, X.shape[1])
    X_val, y_val = _check_validation(X_val, y_val, X.shape[1], n_classes, config.patience)
    return _sgd(
        X, y, n_classes, config, rng=rng, mean=mean, X_val=X_val, y_val=y_val,
        on_epoch_end=on_epoch_end,
    )  # fmt: skip


def _sgd(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: SGDConfig,
    *,
    rng: np.random.Generator,
    mean: np.ndarray | None,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    on_epoch_end: EpochCallback | None,
) -> SGDResult:
    """:func:`sgd` behind its checks (``LinearClassifier.fit`` has made them already)."""
    # Imported here, not with the module: a served model predicts through this module's
    # _scores (numpy) and must not need numba.
    from cifarlab.linear import _sgd_kernels as _kern

    # Locals, not attribute lookups, in the loop below: it runs once per minibatch.
    loss, reg, reg_type = config.loss, config.reg, config.reg_type
    l1_ratio, delta, batch_size = config.l1_ratio, config.delta, config.batch_size
    epochs, momentum, nesterov = config.epochs, config.momentum, config.nesterov
    patience, train_eval_size = config.patience, config.train_eval_size

    # With a mean, its dtype is the working dtype. Otherwise float64 input keeps float64 (exact
    # checks in tests) and everything else trains in float32.
    dtype = np.float64 if (X if mean is None else mean).dtype == np.float64 else np.float32
    if mean is None:
        X = X.astype(dtype, copy=False)
        if X_val is not None:
            X_val = X_val.astype(dtype, copy=False)
    n_samples, n_features = X.shape
    X_step = _kernel_input(X, dtype)
    centre = np.zeros(n_features, dtype) if mean is None else np.ascontiguousarray(mean, dtype)
    y_step = np.ascontiguousarray(y, dtype=np.int64)
    max_steps = epochs * -(-n_samples // batch_size)

    W = (config.W0_scale * rng.standard_normal((n_features, n_classes))).astype(dtype)
    b = np.zeros(n_classes, dtype=dtype)
    X_eval, y_eval = X_step, y
    if train_eval_size is not None and train_eval_size < n_samples:
        # A spawned child generator: the subset does not shift the parent's stream, so the
        # training itself (initialisation, shuffles) does not depend on train_eval_size.
        eval_rng = rng.spawn(1)[0]
        rows = np.sort(eval_rng.choice(n_samples, size=train_eval_size, replace=False))
        X_eval, y_eval = X_step[rows], y[rows]
    if X_val is not None:
        X_val = _kernel_input(X_val, dtype)
    # The kernels work on the class-major transpose of W (see _sgd_kernels).
    Wt = np.ascontiguousarray(W.T)
    buffers = _kern.scratch(n_classes, n_features, dtype)
    G, xbuf, S = buffers  # G: the step's gradient
    gb = np.empty_like(b)
    vWt = np.zeros_like(Wt)
    vb = np.zeros_like(b)
    W_ahead = np.empty_like(Wt) if nesterov else Wt
    loss_code, reg_code = _LOSS_CODES[loss], _REG_CODES[reg_type]
    loss_history = np.empty(max_steps, dtype=np.float64)
    train_accuracy = np.empty(epochs, dtype=np.float64)
    val_accuracy = np.empty(epochs if X_val is not None else 0, dtype=np.float64)
    best_epoch, best_val, best_W, best_b = -1, -math.inf, W, b

    def diverged(what: str, step: int, epoch: int, lr: float) -> TrainingDiverged:
        return TrainingDiverged(
            f"training diverged: {what} at step {step} of {max_steps} (epoch {epoch} of {epochs}; "
            f"both counted from 0; learning rate then {lr!r}) with {config!r}. "
            f"Try a smaller learning_rate (or a smaller reg)."
        )

    lr = config.learning_rate
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
                at_W, at_b = Wt, b
                if nesterov:  # the gradient at the look-ahead point W + momentum * v
                    np.multiply(vWt, momentum, out=W_ahead)
                    W_ahead += Wt
                    at_W, at_b = W_ahead, b + momentum * vb
                value = _kern.loss_grad(
                    X_step, idx, centre, at_W, at_b, y_step, loss_code, delta, G, gb, xbuf, S
                )
                if reg:
                    value += _kern.penalty_step(at_W, G, reg, reg_code, l1_ratio)
                if not math.isfinite(value):
                    raise diverged(f"the loss became {value}", step, epoch, lr)
                loss_history[step] = value
                _kern.update(Wt, b, G, gb, vWt, vb, lr, momentum)
                step += 1
        # The loss of the last step was computed before its update; make sure that update
        # did not overflow either, so the returned weights are always finite.
        if not (np.isfinite(Wt).all() and np.isfinite(b).all()):
            raise diverged("the weights became non-finite", step - 1, epoch, lr)
        n_epochs = epoch + 1
        W = np.ascontiguousarray(Wt.T)

        train_accuracy[epoch] = _kernel_accuracy(X_eval, y_eval, Wt, b, centre, buffers)
        val_acc = None
        if X_val is not None:
            val_acc = _kernel_accuracy(X_val, y_val, Wt, b, centre, buffers)
            val_accuracy[epoch] = val_acc
        if on_epoch_end is not None:
            on_epoch_end(
                epoch, loss_history[epoch_start:step].copy(), train_accuracy[epoch], val_acc
            )
        if patience is not None:
            if val_acc > best_val:
                best_epoch, best_val, best_W, best_b = epoch, val_acc, W, b.copy()
            elif epoch - best_epoch >= patience:
                break
        lr *= config.lr_decay

    if patience is None:
        best_epoch, best_W, best_b = n_epochs - 1, W, b.copy()
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
