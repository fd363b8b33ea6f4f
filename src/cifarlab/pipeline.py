"""One library function per pipeline stage: arrays and hyperparameters in, results out.

The stage scripts in ``stages/`` read params, load inputs, call one of these, write outputs and
log to MLflow. Nothing here touches MLflow or params.yaml; randomness comes from explicit seeds.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cifarlab import io
from cifarlab.errors import ConfigError, DataError
from cifarlab.linear import LinearClassifier

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """X : uint8 (n_samples, 3072) raw pixels (R, G, B planes); y : uint8 (n_samples,) labels."""

    X: np.ndarray
    y: np.ndarray


def save_split(path: str | Path, split: Split) -> None:
    io.save_arrays(path, X=split.X, y=split.y)


def load_split(path: str | Path) -> Split:
    try:
        arrays = io.load_arrays(path)
    except FileNotFoundError:
        raise DataError(f"{path} not found: run the earlier stages first (dvc repro)") from None
    return Split(arrays["X"], arrays["y"])


# --- prepare ---------------------------------------------------------------------------------


def make_splits(
    archive: Any, val_size: int | float, seed: int
) -> tuple[dict[str, Split], pd.DataFrame]:
    """Stratified train / val split of the five training batches; the official test batch as test.

    archive : a ``cifarlab.data.archive.Cifar10Archive``.
    Returns the three splits and a class-count table (one row per class, one column per split).
    """
    from cifarlab.data.split import class_counts, stratified_split

    X_all, y_all = archive.train
    train_idx, val_idx = stratified_split(y_all, val_size, np.random.default_rng(seed))
    splits = {
        "train": Split(X_all[train_idx], y_all[train_idx]),
        "val": Split(X_all[val_idx], y_all[val_idx]),
        "test": Split(*archive.test),
    }
    n_classes = len(archive.class_names)
    counts = pd.DataFrame(
        {name: class_counts(split.y, n_classes) for name, split in splits.items()},
        index=pd.Index(archive.class_names, name="class"),
    )
    return splits, counts


# --- knn_cv ----------------------------------------------------------------------------------


def knn_cross_validation(
    X: np.ndarray,
    y: np.ndarray,
    *,
    k_choices: Sequence[int],
    metrics: Sequence[str],
    n_folds: int,
    train_size: int | None,
    seed: int,
    memory_budget_bytes: int,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """k-fold cross-validation of k-NN on (a stratified subsample of) the training split.

    X : uint8 (n_samples, n_features); y : (n_samples,).
    Returns the per-fold table (metric, k, fold, accuracy) and the choice: highest mean accuracy,
    ties to the smaller k.
    """
    from cifarlab import knn
    from cifarlab.data.split import stratified_folds, stratified_split

    rng = np.random.default_rng(seed)
    if train_size is not None and train_size < len(y):
        _, keep = stratified_split(y, train_size, rng)
        X, y = X[keep], y[keep]
    largest_fold = -(-len(y) // n_folds)  # ceil: folds differ in size by at most one
    if max(k_choices) > len(y) - largest_fold:
        raise ConfigError(
            f"knn.k_choices: k={max(k_choices)} exceeds the {len(y) - largest_fold} "
            f"reference images of the largest fold; lower k or raise knn.train_size"
        )
    fold_ids = stratified_folds(y, n_folds, rng)
    table = knn.cross_validate(
        X,
        y,
        fold_ids,
        k_choices,
        metrics,
        memory_budget_bytes=memory_budget_bytes,
        progress=progress,
    )
    return table, knn.select_best(table)


def knn_test_accuracy(
    reference: Sequence[Split], test: Split, *, metric: str, k: int, memory_budget_bytes: int
) -> float:
    """Accuracy on ``test`` of k-NN over the concatenated ``reference`` splits."""
    from cifarlab.knn import KNearestNeighbor

    X = np.concatenate([s.X for s in reference])
    y = np.concatenate([s.y for s in reference])
    model = KNearestNeighbor(
        k=k, metric=metric, memory_budget_bytes=memory_budget_bytes, progress=True
    )
    return float(model.fit(X, y).score(test.X, test.y))


# --- svm_tune / svm_train ----------------------------------------------------------------------


def svm_grid_search(
    train: Split,
    val: Split,
    *,
    learning_rates: Sequence[float],
    regs: Sequence[float],
    base_params: Mapping[str, Any],
    on_trial: Callable[[dict[str, Any], LinearClassifier], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train one model per (learning rate, reg) on train, score each on val.

    base_params : the other LinearClassifier hyperparameters (loss, batch_size, epochs …).
    on_trial(hyperparameters, fitted_model) is called after each trial (for tracking).
    Returns the table of trials and the best one (highest val accuracy; ties to the earlier trial).
    """
    rows = []
    for learning_rate, reg in itertools.product(learning_rates, regs):
        hyper = {**base_params, "learning_rate": float(learning_rate), "reg": float(reg)}
        model = LinearClassifier(**hyper).fit(train.X, train.y, val.X, val.y)
        rows.append(
            {
                "learning_rate": float(learning_rate),
                "reg": float(reg),
                "train_accuracy": float(model.train_accuracy_history_[-1]),
                "val_accuracy": float(model.val_accuracy_history_[-1]),
                "final_loss": float(model.loss_history_[-1]),
            }
        )
        if on_trial is not None:
            on_trial(hyper, model)
    table = pd.DataFrame(rows)
    best = table.iloc[int(np.argmax(table["val_accuracy"].to_numpy()))].to_dict()
    return table, best


def train_svm(train: Split, val: Split, hyperparameters: Mapping[str, Any]) -> LinearClassifier:
    """The final linear model: fit on train, val accuracy tracked every epoch."""
    return LinearClassifier(**hyperparameters).fit(train.X, train.y, val.X, val.y)


def save_linear_model(path: str | Path, model: LinearClassifier) -> None:
    """Weights, bias, mean image and hyperparameters in one ``.npz`` (no pickle)."""
    io.save_arrays(
        path,
        W=model.W_,
        b=model.b_,
        mean=model.mean_,
        classes=model.classes_,
        hyperparameters=np.array(json.dumps(model.get_params(), sort_keys=True)),
    )


def load_linear_model(path: str | Path) -> LinearClassifier:
    try:
        arrays = io.load_arrays(path)
    except FileNotFoundError:
        raise DataError(f"{path} not found: run svm_train first (dvc repro)") from None
    model = LinearClassifier(**json.loads(str(arrays["hyperparameters"])))
    model.W_, model.b_, model.mean_, model.classes_ = (
        arrays["W"], arrays["b"], arrays["mean"], arrays["classes"],
    )
    model.n_features_in_ = model.W_.shape[0]
    return model
