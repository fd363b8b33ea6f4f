"""The linear classifier as an estimator, the final model of ``svm_train``, and its file.

:class:`LinearClassifier` scores ``(X - mean_) @ W_ + b_`` for raw images ``X`` of shape
(n_samples, n_features); it is a scikit-learn classifier and trains with
:func:`cifarlab.linear.sgd.sgd`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from cifarlab import io
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
from cifarlab.params import LINEAR, DeclaredParameters

if TYPE_CHECKING:
    from cifarlab.data.prepared import Split


def _is_softmax(model: LinearClassifier) -> bool:
    return model.loss == "softmax"


class LinearClassifier(ClassifierMixin, DeclaredParameters, BaseEstimator):
    """Linear classifier (multiclass SVM or softmax) on mean-subtracted inputs, trained by SGD.

    A scikit-learn classifier: ``clone``, ``Pipeline``, ``GridSearchCV`` and
    ``cross_val_score`` work with it, and scikit-learn's ``check_estimator`` passes (with
    hyperparameters suited to its standardised data: tests/test_sklearn_compat.py).
    ``__init__`` only stores its keyword hyperparameters; ``fit`` checks them against
    :data:`cifarlab.params.LINEAR` (their one declaration) and returns ``self``. The defaults
    are the classic cs231n settings for raw CIFAR-10 pixels.

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
    classes_ : ndarray of shape (n_classes,)
        The sorted distinct labels of ``y`` (any labels: ints, strings …); column ``j`` of
        ``W_`` scores ``classes_[j]``.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        Only when fit on a DataFrame with string column names.
    loss_history_ : float64 ndarray of shape (n_steps_,)
    train_accuracy_history_ : float64 ndarray of shape (n_epochs_,)
    val_accuracy_history_ : float64 ndarray of shape (n_epochs_,), or (0,) when fit without X_val
    n_steps_ : int
    n_epochs_ : int
        Epochs run (fewer than ``epochs`` when early stopping ended training).
    best_epoch_ : int
        The epoch (from 0) whose weights the model holds.
    """

    _declaration = LINEAR  # the parameters: get_params / set_params (DeclaredParameters)

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

    def __sklearn_is_fitted__(self) -> bool:
        # Not "any attribute ending in _": a fit that failed in training has set
        # n_features_in_ already.
        return hasattr(self, "W_")

    def fit(
        self,
        X: Any,
        y: Any,
        X_val: Any = None,
        y_val: Any = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> LinearClassifier:
        """Subtract the training mean image and train with :func:`cifarlab.linear.sgd.sgd`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Raw images (uint8 CIFAR-10 rows of 3,072) or any numeric features; an ndarray is
            not modified and not copied: minibatches are converted to float32 and centred as
            they are drawn.
        y : array-like of shape (n_samples,)
            Class labels, at least two distinct ones; any values (they become ``classes_``).
        X_val : array-like of shape (n_val, n_features), optional
            Raw like ``X``; the *training* mean is subtracted from it, never its own.
        y_val : array-like of shape (n_val,), optional
            Labels among those of ``y``.
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
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        # Training sees the classes as 0 .. n_classes-1: labels that already are those are
        # passed on unchanged, so results for them are what they always were.
        classes, y_encoded = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ConfigError(
                f"y must hold at least 2 classes to train a classifier, got 1 class: "
                f"{classes.tolist()}"
            )
        if y_val is not None:
            y_val = _encode("y_val", y_val, classes)
        X_val, y_val = _check_validation(X_val, y_val, X.shape[1], classes.size, config.patience)
        _check_callback(on_epoch_end)

        # Accumulate in float64: a float32 running sum over 49,000 rows loses precision.
        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        result = _sgd(
            X, y_encoded, classes.size, config, rng=np.random.default_rng(random_state),
            mean=mean, X_val=X_val, y_val=y_val, on_epoch_end=on_epoch_end,
        )  # fmt: skip
        self.mean_ = mean
        self.W_ = result.W
        self.b_ = result.b
        self.classes_ = classes
        self.loss_history_ = result.loss_history
        self.train_accuracy_history_ = result.train_accuracy
        self.val_accuracy_history_ = result.val_accuracy
        self.n_steps_ = result.n_steps
        self.n_epochs_ = result.n_epochs
        self.best_epoch_ = result.best_epoch
        return self

    def _class_scores(self, X: Any) -> np.ndarray:
        """Class scores (n_samples, n_classes), float32, of raw inputs X (n_samples,
        n_features); the training mean is subtracted here."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return _scores(X, self.W_, self.b_, mean=self.mean_)

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores of raw inputs X (n_samples, n_features), float32: shape (n_samples,
        n_classes), or (n_samples,) with two classes (scikit-learn's binary convention: the
        second class's score minus the first's, > 0 for ``classes_[1]``)."""
        scores = self._class_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels of shape (n_samples,) for X of shape (n_samples, n_features): the
        class of the highest score (the first of equal ones)."""
        best = self._class_scores(X).argmax(axis=1)  # first: it checks that the model is fitted
        return self.classes_[best]

    @available_if(_is_softmax)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), float64, for X of shape (n_samples,
        n_features): the softmax of the scores, the model's own probabilities. Only for
        ``loss="softmax"``: the hinge loss yields scores, not probabilities."""
        return softmax(self._class_scores(X).astype(np.float64), axis=1)


def _encode(name: str, labels: Any, classes: np.ndarray) -> np.ndarray:
    """``labels`` as positions in the sorted ``classes``; ConfigError naming ``name`` for a
    label that is not one of them."""
    labels = np.asarray(labels)
    unseen = labels[~np.isin(labels, classes)]
    if unseen.size:
        first = list(dict.fromkeys(unseen.tolist()))[:10]  # no sort: labels of any type
        raise ConfigError(f"{name} holds labels that y does not: {first}")
    return np.searchsorted(classes, labels)


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
    """Weights, bias, mean image, classes, feature names (when fit on named columns) and
    hyperparameters (as JSON) in one ``.npz``, no pickle; written atomically."""
    arrays = {"W": model.W_, "b": model.b_, "mean": model.mean_}
    arrays["classes"] = _without_pickle(model.classes_)
    if hasattr(model, "feature_names_in_"):
        arrays["feature_names"] = _without_pickle(model.feature_names_in_)
    arrays["hyperparameters"] = np.array(json.dumps(model.get_params(), sort_keys=True))
    io.save_arrays(path, **arrays)


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
    if "feature_names" in arrays:  # files written before feature names were kept lack them
        model.feature_names_in_ = arrays["feature_names"].astype(object)
    return model


def _without_pickle(values: np.ndarray) -> np.ndarray:
    """``values`` as an array ``np.savez`` stores without pickle: an object array (labels or
    column names from pandas, all strings or all numbers: scikit-learn's validation refuses
    mixed ones) becomes the str or number array of the same values."""
    return np.asarray(values.tolist()) if values.dtype == object else values


def training_tables(model: LinearClassifier) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The curves of a fitted model as the tables DVC plots.

    Returns ``steps`` of shape (n_steps_, 2), columns step, loss (one row per SGD step), and
    ``epochs`` of shape (n_epochs_, 3), columns epoch, train_accuracy, val_accuracy (one row
    per epoch, counted from 0 like ``best_epoch_`` and the MLflow steps; val_accuracy empty
    (NaN) when the model was fit without val).
    """
    check_is_fitted(model)
    losses = model.loss_history_
    steps = pd.DataFrame({"step": np.arange(len(losses)), "loss": losses})
    train_acc, val_acc = model.train_accuracy_history_, model.val_accuracy_history_
    if len(val_acc) != len(train_acc):
        val_acc = np.full(len(train_acc), np.nan)
    epochs = pd.DataFrame(
        {"epoch": np.arange(len(train_acc)), "train_accuracy": train_acc, "val_accuracy": val_acc}
    )
    return steps, epochs


def epoch_message(
    epoch: int, epochs: int, step_losses: np.ndarray, train_acc: float, val_acc: float | None
) -> str:
    """One progress line for ``on_epoch_end``: ``epoch 3/20: loss 4.8123, train accuracy
    0.3512, val accuracy 0.3390``. epoch counts from 0 (shown from 1); epochs : the most
    epochs (training may stop earlier); step_losses : (n_steps,) the epoch's step losses, shown
    as their mean."""
    loss = float(np.mean(step_losses)) if len(step_losses) else math.nan
    line = f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}, train accuracy {train_acc:.4f}"
    return line if val_acc is None else f"{line}, val accuracy {val_acc:.4f}"
