"""Confusion matrix, per-class accuracy and example selection of a test evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from cifarlab.errors import ConfigError
from cifarlab.evaluation.metrics import (
    evaluate_predictions,
    first_per_class,
    per_class_accuracy,
)

NAMES = ["airplane", "automobile", "bird", "cat", "deer"]


def reference_confusion(y_true, y_pred, n_classes):
    """The slow, obvious way: one count per (true, predicted) pair."""
    counts = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(y_true, y_pred, strict=True):
        counts[int(t)][int(p)] += 1
    return np.array(counts)


def reference_per_class(y_true, y_pred, n_classes):
    rows = []
    for c in range(n_classes):
        mine = [p for t, p in zip(y_true, y_pred, strict=True) if t == c]
        hits = sum(1 for p in mine if p == c)
        rows.append((hits / len(mine) if mine else float("nan"), len(mine)))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_and_per_class_accuracy_agree_with_a_loop(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y_true = rng.integers(0, 4, n).astype(np.uint8)  # class 4 has no test image
    # Mostly right, the rest anything (class 4 gets predicted now and then).
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 5, n)).astype(np.uint8)
    evaluation = evaluate_predictions(y_true, y_pred, NAMES)

    np.testing.assert_array_equal(evaluation.confusion, reference_confusion(y_true, y_pred, 5))
    assert evaluation.confusion.dtype == np.int64
    assert evaluation.accuracy == accuracy_score(y_true, y_pred)

    table = evaluation.per_class()
    assert list(table.columns) == ["class", "accuracy", "n"]
    assert table["class"].tolist() == NAMES
    expected = reference_per_class(y_true, y_pred, 5)
    np.testing.assert_allclose(table["accuracy"], [a for a, _ in expected])  # NaN == NaN
    assert table["n"].tolist() == [m for _, m in expected]
    assert np.isnan(table["accuracy"].iloc[4]) and table["n"].iloc[4] == 0


def test_predictions_are_class_names_in_test_order():
    evaluation = evaluate_predictions([0, 2, 1, 4], [0, 1, 1, 3], NAMES)
    expected = pd.DataFrame(
        {"actual": ["airplane", "bird", "automobile", "deer"],
         "predicted": ["airplane", "automobile", "automobile", "cat"]}
    )  # fmt: skip
    pd.testing.assert_frame_equal(evaluation.predictions(), expected)
    assert evaluation.predictions().to_csv(index=False).splitlines()[:2] == [
        "actual,predicted",
        "airplane,airplane",
    ]


def test_metrics_name_every_class_that_has_test_images():
    evaluation = evaluate_predictions([0, 0, 1, 1], [0, 1, 1, 1], NAMES)
    assert evaluation.metrics() == {
        "test_accuracy": 0.75,
        "test_accuracy.airplane": 0.5,
        "test_accuracy.automobile": 1.0,
    }
    assert all(
        type(v) is float or isinstance(v, np.floating) for v in evaluation.metrics().values()
    )


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1, 2], [0, 1], r"y_pred has 2 labels but y_true has 3: one prediction per test image"),
        ([0, 1, 5], [0, 1, 2], r"y_true must hold labels in \[0, 4\], got values in \[0, 5\]"),
        ([0, 1, 2], [0, 9, 2], r"y_pred must hold labels in \[0, 4\], got values in \[0, 9\]"),
        ([0, -1, 2], [0, 1, 2], r"y_true must hold labels >= 0, got -1"),
        ([0.0, 1.0], [0, 1], r"y_true must hold integer class labels, got dtype float64"),
        ([[0, 1]], [0, 1], r"y_true must be 1-D \(n_samples,\), got shape \(1, 2\)"),
        (np.array([], np.int64), np.array([], np.int64), r"y_true is empty"),
    ],
)
def test_bad_labels_are_one_clear_error(y_true, y_pred, message):
    with pytest.raises(ConfigError, match=message) as info:
        evaluate_predictions(y_true, y_pred, NAMES)
    assert "\n" not in str(info.value)


def test_no_class_names_is_an_error():
    with pytest.raises(ConfigError, match="class_names must name at least one class"):
        evaluate_predictions([0], [0], [])


def test_per_class_accuracy_refuses_a_confusion_of_the_wrong_shape():
    with pytest.raises(ConfigError, match=r"confusion must have shape \(5, 5\) .* got \(4, 4\)"):
        per_class_accuracy(np.zeros((4, 4)), NAMES)


def test_first_per_class_takes_the_first_in_order_and_pads():
    y = np.array([1, 0, 1, 1, 2, 1, 0])
    np.testing.assert_array_equal(first_per_class(y, 4, 2), [[1, 6], [0, 2], [4, -1], [-1, -1]])
    wrong = np.array([True, True, False, True, False, True, True])
    np.testing.assert_array_equal(
        first_per_class(y, 3, 3, where=wrong), [[1, 6, -1], [0, 3, 5], [-1, -1, -1]]
    )
