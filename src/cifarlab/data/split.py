"""Stratified splits and folds: pure functions of the labels and a caller-supplied rng."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

from cifarlab.checks import check_labels, check_rng
from cifarlab.data.prepared import Split
from cifarlab.errors import ConfigError

__all__ = ["class_counts", "make_splits", "stratified_folds", "stratified_split"]


def make_splits(
    archive: Any, val_size: int | float, seed: int
) -> tuple[dict[str, Split], pd.DataFrame]:
    """Stratified train / val split of the five training batches; the official test batch as test.

    archive : a ``cifarlab.data.archive.Cifar10Archive``.
    Returns the three splits (``train``, ``val``, ``test``) and a class-count table: one row per
    class name, one column per split.
    """
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


def stratified_split(
    y: np.ndarray, val_size: int | float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of ``y`` (n,) into ``(train_idx, val_idx)``, both sorted int64, disjoint,
    together covering ``0 … n-1``.

    ``val_size`` is a count (int ≥ 1) or a fraction of n (float in (0, 1), rounded to the
    nearest count). Each class contributes ``val_size * n_c / n`` indices to val, rounded by the
    largest-remainder method so the total is exactly the requested count (ties go to the lower
    class label); which indices of a class go to val is drawn by ``rng``.

    Raises ConfigError when ``val_size`` has a bad type or value or leaves train or val empty.
    """
    y = check_labels("y", y)
    check_rng(rng)
    n = y.size
    n_val = _val_count(val_size, n)

    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    # Exact integer arithmetic: quota_c = n_val * n_c / n = floor + remainder / n.
    scaled = counts.astype(np.int64) * n_val
    alloc, remainders = np.divmod(scaled, n)
    short = n_val - int(alloc.sum())
    # Stable sort on -remainder: equal remainders keep class order, a deterministic tie-break.
    # The top ``short`` remainders are all positive, so no class is asked for more than n_c.
    alloc[np.argsort(-remainders, kind="stable")[:short]] += 1

    order = np.argsort(inverse, kind="stable")  # indices grouped by class, ascending within
    starts = np.concatenate([[0], np.cumsum(counts)])
    val_parts = []
    for c in range(classes.size):
        members = order[starts[c] : starts[c + 1]]
        val_parts.append(rng.permutation(members)[: alloc[c]])
    is_val = np.zeros(n, dtype=bool)
    is_val[np.concatenate(val_parts)] = True
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)


def stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id (0 … n_folds-1) of every sample of ``y`` (n,): an int64 array (n,).

    Each class's indices, shuffled by ``rng``, are dealt round-robin into the folds; the next
    class starts at the fold after the one the previous class ended on, so overall fold sizes
    differ by at most 1 (and so do any one class's counts across folds).

    Raises ConfigError when ``n_folds`` is not an int with 2 ≤ n_folds ≤ n.
    """
    y = check_labels("y", y)
    check_rng(rng)
    if isinstance(n_folds, bool) or not isinstance(n_folds, numbers.Integral):
        raise ConfigError(f"n_folds must be an int, got {n_folds!r}")
    n_folds = int(n_folds)
    if not 2 <= n_folds <= y.size:
        raise ConfigError(f"n_folds must be between 2 and the {y.size} samples, got {n_folds}")

    fold_ids = np.empty(y.size, dtype=np.int64)
    start = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        fold_ids[members] = (start + np.arange(members.size)) % n_folds
        start = (start + members.size) % n_folds
    return fold_ids


def class_counts(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Number of samples of each label 0 … n_classes-1 in ``y`` (n,): int64 (n_classes,)."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise ConfigError(f"n_classes must be a positive int, got {n_classes!r}")
    y = check_labels("y", y, n_classes=n_classes, allow_empty=True)
    return np.bincount(y.astype(np.int64), minlength=n_classes).astype(np.int64)


def _val_count(val_size: object, n: int) -> int:
    """The number of validation samples ``val_size`` asks for out of ``n``, validated."""
    if isinstance(val_size, bool | np.bool_):
        raise ConfigError(f"val_size must be an int count or a float fraction, got {val_size!r}")
    if isinstance(val_size, numbers.Integral):
        count = int(val_size)
        if not 1 <= count <= n - 1:
            raise ConfigError(
                f"val_size={count} must be between 1 and {n - 1} so that neither train nor val "
                f"is empty ({n} samples)"
            )
        return count
    if isinstance(val_size, numbers.Real):
        frac = float(val_size)
        if not 0.0 < frac < 1.0:  # also rejects NaN
            raise ConfigError(f"a fractional val_size must lie in (0, 1), got {val_size!r}")
        count = math.floor(frac * n + 0.5)
        if not 1 <= count <= n - 1:
            raise ConfigError(
                f"val_size={frac} of {n} samples gives {count} for val, leaving "
                f"{'val' if count < 1 else 'train'} empty"
            )
        return count
    raise ConfigError(f"val_size must be an int count or a float fraction, got {val_size!r}")
