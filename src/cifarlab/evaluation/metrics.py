"""Confusion matrix, per-class accuracy and the test images a figure shows, from labels alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from cifarlab.checks import check_labels
from cifarlab.errors import ConfigError


@dataclass(frozen=True)
class Evaluation:
    """What one model's predictions on the test split amount to.

    y_true, y_pred : int64 (n_test,) labels in [0, n_classes).
    confusion : int64 (n_classes, n_classes); row = true class, column = predicted class.
    class_names : (n_classes,) names, label i is class_names[i].
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray
    class_names: tuple[str, ...]

    @property
    def accuracy(self) -> float:
        """Share of test images whose predicted class is their true class."""
        return float(np.trace(self.confusion) / self.confusion.sum())

    def per_class(self) -> pd.DataFrame:
        """One row per class: class (name), accuracy (share of that class's test images
        predicted as it, i.e. its recall; NaN for a class with no test image), n (its images)."""
        return per_class_accuracy(self.confusion, self.class_names)

    def predictions(self) -> pd.DataFrame:
        """One row per test image, in test order: actual, predicted (class names), the long
        form DVC's ``confusion`` plot template counts."""
        names = np.asarray(self.class_names, dtype=object)
        return pd.DataFrame({"actual": names[self.y_true], "predicted": names[self.y_pred]})

    def metrics(self) -> dict[str, float]:
        """``test_accuracy`` and ``test_accuracy.<class>`` for every class with test images."""
        table = self.per_class().dropna(subset=["accuracy"])
        per_class = dict(zip("test_accuracy." + table["class"], table["accuracy"], strict=True))
        return {"test_accuracy": self.accuracy, **per_class}


def evaluate_predictions(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> Evaluation:
    """y_true, y_pred : (n_test,) integer labels in [0, len(class_names)); the model's
    predictions of the test images against their true labels."""
    n_classes = len(class_names)
    if n_classes == 0:
        raise ConfigError("class_names must name at least one class")
    y_true = check_labels("y_true", y_true, n_classes=n_classes).astype(np.int64)
    y_pred = check_labels("y_pred", y_pred, n_classes=n_classes).astype(np.int64)
    if len(y_pred) != len(y_true):
        raise ConfigError(
            f"y_pred has {len(y_pred)} labels but y_true has {len(y_true)}: one prediction per "
            "test image"
        )
    return Evaluation(
        y_true, y_pred, confusion_counts(y_true, y_pred, n_classes), tuple(class_names)
    )


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 (n_classes, n_classes): entry [i, j] counts images of class i predicted as j,
    every class a row and a column even when absent (checked labels in [0, n_classes))."""
    counts = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    return counts.astype(np.int64)


def per_class_accuracy(confusion: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """confusion : (n_classes, n_classes) counts, rows true classes. Returns one row per class
    with columns class, accuracy (diagonal / row sum, NaN for an empty row) and n (row sum)."""
    confusion = np.asarray(confusion)
    if confusion.shape != (len(class_names), len(class_names)):
        raise ConfigError(
            f"confusion must have shape ({len(class_names)}, {len(class_names)}) for "
            f"{len(class_names)} class names, got {confusion.shape}"
        )
    n = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # an absent class: NaN, not a warning
        accuracy = np.diag(confusion) / n
    return pd.DataFrame({"class": list(class_names), "accuracy": accuracy, "n": n})


def first_per_class(y: np.ndarray, n_classes: int, per_class: int, where: Any = None) -> np.ndarray:
    """Indices (n_classes, per_class), int64: row c holds the first ``per_class`` positions of
    ``y`` with label c (and ``where`` true, a (n,) bool mask), in order; -1 pads a class with
    fewer. Deterministic, so the example figures are the same at every run."""
    y = np.asarray(y)
    keep = np.ones(len(y), bool) if where is None else np.asarray(where, bool)
    picked = np.full((n_classes, per_class), -1, np.int64)
    for c in range(n_classes):
        found = np.flatnonzero((y == c) & keep)[:per_class]
        picked[c, : len(found)] = found
    return picked
