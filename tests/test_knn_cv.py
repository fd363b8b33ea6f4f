"""cifarlab.knn.cv: cross-validation equals separate fits, the choice and its tie rules, the
stage's subsample and folds, and one clear error per bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from knn_reference import clustered

from cifarlab.data.split import stratified_folds, stratified_split
from cifarlab.errors import ConfigError
from cifarlab.knn import cv
from cifarlab.knn.estimator import KNearestNeighbor


def test_cross_validate_reuse_equals_separate_fits():
    rng = np.random.default_rng(8)
    X, y = clustered(rng, 150, 16, 4)
    fold_ids = np.arange(150) % 3
    ks = [5, 1, 3, 8]
    table = cv.cross_validate(X, y, fold_ids, ks, ["l2", "l1"])
    assert list(table.columns) == ["distance", "k", "fold", "accuracy"]
    expected = []
    for distance in ["l2", "l1"]:
        for k in sorted(ks):
            for fold in range(3):
                train, test = fold_ids != fold, fold_ids == fold
                model = KNearestNeighbor(k=k, distance=distance).fit(X[train], y[train])
                expected.append((distance, k, fold, model.score(X[test], y[test])))
    assert list(table.itertuples(index=False, name=None)) == expected
    assert table["k"].dtype == np.int64 and table["fold"].dtype == np.int64
    assert table["accuracy"].dtype == np.float64
    assert table["accuracy"].nunique() > 1  # the data discriminates between settings


def _table(rows):
    return pd.DataFrame(rows, columns=["distance", "k", "fold", "accuracy"])


def test_select_best_tie_rules():
    # Highest mean wins, even with a larger k and a later distance; std is over folds, ddof=0.
    best = cv.select_best(
        _table([("l1", 1, 0, 0.5), ("l1", 1, 1, 0.7), ("l2", 5, 0, 0.8), ("l2", 5, 1, 0.6)])
    )
    assert best == {
        "distance": "l2",
        "k": 5,
        "mean_accuracy": pytest.approx(0.7),
        "std_accuracy": pytest.approx(0.1),
    }
    best = cv.select_best(_table([("l2", 3, 0, 0.5), ("l1", 1, 0, 0.4), ("l1", 5, 0, 0.6)]))
    assert (best["distance"], best["k"], best["mean_accuracy"]) == ("l1", 5, 0.6)
    # Equal means: the smaller k, then the distance first in DISTANCES.
    rows = [("l2", 3, 0, 0.5), ("l2", 3, 1, 0.7), ("l1", 7, 0, 0.7), ("l1", 7, 1, 0.5)]
    assert cv.select_best(_table(rows))["k"] == 3
    rows = [("l2", 3, 0, 0.1 + 0.2), ("l2", 3, 1, 0.3), ("l1", 3, 0, 0.3), ("l1", 3, 1, 0.3)]
    best = cv.select_best(_table(rows))
    assert (best["distance"], best["k"]) == ("l1", 3)
    assert best["std_accuracy"] == 0.0 and isinstance(best["k"], int)


def test_select_best_on_cross_validate_output():
    rng = np.random.default_rng(9)
    X, y = clustered(rng, 90, 30, 3)
    table = cv.cross_validate(X, y, np.arange(90) % 3, [1, 3], ["l1", "l2"])
    best = cv.select_best(table)
    means = table.groupby(["distance", "k"])["accuracy"].mean()
    assert best["mean_accuracy"] == pytest.approx(means.max())
    assert set(best) == {"distance", "k", "mean_accuracy", "std_accuracy"}


# --- the stage's cross-validation --------------------------------------------------------------

_SETTINGS = {"k_choices": [1, 3], "distances": ["l1", "l2"], "n_folds": 3, "seed": 4}


def _spy_on_cross_validate(monkeypatch):
    """Record the arrays cross_validation hands to cross_validate."""
    seen = {}
    real = cv.cross_validate

    def spy(X, y, fold_ids, *args, **kwargs):
        seen.update(X=X, y=y, fold_ids=fold_ids)
        return real(X, y, fold_ids, *args, **kwargs)

    monkeypatch.setattr(cv, "cross_validate", spy)
    return seen


def test_cross_validation_subsamples_stratified_then_folds(monkeypatch):
    rng = np.random.default_rng(15)
    X, y = clustered(rng, 200, 10, 4)
    X[:, 0] = np.arange(200)  # identifies each image's row in X
    seen = _spy_on_cross_validate(monkeypatch)
    settings = {**_SETTINGS, "train_size": 60, "memory_budget_bytes": 1 << 20}
    table, choice = cv.cross_validation(X, y, **settings, progress=False)

    # The subsample: 60 distinct images, with their labels, each class in proportion.
    rows = seen["X"][:, 0].astype(int)
    assert len(rows) == 60 == len(set(rows))
    np.testing.assert_array_equal(seen["X"], X[rows])
    np.testing.assert_array_equal(seen["y"], y[rows])
    share = np.bincount(y, minlength=4) * 60 / 200
    assert np.all(np.abs(np.bincount(seen["y"], minlength=4) - share) < 1)
    # Stratified folds of it, sizes within one; all from the one generator seeded with seed.
    assert np.ptp(np.bincount(seen["fold_ids"])) <= 1
    gen = np.random.default_rng(settings["seed"])
    _, keep = stratified_split(y, 60, gen)
    np.testing.assert_array_equal(np.sort(rows), keep)
    np.testing.assert_array_equal(seen["fold_ids"], stratified_folds(y[keep], 3, gen))

    # The table of exactly those folds, and its best row.
    expected = cv.cross_validate(X[keep], y[keep], seen["fold_ids"], [1, 3], ["l1", "l2"])
    pd.testing.assert_frame_equal(table, expected)
    assert choice == cv.select_best(expected)


@pytest.mark.parametrize("train_size", [None, 90, 500])
def test_cross_validation_uses_every_image_unless_train_size_is_smaller(monkeypatch, train_size):
    rng = np.random.default_rng(16)
    X, y = clustered(rng, 90, 8, 3)
    seen = _spy_on_cross_validate(monkeypatch)
    settings = {**_SETTINGS, "train_size": train_size, "memory_budget_bytes": 1 << 20}
    table, _ = cv.cross_validation(X, y, **settings, progress=False)
    np.testing.assert_array_equal(seen["X"], X)
    assert len(table) == 2 * 2 * 3


def test_cross_validation_rejects_k_above_the_fold_references():
    # 30 images in 3 folds: the largest fold leaves 20 references.
    rng = np.random.default_rng(17)
    X, y = clustered(rng, 90, 8, 3)
    settings = {**_SETTINGS, "k_choices": [1, 21], "train_size": 30, "memory_budget_bytes": 1 << 20}
    with pytest.raises(ConfigError) as info:
        cv.cross_validation(X, y, **settings, progress=False)
    assert str(info.value) == (
        "knn.k_choices: k=21 exceeds the 20 reference images of the largest fold; "
        "lower k or raise knn.train_size"
    )
    settings["k_choices"] = [1, 20]
    assert cv.cross_validation(X, y, **settings, progress=False)[0]["k"].max() == 20


# --- invalid input -----------------------------------------------------------------------------

_X = np.zeros((6, 4), np.uint8)
_Y = np.array([0, 1, 0, 1, 0, 1])
_F = np.array([0, 0, 1, 1, 2, 2])
_LIST = "must be a non-empty list of distinct values"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"X": _X.astype(np.int16)}, "X must have dtype uint8"),
        ({"y": _Y[:5]}, "y has 5 labels but X has 6 samples"),
        ({"y": _Y.astype(float)}, "y must hold integer class labels"),
        ({"y": _Y - 1}, "y must hold labels >= 0"),
        ({"fold_ids": np.array([0, 0, 2, 2, 2, 2])}, "fold 1 is empty"),
        ({"fold_ids": _F.reshape(2, 3)}, "fold_ids must be 1-D"),
        ({"k_choices": [5]}, "k=5 exceeds the 4 reference images"),
        ({"k_choices": []}, f"k_choices {_LIST}, each an integer >= 1, got []"),
        ({"k_choices": [0, 1]}, f"k_choices {_LIST}, each an integer >= 1, got [0, 1]"),
        ({"k_choices": [1, 1]}, f"k_choices {_LIST}, each an integer >= 1, got [1, 1]"),
        ({"k_choices": 1}, f"k_choices {_LIST}"),
        ({"distances": ["l2", "hamming"]}, f"distances {_LIST}, each one of ['l1', 'l2']"),
        ({"distances": []}, f"distances {_LIST}"),
        ({"distances": "l2"}, f"distances {_LIST}"),
        ({"memory_budget_bytes": 0}, "memory_budget_bytes must be an integer >= 1, got 0"),
    ],
)
def test_cross_validate_rejects_bad_input(kwargs, message):
    args = {"X": _X, "y": _Y, "fold_ids": _F, "k_choices": [1], "distances": ["l2"], **kwargs}
    with pytest.raises(ConfigError) as info:
        cv.cross_validate(**args)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"distance": ["l1"], "k": [1]}), "cv_table must be a DataFrame with columns"),
        ([("l1", 1, 0, 0.5)], "cv_table must be a DataFrame"),
        (_table([]), "cv_table is empty"),
        (_table([("l3", 1, 0, 0.5)]), "cv_table distance must be one of ['l1', 'l2'], got 'l3'"),
        (
            pd.DataFrame({"metric": ["l1"], "k": [1], "fold": [0], "accuracy": [0.5]}),
            "cv_table must be a DataFrame with columns ('distance', 'k', 'fold', 'accuracy')",
        ),
    ],
)
def test_select_best_rejects_bad_input(table, message):
    with pytest.raises(ConfigError) as info:
        cv.select_best(table)
    assert message in str(info.value)
