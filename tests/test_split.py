"""Stratified split and folds: exact totals, proportional classes, reproducibility, errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cifarlab.data.split import class_counts, make_splits, stratified_folds, stratified_split
from cifarlab.errors import ConfigError


def unbalanced_labels(seed: int = 0) -> np.ndarray:
    """(n,) labels with very different class sizes (1 … 97) in shuffled order."""
    sizes = [97, 50, 33, 20, 13, 7, 5, 3, 2, 1]
    y = np.repeat(np.arange(10), sizes)
    return np.random.default_rng(seed).permutation(y)


def reference_allocation(y: np.ndarray, n_val: int) -> dict[int, int]:
    """Largest-remainder allocation, slowly and exactly with fractions; ties to the lower label."""
    classes, counts = np.unique(y, return_counts=True)
    quotas = {
        int(c): Fraction(n_val * int(k), y.size) for c, k in zip(classes, counts, strict=True)
    }
    alloc = {c: int(q) for c, q in quotas.items()}  # floor (quotas are non-negative)
    short = n_val - sum(alloc.values())
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - int(quotas[c])), c))[:short]:
        alloc[c] += 1
    return alloc


def val_per_class(y: np.ndarray, val_idx: np.ndarray) -> dict[int, int]:
    labels, counts = np.unique(y[val_idx], return_counts=True)
    per_class = {int(c): 0 for c in np.unique(y)}
    per_class.update({int(c): int(k) for c, k in zip(labels, counts, strict=True)})
    return per_class


@pytest.mark.parametrize("val_size", [1, 2, 9, 10, 11, 57, 100, 230])
def test_split_is_exact_proportional_and_a_partition(val_size: int) -> None:
    y = unbalanced_labels()
    train, val = stratified_split(y, val_size, np.random.default_rng(0))

    assert val.size == val_size and train.size == y.size - val_size
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(y.size))

    per_class = val_per_class(y, val)
    assert per_class == reference_allocation(y, val_size)
    for c, k in per_class.items():  # each class within 1 of its exact share
        assert abs(k - val_size * np.sum(y == c) / y.size) < 1


def test_fractional_val_size() -> None:
    y = np.repeat(np.arange(10), 100)
    train, val = stratified_split(y, 0.1, np.random.default_rng(0))
    assert val.size == 100 and train.size == 900
    assert set(val_per_class(y, val).values()) == {10}
    # Rounded to the nearest count: 0.25 * 231 = 57.75 → 58.
    _, val = stratified_split(unbalanced_labels(), 0.25, np.random.default_rng(0))
    assert val.size == 58
    assert val_per_class(unbalanced_labels(), val) == reference_allocation(unbalanced_labels(), 58)


def test_numpy_scalars_accepted() -> None:
    y = np.repeat(np.arange(3), 10)
    assert stratified_split(y, np.int64(6), np.random.default_rng(0))[1].size == 6
    assert stratified_split(y, np.float32(0.5), np.random.default_rng(0))[1].size == 15


def test_split_is_reproducible_and_seed_dependent() -> None:
    y = unbalanced_labels()
    a = stratified_split(y, 40, np.random.default_rng(7))
    b = stratified_split(y, 40, np.random.default_rng(7))
    c = stratified_split(y, 40, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert val_per_class(y, a[1]) == val_per_class(y, c[1])  # same allocation, other members


def test_split_label_dtype_and_values_do_not_matter() -> None:
    y = unbalanced_labels()
    a = stratified_split(y.astype(np.uint8), 40, np.random.default_rng(1))
    b = stratified_split(y.astype(np.int64) * 10 + 3, 40, np.random.default_rng(1))
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize(
    "val_size", [0, -1, 231, 1000, 0.0, 1.0, -0.5, 1.5, float("nan"), 0.001, 0.999]
)
def test_split_rejects_sizes_leaving_a_side_empty(val_size: float) -> None:
    with pytest.raises(ConfigError, match="val_size"):
        stratified_split(unbalanced_labels(), val_size, np.random.default_rng(0))


@pytest.mark.parametrize("val_size", [True, False, "10", None, [10], np.bool_(True)])
def test_split_rejects_bad_types(val_size: object) -> None:
    with pytest.raises(ConfigError, match="val_size"):
        stratified_split(unbalanced_labels(), val_size, np.random.default_rng(0))  # type: ignore[arg-type]


def test_split_rejects_bad_labels_and_rng() -> None:
    with pytest.raises(ConfigError):
        stratified_split(np.zeros((4, 2), dtype=int), 1, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        stratified_split(np.array([0.5, 1.0, 2.0]), 1, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        stratified_split(np.array([], dtype=int), 1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="Generator"):
        stratified_split(np.arange(4), 1, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_folds", [2, 3, 5, 7, 231])
def test_folds_are_balanced(n_folds: int) -> None:
    y = unbalanced_labels()
    folds = stratified_folds(y, n_folds, np.random.default_rng(0))
    assert folds.dtype == np.int64 and folds.shape == y.shape
    sizes = np.bincount(folds, minlength=n_folds)
    assert sizes.size == n_folds and sizes.sum() == y.size
    assert sizes.max() - sizes.min() <= 1
    for c in np.unique(y):  # every class spread as evenly as possible
        per_fold = np.bincount(folds[y == c], minlength=n_folds)
        assert per_fold.max() - per_fold.min() <= 1


def test_folds_are_reproducible_and_shuffled() -> None:
    y = np.repeat(np.arange(4), 50)
    a = stratified_folds(y, 5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, stratified_folds(y, 5, np.random.default_rng(3)))
    assert not np.array_equal(a, stratified_folds(y, 5, np.random.default_rng(4)))
    # Not dealt in index order: within a class the fold ids are not a plain cycle.
    assert not np.array_equal(a[y == 0], np.arange(50) % 5)


@pytest.mark.parametrize("n_folds", [0, 1, -2, 11, True, 2.0, "5"])
def test_folds_reject_bad_counts(n_folds: object) -> None:
    with pytest.raises(ConfigError, match="n_folds"):
        stratified_folds(np.arange(10) % 3, n_folds, np.random.default_rng(0))  # type: ignore[arg-type]


def test_class_counts() -> None:
    counts = class_counts(np.array([0, 2, 2, 9, 2], dtype=np.uint8), 10)
    assert counts.dtype == np.int64
    assert counts.tolist() == [1, 0, 3, 0, 0, 0, 0, 0, 0, 1]
    assert class_counts(np.array([], dtype=np.uint8), 3).tolist() == [0, 0, 0]
    with pytest.raises(ConfigError, match="labels"):
        class_counts(np.array([0, 10]), 10)
    with pytest.raises(ConfigError, match="labels"):
        class_counts(np.array([-1, 0]), 10)
    with pytest.raises(ConfigError, match="n_classes"):
        class_counts(np.array([0]), 0)


def test_make_splits_keeps_test_and_counts_classes() -> None:
    from types import SimpleNamespace

    y = np.repeat(np.arange(3, dtype=np.uint8), 10)
    X = np.arange(30 * 4, dtype=np.uint8).reshape(30, 4)
    test = (X[:6], y[:6])
    archive = SimpleNamespace(train=(X, y), test=test, class_names=["a", "b", "c"])
    splits, counts = make_splits(archive, 6, seed=0)
    assert [len(splits[s].y) for s in ("train", "val", "test")] == [24, 6, 6]
    assert splits["test"].X is test[0]
    # Train and val partition the training batches: every row exactly once.
    rows = np.concatenate([splits["train"].X[:, 0], splits["val"].X[:, 0]])
    assert sorted(rows.tolist()) == X[:, 0].tolist()
    assert counts.index.tolist() == ["a", "b", "c"] and list(counts) == ["train", "val", "test"]
    assert counts["val"].tolist() == [2, 2, 2] and counts["train"].sum() == 24
