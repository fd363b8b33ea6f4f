"""knn_evaluate and svm_evaluate run as scripts in a project copy on tiny prepared data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cifarlab.data.prepared import Split, save_split
from cifarlab.linear.classifier import LinearClassifier, save_linear_model

pytestmark = pytest.mark.e2e

NAMES = [f"c{i}" for i in range(10)]
COMMON = [
    "predictions.csv",
    "per_class.csv",
    "plots/{m}_confusion.png",
    "plots/{m}_misclassified.png",
]


def outputs(model):
    files = [f"reports/{model}_test.json"]
    files += [f"reports/{name.format(m=model)}" if "{m}" in name else f"reports/{model}_{name}"
              for name in COMMON]  # fmt: skip
    return files + (["reports/plots/knn_neighbors.png"] if model == "knn" else [])


def prepared(project):
    """Tiny prepared splits (class c's pixels around 25 c, so both models learn something),
    knn_cv's choice and a trained linear model, as the earlier stages would leave them."""
    rng = np.random.default_rng(0)
    splits = {}
    for name, n in (("train", 60), ("val", 20), ("test", 30)):
        y = (np.arange(n) % 10).astype(np.uint8)
        X = np.clip(25 * y[:, None] + rng.integers(-40, 40, size=(n, 3072)), 0, 255)
        splits[name] = Split(X.astype(np.uint8), y)
        save_split(project.root / f"data/prepared/{name}.npz", splits[name])
    meta = {"class_names": NAMES, "archive_md5": "ab" * 16, "sizes": {}}
    (project.root / "data/prepared/meta.json").write_text(json.dumps(meta))
    (project.root / "reports").mkdir()
    (project.root / "reports/knn_choice.json").write_text('{"distance": "l1", "k": 3}')
    model = LinearClassifier(learning_rate=1e-6, reg=10.0, batch_size=16, epochs=2)
    save_linear_model(
        project.root / "data/models/svm.npz", model.fit(*vars(splits["train"]).values())
    )
    return splits["test"]


def test_evaluate_stages_write_their_reports_the_same_at_every_run(project):
    test = prepared(project)
    first = {}
    for model in ("knn", "svm"):
        project.run("python", f"stages/{model}_evaluate.py")
        for path in outputs(model):
            first[path] = (project.root / path).read_bytes()

        result = json.loads(first[f"reports/{model}_test.json"])
        predictions = pd.read_csv(project.root / f"reports/{model}_predictions.csv")
        assert predictions.columns.tolist() == ["actual", "predicted"]
        assert predictions["actual"].tolist() == [NAMES[c] for c in test.y]
        assert result["test_accuracy"] == np.mean(predictions["actual"] == predictions["predicted"])
        per_class = pd.read_csv(project.root / f"reports/{model}_per_class.csv")
        assert per_class.columns.tolist() == ["class", "accuracy", "n"]
        assert per_class["class"].tolist() == NAMES and per_class["n"].tolist() == [3] * 10
        assert all(first[p][:4] == b"\x89PNG" for p in outputs(model) if p.endswith(".png"))
    assert set(json.loads(first["reports/knn_test.json"])) == {"test_accuracy", "distance", "k"}

    from mlflow import MlflowClient

    client = MlflowClient(project.tracking_uri)
    experiment = client.get_experiment_by_name("cifarlab")
    for model in ("knn", "svm"):
        stage = f"tags.`cifarlab.stage` = '{model}_evaluate'"
        (run,) = client.search_runs([experiment.experiment_id], stage)
        per_class = pd.read_csv(project.root / f"reports/{model}_per_class.csv")
        metrics = run.data.metrics
        assert {f"test_accuracy.{c}" for c in NAMES} <= set(metrics)
        assert metrics["test_accuracy.c4"] == pytest.approx(per_class["accuracy"][4])
        logged = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {p.rsplit("/", 1)[-1] for p in outputs(model)[1:]} <= logged

    # dvc repro --force runs them again: every output the same, byte for byte.
    for model in ("knn", "svm"):
        project.run("python", f"stages/{model}_evaluate.py")
    for path, content in first.items():
        assert (project.root / path).read_bytes() == content, path
