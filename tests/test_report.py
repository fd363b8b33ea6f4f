"""The report page: built from small synthetic report files, checked in headless Chromium with
the network blocked, and its inputs, run links and provenance checked one by one."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import CHROMIUM, chromium_launch_args  # noqa: E402

from cifarlab import report  # noqa: E402
from cifarlab.errors import DataError  # noqa: E402
from cifarlab.lineage import lock_fingerprints  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["plane", "car", "bird"]
METRICS = {
    "knn": {"test_accuracy": 0.2834, "cv_accuracy": 0.27925},
    "svm": {"test_accuracy": 0.3985, "val_accuracy": 0.4140000000000001},
}
CHOICES = {
    "knn": {"distance": "l1", "k": 7},
    "svm": {"loss": "hinge", "learning_rate": 2.25e-06, "reg": 775.0, "batch_size": 500},
}


def _stage_module():
    spec = importlib.util.spec_from_file_location("report_stage", REPO / "stages" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STAGE = _stage_module()


def write_inputs(root: Path, classes=CLASSES, metrics=METRICS) -> None:
    """Every file the report stage reads, small, in the layouts the stages write."""
    (root / "reports" / "plots").mkdir(parents=True, exist_ok=True)
    (root / "data" / "prepared").mkdir(parents=True, exist_ok=True)
    (root / STAGE.METRICS).write_text(json.dumps(metrics))
    (root / STAGE.CHOICES).write_text(json.dumps(CHOICES))
    (root / STAGE.KNN_CV).write_text(json.dumps({"cv_accuracy": 0.27925, "cv_accuracy_std": 0.01}))
    meta = {"class_names": classes, "archive_md5": "5d0f39cb4780d7b8018f9fc878946374",
            "sizes": {"train": 30, "val": 6, "test": 9}}  # fmt: skip
    (root / STAGE.META).write_text(json.dumps(meta))
    counts = pd.DataFrame({"class": classes, "train": 10, "val": 2, "test": 3})
    (root / STAGE.COUNTS).write_text(counts.to_csv(index=False))
    for i, path in enumerate(STAGE.PER_CLASS.values()):
        per_class = pd.DataFrame({"class": classes, "accuracy": [0.1 * i, 0.5, 1.0], "n": 3})
        (root / path).write_text(per_class.to_csv(index=False))
    for i, path in enumerate(STAGE.FIGURES):
        fig, ax = plt.subplots(figsize=(1.2, 0.8), dpi=50)
        ax.plot([0, 1], [0, i])
        fig.savefig(root / path, format="png")
        plt.close(fig)


def read_inputs(root: Path) -> report.ReportInputs:
    return report.read_inputs(
        metrics=str(root / STAGE.METRICS), choices=str(root / STAGE.CHOICES),
        knn_cv=str(root / STAGE.KNN_CV), meta=str(root / STAGE.META),
        class_counts=str(root / STAGE.COUNTS),
        per_class={m: str(root / p) for m, p in STAGE.PER_CLASS.items()},
        figures=[str(root / p) for p in STAGE.FIGURES],
    )  # fmt: skip


def build_page(root: Path, tracking_uri="sqlite:///mlflow.db", **write) -> Path:
    write_inputs(root, **write)
    inputs = read_inputs(root)
    runs = [report.StageRun("prepare", "a" * 32, "FINISHED", 1_700_000_000_000, "1", 2),
            report.StageRun("knn_cv", None)]  # fmt: skip
    origin = report.provenance(
        inputs.meta, runs, report_run=report.StageRun("report", "b" * 32, "RUNNING"),
        tracking_uri=tracking_uri, experiment="brisk-yawl", root=root,
        now=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC),
    )  # fmt: skip
    page = root / "reports" / "index.html"
    page.write_text(report.render_page(inputs, origin))
    return page


# --- the page in a real browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright. Absent, the test is skipped on a workstation and
    fails in CI (`CI` set: .ci/run installs the package)."""
    args = chromium_launch_args("the report page test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


def open_offline(browser, page_path: Path):
    """Load ``page_path`` with every request but file:// aborted; returns (page, requests
    other than the page itself, console errors and page errors)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    others, errors = [], []

    def only_files(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_files)
    page = context.new_page()
    page.on("request", lambda r: r.url != page_path.as_uri() and others.append(r.url))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_path.as_uri(), wait_until="load")
    return page, others, errors


def test_report_page_renders_offline_in_chromium(browser, tmp_path):
    page_path = build_page(tmp_path)
    page, others, errors = open_offline(browser, page_path)
    # Every figure is embedded and decodes; nothing else is fetched, nothing fails.
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.src.slice(0, 22)])"
    )
    assert len(images) == len(STAGE.FIGURES)
    for alt, complete, width, src in images:
        assert complete and width > 0, f"image {alt!r} did not decode"
        assert src == "data:image/png;base64,"
    data_images = [u for u in others if u.startswith("data:")]
    assert not [u for u in others if u not in data_images], others
    assert not errors, errors
    assert page.eval_on_selector_all("script, link[rel=stylesheet]", "els => els.length") == 0
    # The numbers on the page are metrics.json's, each exactly once.
    shown = page.eval_on_selector_all(
        "[data-metric]", "els => els.map(e => [e.dataset.metric, e.dataset.value, e.innerText])"
    )
    expected = {f"{m}.{k}": v for m, values in METRICS.items() for k, v in values.items()}
    assert sorted(name for name, _, _ in shown) == sorted(expected)
    for name, value, text in shown:
        assert float(value) == expected[name], name
        assert text.strip() == f"{expected[name]:.4f}", name
    # The headline comes first: the test accuracies are the page's first numbers.
    assert [name for name, _, _ in shown[:1]] == ["knn.test_accuracy"]
    assert "brisk-yawl" in page.title()
    page.context.close()


def test_report_page_shows_class_names_as_text(browser, tmp_path):
    odd = ["<b>plane</b>", "car & truck", '"bird"']
    page, _, errors = open_offline(browser, build_page(tmp_path, classes=odd))
    cells = page.eval_on_selector_all(
        "#data tbody td:first-child", "els => els.map(e => e.innerText)"
    )
    assert cells == odd
    assert page.eval_on_selector_all("b", "els => els.length") == 0
    assert not errors
    page.context.close()


# --- inputs: each bad file is one clear error -------------------------------------------------


def _break_metrics(root):
    (root / STAGE.METRICS).write_text(json.dumps({"knn": {"test_accuracy": 0.2}, "svm": {}}))
    return "reports/metrics.json ['knn'] has no 'cv_accuracy'"


def _break_figure(root):
    (root / STAGE.FIGURES[2]).write_text("version https://git-lfs.github.com/spec/v1\n")
    return "reports/plots/svm_loss.png is not a PNG image"


def _remove_figure(root):
    (root / STAGE.FIGURES[-1]).unlink()
    return "reports/plots/svm_misclassified.png not found: run the earlier stages first"


def _break_counts(root):
    (root / STAGE.COUNTS).write_text("class,train\nplane,3\n")
    return "reports/class_counts.csv has columns ['class', 'train'], expected"


def _mismatch_per_class(root):
    (root / STAGE.PER_CLASS["svm"]).write_text("class,accuracy,n\nplane,0.5,3\n")
    return "list different classes or counts"


def _break_json(root):
    (root / STAGE.CHOICES).write_text("{")
    return "reports/choices.json is not valid JSON"


@pytest.mark.parametrize(
    "damage",
    [_break_metrics, _break_figure, _remove_figure, _break_counts, _mismatch_per_class,
     _break_json],
)  # fmt: skip
def test_a_bad_input_is_one_clear_error(tmp_path, damage):
    write_inputs(tmp_path)
    expected = damage(tmp_path)
    with pytest.raises(DataError) as info:
        read_inputs(tmp_path)
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_a_class_without_test_images_has_no_accuracy(tmp_path):
    write_inputs(tmp_path)
    for path in STAGE.PER_CLASS.values():
        (tmp_path / path).write_text("class,accuracy,n\nplane,,0\ncar,0.5,3\nbird,1.0,3\n")
    inputs = read_inputs(tmp_path)
    origin = report.provenance(
        inputs.meta, [], report_run=report.StageRun("report", "r"), tracking_uri="sqlite:///x",
        experiment=None, root=tmp_path,
    )  # fmt: skip
    html = report.render_page(inputs, origin)
    assert not re.search(r"\bnan\b", html, re.IGNORECASE)
    plane = '<td>plane</td><td>0</td>\n<td class="bar"><span style="width: 0px"></span>–</td>'
    assert plane in html


def test_figures_keep_their_size(tmp_path):
    write_inputs(tmp_path)
    figure = read_inputs(tmp_path).figures["knn_cv"]
    assert (figure.width, figure.height) == (60, 40)
    assert figure.data_uri.startswith("data:image/png;base64,iVBORw0KGgo")


# --- MLflow runs and their links --------------------------------------------------------------

LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python stages/prepare.py
    deps:
    - path: stages/prepare.py
      md5: 0123
  knn_cv:
    cmd: python stages/knn_cv.py
    params:
      params.yaml:
        knn.k_choices: [1, 3]
  report:
    cmd: python stages/report.py
"""


def test_pipeline_runs_links_the_newest_finished_run_of_each_stage(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    fingerprints = lock_fingerprints(LOCK)
    store = {
        fingerprints["prepare"]: [
            {"run_id": "old", "status": "FINISHED", "start_time": 1},
            {"run_id": "new", "status": "FINISHED", "start_time": 3, "experiment_id": "7"},
            {"run_id": "failed", "status": "FAILED", "start_time": 5},
        ],
    }
    asked = []

    def lookup(key, value):
        asked.append(key)
        return store.get(value, [])

    runs = report.pipeline_runs(lock, lookup)
    assert set(asked) == {"dvc.stage_hash"}
    # The report's own lock entry is the previous report's: not looked up.
    assert [r.stage for r in runs] == ["prepare", "knn_cv"]
    assert runs[0] == report.StageRun("prepare", "new", "FINISHED", 3, "7", 2)
    assert runs[1].run_id is None
    assert report.pipeline_runs(tmp_path / "missing.lock", lookup) == []


@pytest.mark.parametrize(
    ("uri", "experiment_id", "url"),
    [
        ("http://alice:secret@mlflow.lab:5000/", "3",
         "http://mlflow.lab:5000/#/experiments/3/runs/r1"),
        ("https://mlflow.lab", None, "https://mlflow.lab/#/runs/r1"),
        ("sqlite:////work/mlflow.db", "1", f"{report.UI_URL}/#/experiments/1/runs/r1"),
        ("file:///work/mlruns", "1", None),
    ],
)  # fmt: skip
def test_run_links_open_the_mlflow_ui(uri, experiment_id, url):
    assert report.run_url(uri, report.StageRun("prepare", "r1", experiment_id=experiment_id)) == url


def test_provenance_hides_a_password(tmp_path):
    write_inputs(tmp_path)
    origin = report.provenance(
        {"archive_md5": "ab"}, [], report_run=report.StageRun("report", "r"),
        tracking_uri="http://alice:secret@mlflow.lab", experiment=None, root=tmp_path,
    )  # fmt: skip
    assert origin["tracking_uri"] == "http://alice:***@mlflow.lab"
    assert origin["experiment"] == "workspace" and origin["served"]
    assert "secret" not in json.dumps(origin, default=str)


# --- git commit and uncommitted changes -------------------------------------------------------


def _git(root, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def test_git_state_names_changes_to_inputs_not_the_pipelines_outputs(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "reports").mkdir()
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: x\n    outs:\n    - reports/out.json\n"
        "    metrics:\n    - reports/metrics.json:\n        cache: false\n"
    )
    for name in ("params.yaml", "dvc.lock", "reports/metrics.json", "src/a.py"):
        (tmp_path / name).write_text("1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "c")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert report.git_state(tmp_path) == (head, [])
    # What dvc repro writes is no uncommitted change...
    for name in ("dvc.lock", "reports/metrics.json", "reports/out.json", "reports/.gitignore"):
        (tmp_path / name).write_text("2\n")
    assert report.git_state(tmp_path) == (head, [])
    # ...a changed param, changed code or a new module is.
    (tmp_path / "params.yaml").write_text("2\n")
    (tmp_path / "src" / "b.py").write_text("")
    _git(tmp_path, "mv", "src/a.py", "src/c.py")
    assert report.git_state(tmp_path) == (head, ["params.yaml", "src/b.py", "src/c.py"])


def test_git_state_outside_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "f" * 40)
    assert report.git_state(tmp_path) == ("f" * 40, [])


# --- the stage, in a project copy -------------------------------------------------------------


@pytest.mark.e2e
def test_report_stage_writes_the_page_and_logs_it(tmp_path):
    from conftest import copy_project

    from cifarlab.tracking.store import experiment_id, open_store

    project = copy_project(tmp_path / "project")
    write_inputs(project.root)
    (project.root / "dvc.lock").write_text(LOCK)
    project.commit("the earlier stages' reports")
    # The prepare stage's run, as the stage tags it: found through dvc.lock's fingerprint.
    client = open_store(project.tracking_uri)
    experiment = experiment_id(client, "cifarlab")
    prepared = client.create_run(
        experiment, tags={"dvc.stage_hash": lock_fingerprints(LOCK)["prepare"]}
    )
    client.set_terminated(prepared.info.run_id, "FINISHED")

    project.env["DVC_EXP_NAME"] = "brisk-yawl"
    proc = project.run("python", "stages/report.py")
    assert "report: reports/index.html (" in proc.stdout
    assert "1 of 2 stage runs linked" in proc.stdout, proc.stdout
    html = (project.root / STAGE.PAGE).read_text()
    assert prepared.info.run_id in html and "brisk-yawl" in html
    assert _git(project.root, "rev-parse", "HEAD") in html
    assert "no uncommitted changes" in html
    (run,) = client.search_runs([experiment], filter_string="tags.`cifarlab.stage` = 'report'")
    assert run.info.status == "FINISHED" and run.info.run_id in html
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["index.html"]
