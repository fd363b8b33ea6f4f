"""Choosing k and the distance of k-NN by k-fold cross-validation (the ``knn_cv`` stage)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cifarlab.checks import check_images, check_labels
from cifarlab.data.split import stratified_folds, stratified_split
from cifarlab.errors import ConfigError
from cifarlab.knn.neighbors import _kneighbors, _vote
from cifarlab.params import DISTANCES, KNN, SECTIONS, check_values

__all__ = ["COLUMNS", "cross_validate", "cross_validation", "cv_summary", "select_best"]

#: The columns of a cross-validation table, one row per (distance, k, fold).
COLUMNS = ("distance", "k", "fold", "accuracy")

# cross_validate's settings: the lists as params.yaml declares them, the rest as the estimator.
_SETTINGS = {
    "k_choices": SECTIONS["knn"]["k_choices"],
    "distances": SECTIONS["knn"]["distances"],
    "memory_budget_bytes": KNN["memory_budget_bytes"],
    "progress": KNN["progress"],
}


def cross_validation(
    X: np.ndarray,
    y: np.ndarray,
    *,
    k_choices: Sequence[int],
    distances: Sequence[str],
    n_folds: int,
    train_size: int | None,
    seed: int,
    memory_budget_bytes: int,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """k-fold cross-validation of k-NN on (a stratified subsample of) the training split.

    X : uint8 (n_samples, n_features); y : (n_samples,) integer labels.
    k_choices, distances, n_folds (``folds``), train_size, seed : the ``knn`` section of
    ``params.yaml`` as :func:`cifarlab.params.load_params` checked it. train_size : images
    drawn, stratified, from X (all of them when None or >= n_samples); the folds are
    stratified too, both drawn from one generator seeded with ``seed``.

    Returns the table of :func:`cross_validate` and its :func:`select_best` choice.
    """
    rng = np.random.default_rng(seed)
    if train_size is not None and train_size < len(y):
        _, keep = stratified_split(y, train_size, rng)
        X, y = X[keep], y[keep]
    # Checked before the folds are drawn, in the words of params.yaml: folds differ in size by
    # at most one, so the largest has ceil(n / n_folds) images.
    largest_fold = -(-len(y) // n_folds)
    if max(k_choices) > len(y) - largest_fold:
        raise ConfigError(
            f"knn.k_choices: k={max(k_choices)} exceeds the {len(y) - largest_fold} "
            f"reference images of the largest fold; lower k or raise knn.train_size"
        )
    fold_ids = stratified_folds(y, n_folds, rng)
    table = cross_validate(
        X,
        y,
        fold_ids,
        k_choices,
        distances,
        memory_budget_bytes=memory_budget_bytes,
        progress=progress,
    )
    return table, select_best(table)


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    fold_ids: np.ndarray,
    k_choices: Sequence[int],
    distances: Sequence[str],
    *,
    memory_budget_bytes: int = 1 << 30,
    progress: bool = False,
) -> pd.DataFrame:
    """k-fold cross-validation accuracy of k-NN for every (distance, k).

    X : ndarray of shape (n_samples, n_features), uint8
    y : ndarray of shape (n_samples,), integer labels 0..n_classes-1
    fold_ids : ndarray of shape (n_samples,), integers 0..n_folds-1, every fold non-empty
    k_choices : list of distinct k values; distances : list of distinct names from
        :data:`cifarlab.params.DISTANCES` (both as ``params.yaml`` declares them)

    For each fold f the queries are X[fold_ids == f] and the references the rest. Neighbours
    are computed once per (fold, distance) with k = max(k_choices); every k is scored from that
    one sorted list (the first k columns are exactly the k nearest).

    Returns a pandas DataFrame with the columns :data:`COLUMNS`: distance (str), k (int),
    fold (int), accuracy (float); one row per (distance, k, fold), ordered distances (as
    given) x sorted k x fold.
    """
    values = {
        "k_choices": k_choices,
        "distances": distances,
        "memory_budget_bytes": memory_budget_bytes,
        "progress": progress,
    }
    settings = check_values(_SETTINGS, values)
    X = check_images("X", X)
    n = X.shape[0]
    y = check_labels("y", y, n)
    fold_ids = check_labels("fold_ids", fold_ids, n)
    n_folds = int(fold_ids.max()) + 1
    fold_sizes = np.bincount(fold_ids, minlength=n_folds)
    if (fold_sizes == 0).any():
        raise ConfigError(
            f"fold_ids must use every value 0..{n_folds - 1}; fold "
            f"{int(np.flatnonzero(fold_sizes == 0)[0])} is empty"
        )
    ks = sorted(settings["k_choices"])
    k_max = ks[-1]
    n_ref_min = n - int(fold_sizes.max())
    if k_max > n_ref_min:
        raise ConfigError(
            f"k_choices: k={k_max} exceeds the {n_ref_min} reference images of the largest fold"
        )
    n_classes = int(y.max()) + 1

    acc: dict[tuple[str, int, int], float] = {}
    for fold in range(n_folds):
        is_query = fold_ids == fold
        # Boolean indexing copies: both sides are C-contiguous, as the kernels need.
        Xq, yq = X[is_query], y[is_query]
        Xr, yr = X[~is_query], y[~is_query]
        for distance in settings["distances"]:
            idx, _ = _kneighbors(
                Xq,
                Xr,
                k_max,
                distance,
                memory_budget_bytes=settings["memory_budget_bytes"],
                progress=settings["progress"],
                desc=f"fold {fold + 1}/{n_folds} {distance}",
            )
            labels = yr[idx]
            for k in ks:
                pred = _vote(labels[:, :k], n_classes)
                acc[distance, k, fold] = float(np.mean(pred == yq))
    rows = [
        (distance, k, fold, acc[distance, k, fold])
        for distance in settings["distances"]
        for k in ks
        for fold in range(n_folds)
    ]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.astype({"k": np.int64, "fold": np.int64, "accuracy": np.float64})


def select_best(cv_table: pd.DataFrame) -> dict[str, Any]:
    """The best (distance, k) of a :func:`cross_validate` table.

    cv_table : DataFrame with the columns :data:`COLUMNS` (distance, k, fold, accuracy).

    Highest mean accuracy over folds (means within 1e-12 count as equal, so the fold order
    of a float sum cannot decide); ties go to the smaller k, then to the distance earlier in
    DISTANCES. Returns dict(distance=str, k=int, mean_accuracy=float, std_accuracy=float), the
    standard deviation over folds being the population one (ddof=0; 0.0 for one fold).
    """
    columns = getattr(cv_table, "columns", None)
    if columns is None or any(c not in columns for c in COLUMNS):
        raise ConfigError(f"cv_table must be a DataFrame with columns {COLUMNS}")
    if len(cv_table) == 0:
        raise ConfigError("cv_table is empty")
    stats = []
    for (distance, k), group in cv_table.groupby(["distance", "k"], sort=False):
        KNN["distance"].check("cv_table distance", distance)
        values = group["accuracy"].to_numpy(dtype=np.float64)
        stats.append((str(distance), int(k), float(values.mean()), float(values.std())))
    top = max(s[2] for s in stats)
    tied = [s for s in stats if s[2] >= top - 1e-12]
    distance, k, mean, std = min(tied, key=lambda s: (s[1], DISTANCES.index(s[0])))
    return {"distance": distance, "k": k, "mean_accuracy": mean, "std_accuracy": std}


def cv_summary(cv_table: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over folds, one row per k and one column per distance.

    cv_table : DataFrame with the columns :data:`COLUMNS` (one row per distance, k and fold).
    Returns a DataFrame of shape (n_k, 1 + len(DISTANCES)): ``k`` (ascending), then one float
    column per known distance (``l1``, ``l2``), NaN (an empty CSV cell) for a distance not
    cross-validated: the wide layout DVC draws as one line per distance
    (``reports/knn_cv_summary.csv``), whose plot definition names both columns.
    """
    columns = getattr(cv_table, "columns", None)
    if columns is None or any(c not in columns for c in COLUMNS):
        raise ConfigError(f"cv_table must be a DataFrame with columns {COLUMNS}")
    for distance in dict.fromkeys(cv_table["distance"]):
        KNN["distance"].check("cv_table distance", distance)
    means = cv_table.pivot_table(index="k", columns="distance", values="accuracy", aggfunc="mean")
    means = means.reindex(columns=list(DISTANCES)).sort_index()
    means.columns.name = None
    return means.reset_index()
