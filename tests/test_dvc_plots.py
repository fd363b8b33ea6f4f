"""DVC's view of the results: the one metrics file and its order, the plot definitions, the
offline plots page. On a project copy holding report files written by hand (no `dvc repro`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from conftest import CHROMIUM, REPO, chromium_launch_args, copy_project, learnable_images  # noqa: E402

from cifarlab.errors import ConfigError  # noqa: E402
from cifarlab.knn.cv import cv_summary  # noqa: E402
from cifarlab.linear.classifier import (  # noqa: E402
    LinearClassifier,
    epoch_message,
    training_tables,
)

CLASSES = ["airplane", "automobile", "bird"]
PNGS = [
    "class_counts", "knn_cv", "svm_tune", "svm_loss", "svm_templates", "knn_confusion",
    "svm_confusion", "knn_misclassified", "svm_misclassified", "knn_neighbors",
]  # fmt: skip
# Stage plots: class counts, CV folds, search, loss, 2 x (confusion, per class); top level: CV
# means, accuracy per epoch; and every PNG but class_counts (a CSV plot, no PNG).
N_VEGA, N_IMAGES = 10, len(PNGS) - 1


def _csv(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    fig.savefig(path)
    plt.close(fig)


def write_reports(root, *, knn_acc=0.31, svm_acc=0.37, shift=0.0):
    """The files the stages write, small: what DVC reads for metrics and plots."""
    reports = root / "reports"
    (root / "data" / "prepared").mkdir(parents=True, exist_ok=True)
    meta = {"archive_md5": "0" * 32, "class_names": CLASSES}
    (root / "data" / "prepared" / "meta.json").write_text(json.dumps(meta))
    results = {
        "knn_test.json": {"distance": "l1", "k": 5, "test_accuracy": knn_acc},
        "knn_cv.json": {"cv_accuracy": 0.3, "cv_accuracy_std": 0.01},
        "knn_choice.json": {"distance": "l1", "k": 5},
        "svm_test.json": {"test_accuracy": svm_acc},
        "svm_choice.json": {"learning_rate": 1e-6, "reg": 100.0, "batch_size": 16},
        "svm_train.json": {
            "batch_size": 16,
            "best_epoch": 2,
            "epochs_run": 3,
            "learning_rate": 1e-6,
            "loss": "hinge",
            "reg": 100.0,
            "train_accuracy": 0.5,
            "val_accuracy": 0.4,
        },  # fmt: skip
    }
    reports.mkdir(parents=True, exist_ok=True)
    for name, content in results.items():
        (reports / name).write_text(json.dumps(content, indent=2, sort_keys=True))
    _csv(
        reports / "class_counts.csv",
        [(c, 10, 2, 3) for c in CLASSES],
        ["class", "train", "val", "test"],
    )
    ks = [1, 3, 5]
    folds = [(d, k, f, 0.3 + 0.01 * f + shift) for d in ("l1", "l2") for k in ks for f in range(3)]
    _csv(reports / "knn_cv.csv", folds, ["distance", "k", "fold", "accuracy"])
    _csv(reports / "knn_cv_summary.csv", [(k, 0.31 + shift, 0.3) for k in ks], ["k", "l1", "l2"])
    tune = [
        (i, lr, 100.0, 16, 0.5, 0.3 + i / 100 + shift, 2, 3, 2.0)
        for i, lr in enumerate([1e-7, 1e-6, 1e-5])
    ]
    _csv(
        reports / "svm_tune.csv",
        tune,
        [
            "trial",
            "learning_rate",
            "reg",
            "batch_size",
            "train_accuracy",
            "val_accuracy",
            "best_epoch",
            "epochs_run",
            "final_loss",
        ],
    )
    _csv(reports / "svm_loss.csv", [(s, 9.0 - s + shift) for s in range(6)], ["step", "loss"])
    epochs = [(e, 0.3 + e / 10, 0.28 + e / 10 + shift) for e in range(3)]
    _csv(reports / "svm_epochs.csv", epochs, ["epoch", "train_accuracy", "val_accuracy"])
    for model in ("knn", "svm"):
        pairs = [(a, p) for a in CLASSES for p in CLASSES]
        _csv(reports / f"{model}_predictions.csv", pairs, ["actual", "predicted"])
        per_class = [(c, 1 / 3, 3) for c in CLASSES]
        _csv(reports / f"{model}_per_class.csv", per_class, ["class", "accuracy", "n"])
    for name in PNGS:
        _png(reports / "plots" / f"{name}.png")


@pytest.fixture
def reported(tmp_path):
    """A committed project copy with the custom templates, its report files in the workspace."""
    project = copy_project(tmp_path / "project")
    for template in (REPO / ".dvc" / "plots").iterdir():
        (project.root / ".dvc" / "plots").mkdir(exist_ok=True)
        (project.root / ".dvc" / "plots" / template.name).write_bytes(template.read_bytes())
    write_reports(project.root)
    return project


def test_metrics_open_on_the_test_accuracies_and_params_diff_shows_the_choices(reported):
    # summarize itself writes reports/metrics.json (and choices.json) from the files above.
    reported.run(sys.executable, "stages/summarize.py")
    choices = json.loads((reported.root / "reports" / "choices.json").read_text())
    assert choices == {
        "knn": {"distance": "l1", "k": 5},
        "svm": {"batch_size": 16, "learning_rate": 1e-6, "loss": "hinge", "reg": 100.0},
    }
    shown = json.loads(reported.dvc("metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    assert list(files) == ["reports/metrics.json"]
    metrics = files["reports/metrics.json"]["data"]
    # File order is the column order of `dvc exp show`: each model's test accuracy first.
    flat = [f"{model}.{key}" for model, values in metrics.items() for key in values]
    assert flat == ["knn.test_accuracy", "knn.cv_accuracy", "svm.test_accuracy", "svm.val_accuracy"]
    assert metrics["knn"]["test_accuracy"] == 0.31 and metrics["svm"]["test_accuracy"] == 0.37
    # The table (DVC sorts its columns by name): four accuracies, no hyperparameter among them.
    header = reported.dvc("metrics", "show", "--md").stdout.splitlines()[0]
    columns = re.sub(r"\s+", "", header).strip("|").split("|")
    assert columns == [
        "Path",
        "knn.cv_accuracy",
        "knn.test_accuracy",
        "svm.test_accuracy",
        "svm.val_accuracy",
    ]

    reported.commit("results")
    write_reports(reported.root, knn_acc=0.33, svm_acc=0.39)
    reported.run(sys.executable, "stages/summarize.py")
    diff = json.loads(reported.dvc("metrics", "diff", "--json").stdout)
    assert list(diff) == ["reports/metrics.json"]
    assert set(diff["reports/metrics.json"]) == {"knn.test_accuracy", "svm.test_accuracy"}
    assert diff["reports/metrics.json"]["svm.test_accuracy"]["new"] == 0.39
    # Hyperparameters are compared as params.
    reported.set_params(svm={"loss": "softmax"})
    params = json.loads(reported.dvc("params", "diff", "--json").stdout)
    assert params["params.yaml"]["svm.loss"] == {"old": "hinge", "new": "softmax"}


def _vega(shown):
    """id -> filled Vega-Lite spec of `dvc plots show --json --split`-less output."""
    return {
        name: entries[0]["content"]
        for name, entries in shown.items()
        if entries and entries[0]["type"] == "vega"
    }


def test_plot_definitions_parse_and_use_the_intended_templates(reported):
    shown = json.loads(reported.dvc("plots", "show", "--json").stdout)
    assert "errors" not in shown, shown.get("errors")
    plots = shown["data"]
    vega = _vega(plots)
    images = [name for name, entries in plots.items() if entries[0]["type"] == "image"]
    assert len(vega) == N_VEGA, sorted(vega)
    assert len(images) == N_IMAGES, sorted(images)
    # Search: learning rate on a log axis.
    search = json.dumps(vega["reports/svm_tune.csv"])
    assert '"type": "log"' in search
    # CV means: one line per distance (both columns drawn), k on a log axis.
    means = vega["knn_cv_mean"]
    assert {row["field"] for row in means["data"]["values"]} == {"l1", "l2"}
    assert '"type": "log"' in json.dumps(means)
    # Fold spread: shape by distance.
    assert vega["reports/knn_cv.csv"]["encoding"]["shape"]["field"] == "distance"
    epochs = vega["svm_epochs"]["data"]["values"]
    assert {row["field"] for row in epochs} == {"train_accuracy", "val_accuracy"}
    for model in ("knn", "svm"):
        confusion = json.dumps(vega[f"reports/{model}_predictions.csv"])
        assert '"actual"' in confusion and '"predicted"' in confusion


def test_no_misleading_plot_is_left():
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stage_plots = {
        path: props
        for spec in pipeline["stages"].values()
        for entry in spec.get("plots", [])
        for path, props in ([entry.items()][0] if isinstance(entry, dict) else [(entry, {})])
    }
    # All folds of both distances as one line: replaced by per-distance means and a scatter.
    assert stage_plots["reports/knn_cv.csv"]["template"] == "knn_folds"
    assert stage_plots["reports/svm_tune.csv"]["template"] == "scatter_logx"
    # Only reports/metrics.json is a metrics file.
    metrics = [m for spec in pipeline["stages"].values() for m in spec.get("metrics", [])]
    assert metrics == [{"reports/metrics.json": {"cache": False}}]


def test_offline_page_has_the_vega_libraries_and_no_network_script(reported, tmp_path):
    page = tmp_path / "offline.html"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "offline_plots_template.py"),
         str(REPO / ".dvc" / "plots" / "offline.html"), str(page)],
        check=True, capture_output=True,
    )  # fmt: skip
    out = tmp_path / "dvc_plots"
    reported.dvc("plots", "show", "--html-template", str(page), "-o", str(out))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?https?:", html, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?:", html, re.IGNORECASE)
    assert "window.vegaEmbed=" in html and "vegaEmbed('#" in html
    assert html.count("vegaEmbed('#") == N_VEGA
    _renders_offline(out / "index.html")




def _renders_offline(index):
    """Every Vega plot of ``index`` draws in Chromium with every non-file request aborted."""
    args = chromium_launch_args("the offline plots page")
    from playwright.sync_api import sync_playwright

    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))

        def only_files(route):
            if route.request.url.startswith("file:"):
                return route.continue_()
            requests.append(route.request.url)
            return route.abort()

        page.route("**/*", only_files)
        page.goto(index.as_uri())
        drawn = "document.querySelectorAll('.vega-embed .marks').length"  # svg or canvas
        page.wait_for_function(f"{drawn} >= {N_VEGA}", timeout=20000)
        browser.close()
    assert not requests and not errors, (requests, errors)


# The tables behind the plots (written by knn_cv and svm_train).


def test_cv_summary_is_the_mean_over_folds_one_column_per_distance():
    rng = np.random.default_rng(0)
    rows = [(d, k, f, rng.random()) for d in ("l2", "l1") for k in (5, 1, 3) for f in range(4)]
    table = pd.DataFrame(rows, columns=["distance", "k", "fold", "accuracy"])
    summary = cv_summary(table)
    assert list(summary.columns) == ["k", "l1", "l2"] and list(summary["k"]) == [1, 3, 5]
    for distance in ("l1", "l2"):
        for k in (1, 3, 5):
            expected = np.mean([r[3] for r in rows if r[0] == distance and r[1] == k])
            got = summary.loc[summary["k"] == k, distance].item()
            assert got == pytest.approx(expected, abs=1e-15)
    # One distance cross-validated: the other's column is there, empty.
    only_l1 = cv_summary(table[table["distance"] == "l1"])
    assert list(only_l1.columns) == ["k", "l1", "l2"] and only_l1["l2"].isna().all()
    assert only_l1.to_csv(index=False).splitlines()[1].endswith(",")
    with pytest.raises(ConfigError, match="cv_table must be a DataFrame with columns"):
        cv_summary(table.drop(columns="fold"))


def test_training_tables_hold_every_step_and_epoch():
    X, y = learnable_images()
    model = LinearClassifier(epochs=3, batch_size=20, learning_rate=1e-3, random_state=0)
    model.fit(X[:45], y[:45], X[45:], y[45:])
    steps, epochs = training_tables(model)
    assert list(steps.columns) == ["step", "loss"] and len(steps) == len(model.loss_history_)
    assert list(epochs.columns) == ["epoch", "train_accuracy", "val_accuracy"]
    assert list(epochs["epoch"]) == [0, 1, 2]
    np.testing.assert_array_equal(epochs["val_accuracy"], model.val_accuracy_history_)
    # Without val the column is there, empty.
    _, no_val = training_tables(LinearClassifier(epochs=2, random_state=0).fit(X, y))
    assert no_val["val_accuracy"].isna().all() and len(no_val) == 2


def test_epoch_message_counts_from_one():
    line = epoch_message(2, 20, np.array([5.0, 4.0]), 0.351234, 0.339)
    assert line == "epoch 3/20: loss 4.5000, train accuracy 0.3512, val accuracy 0.3390"
    assert epoch_message(0, 1, np.array([1.0]), 0.5, None).endswith("train accuracy 0.5000")
