"""The linear classifier as an estimator, the final model of ``svm_train``, and its file.

:class:`LinearClassifier` scores ``(X - mean_) @ W_ + b_`` for raw images ``X`` of shape
(n_samples, n_features); it follows the scikit-learn estimator contract and trains with
:func:`cifarlab.linear.sgd.sgd`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from cifarlab import io
from cifarlab.checks import check_features, check_labels
from cifarlab.errors import ConfigError, DataError
from cifarlab.linear.sgd import (
    EpochCallback,
    SGDConfig,
    _check_callback,
    _check_validation,
    _scores,
    _sgd,
    single_blas_thread,
)
from cifarlab.params import LINEAR

if TYPE_CHECKING:
    from cifarlab.data.prepared import Split


class LinearClassifier:
    """Linear classifier (multiclass SVM or softmax) on mean-subtracted inputs, trained by SGD.

    Follows the scikit-learn estimator contract: ``__init__`` only stores its keyword
    hyperparameters (checked in :meth:`fit`), ``fit`` returns ``self``, and learned state
    ends in ``_``. The defaults are the classic cs231n settings for raw CIFAR-10 pixels.

    Parameters
    ----------
    loss, reg, reg_type, l1_ratio, delta, learning_rate, batch_size, epochs, momentum, nesterov,
    lr_decay, patience, train_eval_size
        The fields of :class:`cifarlab.linear.sgd.SGDConfig`, which documents them.
        ``patience`` needs ``X_val`` in :meth:`fit`.
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
        return {name: getattr(self, name) for name in LINEAR}

    def set_params(self, **params: Any) -> LinearClassifier:
        """Set hyperparameters by name (scikit-learn contract); unknown names raise ConfigError."""
        unknown = [name for name in params if name not in LINEAR]
        if unknown:
            raise ConfigError(
                f"unknown parameter {unknown[0]!r} for LinearClassifier; "
                f"valid ones are {tuple(LINEAR)}"
            )
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
        """Subtract the training mean image and train with :func:`cifarlab.linear.sgd.sgd`.

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
            Passed to :func:`cifarlab.linear.sgd.sgd`.

        Returns
        -------
        self
        """
        config, random_state = sgd_config(self.get_params())
        return self._fit(config, random_state, X, y, X_val, y_val, on_epoch_end)

    def _fit(
        self,
        config: SGDConfig,
        random_state: int,
        X: Any,
        y: Any,
        X_val: Any = None,
        y_val: Any = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> LinearClassifier:
        """:meth:`fit` behind its hyperparameter check, made by :func:`sgd_config`: ``run_trials``
        checks every trial before the first one trains."""
        X = check_features("X", X)
        y = check_labels("y", y, X.shape[0])
        classes = np.unique(y)
        # Labels are >= 0 (check_labels), so a largest one of size - 1 means 0 .. size - 1.
        if classes.size < 2 or classes[-1] != classes.size - 1:
            raise ConfigError(
                "y must use the contiguous labels 0 .. n_classes-1 with n_classes >= 2, "
                f"got classes {classes.tolist()[:20]}"
            )
        n_classes = int(classes.size)
        X_val, y_val = _check_validation(X_val, y_val, X.shape[1], n_classes, config.patience)
        _check_callback(on_epoch_end)

        # Accumulate in float64: a float32 running sum over 49,000 rows loses precision.
        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        result = _sgd(
            X, y, n_classes, config, rng=np.random.default_rng(random_state), mean=mean,
            X_val=X_val, y_val=y_val, on_epoch_end=on_epoch_end,
        )  # fmt: skip
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
        X = check_features("X", X)
        if X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"X has {X.shape[1]} features but the classifier was fit on "
                f"{self.n_features_in_}; they must match"
            )
        return X

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Class scores (n_samples, n_classes), float32, of raw inputs X (n_samples,
        n_features); the training mean is subtracted here."""
        X = self._check_fitted_input(X)
        return _scores(X, self.W_, self.b_, mean=self.mean_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels of shape (n_samples,) for X of shape (n_samples, n_features)."""
        scores = self.decision_function(X)  # checks fitted-ness before classes_ is touched
        return self.classes_[scores.argmax(axis=1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean accuracy on X of shape (n_samples, n_features) and y of shape (n_samples,)."""
        X = self._check_fitted_input(X)
        y = check_labels("y", y, X.shape[0])
        return float(np.mean(self.predict(X) == y))


def sgd_config(hyperparameters: Mapping[str, Any]) -> tuple[SGDConfig, int]:
    """``LinearClassifier`` keyword hyperparameters (missing ones default), checked once: the
    :class:`SGDConfig` of the loop and the ``random_state`` seeding it.

    Raises ConfigError naming the first unknown or invalid one.
    """
    params = LinearClassifier().set_params(**hyperparameters).get_params()
    random_state = LINEAR["random_state"].check("random_state", params.pop("random_state"))
    return SGDConfig(**params), random_state


# --------------------------------------------------------------------------- svm_train


def train_linear(
    train: Split,
    val: Split,
    hyperparameters: Mapping[str, Any],
    on_epoch_end: Callable[..., Any] | None = None,
) -> tuple[LinearClassifier, dict[str, Any]]:
    """The final linear model: fit on train, val accuracy tracked every epoch (and used for
    early stopping when ``patience`` is set); ``on_epoch_end`` as in ``LinearClassifier.fit``.

    Computes with one BLAS thread, like the search trials, so it reproduces the chosen trial
    bit for bit. Returns the model and its summary: the searched hyperparameters, the loss, the
    epoch kept, the epochs run, and the accuracy of the kept weights on the whole training
    split and on val.
    """
    with single_blas_thread():
        model = LinearClassifier(**hyperparameters).fit(
            train.X, train.y, val.X, val.y, on_epoch_end=on_epoch_end
        )
        summary = {
            "loss": model.loss,
            "learning_rate": float(model.learning_rate),
            "reg": float(model.reg),
            "batch_size": int(model.batch_size),
            "best_epoch": int(model.best_epoch_),
            "epochs_run": int(model.n_epochs_),
            "train_accuracy": model.score(train.X, train.y),
            "val_accuracy": float(model.val_accuracy_history_[model.best_epoch_]),
        }
    return model, summary


def save_linear_model(path: str | os.PathLike[str], model: LinearClassifier) -> None:
    """Weights, bias, mean image, classes and hyperparameters (as JSON) in one ``.npz``, no
    pickle; written atomically."""
    io.save_arrays(
        path,
        W=model.W_,
        b=model.b_,
        mean=model.mean_,
        classes=model.classes_,
        hyperparameters=np.array(json.dumps(model.get_params(), sort_keys=True)),
    )


def load_linear_model(path: str | os.PathLike[str]) -> LinearClassifier:
    """The fitted classifier :func:`save_linear_model` wrote (its histories are not kept)."""
    try:
        arrays = io.load_arrays(path)
    except FileNotFoundError:
        raise DataError(f"{path} not found: run svm_train first (dvc repro)") from None
    model = LinearClassifier(**json.loads(str(arrays["hyperparameters"])))
    model.W_, model.b_, model.mean_, model.classes_ = (
        arrays["W"], arrays["b"], arrays["mean"], arrays["classes"],
    )  # fmt: skip
    model.n_features_in_ = model.W_.shape[0]
    return model
