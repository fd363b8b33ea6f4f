"""One library function per pipeline stage: arrays and hyperparameters in, results out.

The stage scripts in ``stages/`` read params, load inputs, call one of these, write outputs and
log to MLflow. Nothing here touches MLflow or params.yaml; randomness comes from explicit seeds.
"""

from __future__ import annotations

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


def linear_search_trials(
    base: Mapping[str, Any], method: str, settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The candidates of ``svm_tune``: ``LinearClassifier`` keyword arguments over ``base``.

    method : "grid" (settings: learning_rates, regs, batch_sizes) or "random" (settings:
    n_trials, learning_rate_range, reg_range, batch_sizes, seed; see
    :func:`cifarlab.search.random_trials`).
    """
    from cifarlab import search

    if method == "grid":
        return search.grid_trials(
            base,
            learning_rates=settings["learning_rates"],
            regs=settings["regs"],
            batch_sizes=settings["batch_sizes"],
        )
    if method == "random":
        return search.random_trials(
            base,
            n_trials=settings["n_trials"],
            learning_rate_range=settings["learning_rate_range"],
            reg_range=settings["reg_range"],
            batch_sizes=settings["batch_sizes"],
            rng=np.random.default_rng(settings["seed"]),
        )
    raise ConfigError(f"svm_tune.method must be 'grid' or 'random', got {method!r}")


def linear_search(
    train: Split,
    val: Split,
    trials: Sequence[Mapping[str, Any]],
    *,
    n_jobs: int,
    on_trial: Callable[[Any], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit every trial on train, score it on val (``n_jobs`` processes, one BLAS thread each).

    trials : dicts of ``LinearClassifier`` keyword arguments (see :func:`linear_search_trials`).
    on_trial(result) is called with each ``cifarlab.search.TrialResult`` as it completes (for
    tracking); a diverged trial raises ``TrainingDiverged`` after it has been reported.
    Returns one row per trial (in trial order) and the best one: the highest val accuracy,
    ties to the earlier trial.
    """
    from cifarlab.search import SEARCHED, run_trials

    results = run_trials(trials, train.X, train.y, val.X, val.y, n_jobs=n_jobs, on_trial=on_trial)
    rows = [
        {
            "trial": r.index,
            **{key: r.hyperparameters[key] for key in SEARCHED},
            "train_accuracy": r.train_accuracy,
            "val_accuracy": r.val_accuracy,
            "best_epoch": r.best_epoch,
            "epochs_run": len(r.val_accuracy_history),
            "final_loss": float(r.loss_history[-1]),
        }
        for r in results
    ]
    best = rows[int(np.argmax([row["val_accuracy"] for row in rows]))]
    return pd.DataFrame(rows), dict(best)


def train_linear(
    train: Split,
    val: Split,
    hyperparameters: Mapping[str, Any],
    on_epoch_end: Callable[..., Any] | None = None,
) -> tuple[LinearClassifier, dict[str, Any]]:
    """The final linear model: fit on train, val accuracy tracked every epoch (and used for
    early stopping when ``patience`` is set); ``on_epoch_end`` as in ``LinearClassifier.fit``.

    Computes with one BLAS thread, like the search trials, so it reproduces the chosen trial
    bit for bit (OpenBLAS results differ in the last bits between thread counts).
    Returns the model and its summary: the searched hyperparameters, the loss, the epoch kept,
    the epochs run, and the accuracy of the kept weights on the whole training split and on val.
    """
    from cifarlab.search import single_blas_thread

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
