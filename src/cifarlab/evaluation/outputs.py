"""The files of a test evaluation, written through ``cifarlab.io`` (all or none per stage)."""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from cifarlab import io
from cifarlab.evaluation.metrics import Evaluation, first_per_class
from cifarlab.evaluation.plots import confusion_figure, misclassified_figure
from cifarlab.plots import save_figure

MISCLASSIFIED_PER_CLASS = 8  # images per row of the misclassified grid


@dataclass(frozen=True)
class EvaluationFiles:
    """Where one model's evaluation goes: predictions CSV (actual,predicted), per-class CSV
    (class,accuracy,n), confusion-matrix PNG, misclassified-images PNG."""

    predictions: str
    per_class: str
    confusion: str
    misclassified: str

    def paths(self) -> list[str]:
        return list(astuple(self))


def write_evaluation(
    files: EvaluationFiles, evaluation: Evaluation, X_test: np.ndarray, model: str
) -> None:
    """Write every file of ``files`` for ``evaluation`` of the test images X_test, uint8
    (n_test, 3072) in the order of evaluation.y_true; ``model`` names the model in the figure
    titles (e.g. "k-NN (L1, k=5)"). The misclassified grid shows, for each true class, its
    first misclassified test images in test order (the same images at every run)."""
    title = f"{model}: {evaluation.accuracy:.1%} test accuracy"
    io.write_text(files.predictions, evaluation.predictions().to_csv(index=False))
    io.write_text(files.per_class, evaluation.per_class().to_csv(index=False))
    names = evaluation.class_names
    fig = confusion_figure(evaluation.confusion, names, f"{title}\nconfusion matrix")
    save_figure(fig, files.confusion)
    wrong = evaluation.y_true != evaluation.y_pred
    picked = first_per_class(evaluation.y_true, len(names), MISCLASSIFIED_PER_CLASS, where=wrong)
    fig = misclassified_figure(
        X_test,
        evaluation.y_pred,
        picked,
        names,
        f"{title}: misclassified test images\n(row: true class, caption: predicted class)",
    )
    save_figure(fig, files.misclassified)
