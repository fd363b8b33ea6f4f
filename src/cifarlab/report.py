"""One report page: the pipeline's results, figures and provenance in a self-contained HTML file.

``reports/index.html`` is read from disk, offline: every figure is embedded as a ``data:`` URI,
the style sheet is inline, there is no script, and a Content-Security-Policy forbids the page
any other source. The page is rendered by Jinja2 with autoescaping, so a class name or a file
name in the data is text, never markup.

The template lives here, in the module, rather than in a separate file: the report stage's DVC
dependencies are the modules it runs (tests/test_dvc_yaml.py), so a change to the page's layout
is a change to this module and reruns the stage.

    read_inputs    the report files of the earlier stages, checked (one clear error each)
    pipeline_runs  the MLflow run of each stage of dvc.lock, through a lookup by stage hash
    provenance     archive md5, git commit and uncommitted changes, DVC experiment, run links
    render_page    the HTML
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import jinja2
import pandas as pd
from ruamel.yaml import YAML

from cifarlab import io
from cifarlab.errors import DataError
from cifarlab.lineage import lock_fingerprints

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: What ``make ui`` serves: the project's SQLite store.
UI_URL = "http://127.0.0.1:5000"
#: The report stage itself: its own lock entry is the previous run's, not this one.
REPORT_STAGE = "report"

METRIC_KEYS = {"knn": ("test_accuracy", "cv_accuracy"), "svm": ("test_accuracy", "val_accuracy")}
CHOICE_KEYS = {"knn": ("distance", "k"), "svm": ("loss", "learning_rate", "reg", "batch_size")}
COUNT_COLUMNS = ["class", "train", "val", "test"]
PER_CLASS_COLUMNS = ["class", "accuracy", "n"]


@dataclass(frozen=True)
class Figure:
    """A PNG to embed: its bytes and its size in pixels (from its header)."""

    png: bytes
    width: int
    height: int

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class ReportInputs:
    """What the earlier stages wrote, checked.

    metrics : reports/metrics.json, ``{"knn": {test_accuracy, cv_accuracy}, "svm": {...}}``.
    choices : reports/choices.json, the chosen hyperparameters of each model.
    knn_cv : reports/knn_cv.json (``cv_accuracy``, ``cv_accuracy_std``).
    meta : data/prepared/meta.json (``class_names``, ``archive_md5``, split ``sizes``).
    class_counts : (n_classes, 4) class, train, val, test.
    per_class : (n_classes, 4) class, n, knn, svm: test accuracy of each class per model.
    figures : {file stem: Figure}, e.g. ``knn_cv`` for reports/plots/knn_cv.png.
    """

    metrics: dict[str, Any]
    choices: dict[str, Any]
    knn_cv: dict[str, Any]
    meta: dict[str, Any]
    class_counts: pd.DataFrame
    per_class: pd.DataFrame
    figures: dict[str, Figure]


@dataclass(frozen=True)
class StageRun:
    """The MLflow run of one stage execution, as the page links it.

    others : how many more runs recorded the same stage version (same dvc.lock fingerprint: an
        unchanged stage, or one DVC restored from its run-cache, maps to every run that
        computed that result); the page shows the newest finished one.
    """

    stage: str
    run_id: str | None
    status: str | None = None
    start_time: int | None = None  # ms since the epoch
    experiment_id: str | None = None
    others: int = 0


def _read_sections(path: str, keys: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The two-level JSON object at ``path``, holding ``{section: {key: ...}}`` for every
    section and key of ``keys``."""
    document = io.read_json(path, keys=tuple(keys))
    for section, names in keys.items():
        node = document[section]
        where = f"{path} [{section!r}]"
        if not isinstance(node, dict):
            raise DataError(f"{where} must be a JSON object; rerun the stage that writes it")
        missing = [name for name in names if name not in node]
        if missing:
            raise DataError(
                f"{where} has no {missing[0]!r} (expected {list(names)}); "
                "rerun the stage that writes it"
            )
    return document


def _read_csv(path: str, columns: Sequence[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path} not found: run the earlier stages first (dvc repro)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())  # pandas' messages can span lines
        raise DataError(
            f"{path} is not a readable CSV ({reason}); rerun the stage writing it"
        ) from None
    if list(table.columns) != list(columns):
        raise DataError(
            f"{path} has columns {list(table.columns)}, expected {list(columns)}; "
            "rerun the stage that writes it"
        )
    return table


def read_png(path: str) -> Figure:
    """The PNG at ``path`` with its width and height, read from its IHDR header."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} not found: run the earlier stages first (dvc repro)") from None
    # Signature, then the IHDR chunk: length (4), type (4), width (4), height (4), big-endian.
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise DataError(f"{path} is not a PNG image; rerun the stage that draws it")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return Figure(data, width, height)


def read_inputs(
    *,
    metrics: str,
    choices: str,
    knn_cv: str,
    meta: str,
    class_counts: str,
    per_class: Mapping[str, str],
    figures: Sequence[str],
) -> ReportInputs:
    """Read and check every input of the page (paths as the stage names them).

    per_class : {"knn": path, "svm": path}, each CSV ``class,accuracy,n``, the same classes in
        the same order. figures : PNG paths; the page refers to each by its file stem.
    A missing or malformed file is a DataError naming it.
    """
    tables = {model: _read_csv(path, PER_CLASS_COLUMNS) for model, path in per_class.items()}
    knn, svm = tables["knn"], tables["svm"]
    if knn["class"].tolist() != svm["class"].tolist() or knn["n"].tolist() != svm["n"].tolist():
        raise DataError(
            f"{per_class['knn']} and {per_class['svm']} list different classes or counts "
            "(each model is scored on the same test split); rerun both evaluate stages"
        )
    return ReportInputs(
        metrics=_read_sections(metrics, METRIC_KEYS),
        choices=_read_sections(choices, CHOICE_KEYS),
        knn_cv=io.read_json(knn_cv, keys=("cv_accuracy", "cv_accuracy_std")),
        meta=io.read_json(meta, keys=("class_names", "archive_md5")),
        class_counts=_read_csv(class_counts, COUNT_COLUMNS),
        per_class=pd.DataFrame(
            {"class": knn["class"], "n": knn["n"], "knn": knn["accuracy"], "svm": svm["accuracy"]}
        ),
        figures={Path(path).stem: read_png(path) for path in figures},
    )


def pipeline_runs(
    lock_path: str | os.PathLike[str], lookup: Callable[[str, str], list[dict[str, Any]]]
) -> list[StageRun]:
    """The MLflow run of each stage recorded in ``lock_path`` (dvc.lock), in its order.

    lookup : ``cifarlab.tracking.runs_tagged``, or a test's stand-in: (tag, value) -> runs as
        dicts with run_id, status, start_time (ms) and, where given, experiment_id.
    Each stage run is tagged ``dvc.stage_hash`` with the fingerprint dvc.lock gives (see
    ``cifarlab.lineage``). Of several runs, the newest FINISHED one, else the newest; a stage
    whose run is not in the store (another store, a deleted run) has ``run_id`` None. No
    dvc.lock (the stage run by hand before any ``dvc repro``): no runs.
    """
    lock = Path(lock_path)
    if not lock.is_file():
        return []
    found = []
    for stage, fingerprint in lock_fingerprints(lock.read_text()).items():
        if stage == REPORT_STAGE:
            continue
        runs = lookup("dvc.stage_hash", fingerprint)
        if not runs:
            found.append(StageRun(stage, None))
            continue
        best = max(runs, key=lambda r: (r["status"] == "FINISHED", r.get("start_time") or 0))
        found.append(
            StageRun(
                stage,
                best["run_id"],
                best["status"],
                best.get("start_time"),
                best.get("experiment_id"),
                len(runs) - 1,
            )
        )
    return found


def run_url(tracking_uri: str, run: StageRun) -> str | None:
    """The MLflow UI page of ``run``: on the tracking server itself when the store is one
    (``http(s)://``, user and password left out), on ``make ui``'s address for a SQLite store,
    else None (a store no UI of the project serves)."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        base = urlunparse(parsed._replace(netloc=parsed.netloc.rpartition("@")[2])).rstrip("/")
    elif parsed.scheme == "sqlite":
        base = UI_URL
    else:
        return None
    if run.run_id is None:
        return None
    # MLflow's UI also opens a run by its id alone (route /runs/<id>) when its experiment
    # is not known here.
    if run.experiment_id is None:
        return f"{base}/#/runs/{run.run_id}"
    return f"{base}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def pipeline_outputs(dvc_yaml: str | os.PathLike[str]) -> set[str]:
    """Every file ``dvc_yaml`` declares as a stage's outs, metrics or plots (relative paths)."""
    path = Path(dvc_yaml)
    if not path.is_file():
        return set()
    spec = YAML(typ="safe", pure=True).load(path.read_text()) or {}
    outputs = set()
    for stage in (spec.get("stages") or {}).values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key) or []:
                outputs.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return outputs


def git_state(root: str | os.PathLike[str] = ".") -> tuple[str, list[str]]:
    """(the commit checked out at ``root``, the files that differ from it).

    Differences that are the pipeline's own doing are left out: dvc.lock, the outputs
    dvc.yaml declares and the .gitignore files beside them (DVC adds its cached outputs
    there). What remains (code, params.yaml, dvc.yaml, new files) means the results were
    not computed from that commit alone. Outside git: ``$DVC_EXP_BASELINE_REV`` or
    "unknown", and no list.
    """
    root = Path(root)
    head = _git(root, "rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        return os.environ.get("DVC_EXP_BASELINE_REV", "unknown"), []
    prefix_run = _git(root, "rev-parse", "--show-prefix")
    prefix = prefix_run.stdout.strip() if prefix_run is not None else ""
    outputs = {prefix + p for p in pipeline_outputs(root / "dvc.yaml")}
    ignores = {f"{Path(p).parent.as_posix()}/.gitignore" for p in outputs if "/" in p}
    own = outputs | ignores | {prefix + "dvc.lock"}
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    entries = status.stdout.split("\0") if status is not None else []
    changed, skip = [], False
    for entry in entries:
        if skip or len(entry) < 4:  # a rename's second entry is the old name
            skip = False
            continue
        skip = entry[0] in "RC"
        if entry[3:] not in own:
            changed.append(entry[3:])
    return head.stdout.strip(), sorted(changed)


def provenance(
    meta: Mapping[str, Any],
    runs: Sequence[StageRun],
    *,
    report_run: StageRun,
    tracking_uri: str,
    experiment: str | None,
    root: str | os.PathLike[str] = ".",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Where the page's results come from: archive md5, git commit and uncommitted changes,
    DVC experiment name ("workspace" outside one), and each stage's MLflow run with its UI
    link (see :func:`run_url`). ``tracking_uri`` is shown with any password hidden."""
    commit, changed = git_state(root)
    parsed = urlparse(tracking_uri)
    if parsed.password is not None:
        netloc = f"{parsed.username or ''}:***@{parsed.netloc.rpartition('@')[2]}"
        tracking_uri = urlunparse(parsed._replace(netloc=netloc))
    linked = [(run, run_url(tracking_uri, run)) for run in [*runs, report_run]]
    return {
        "archive_md5": meta["archive_md5"],
        "commit": commit,
        "changed": changed,
        "experiment": experiment or "workspace",
        "tracking_uri": tracking_uri,
        "served": parsed.scheme in ("http", "https"),
        "sqlite": parsed.scheme == "sqlite",
        "ui_url": UI_URL,
        "runs": linked,
        "generated": (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    # A class without test images (a tiny archive) has no accuracy: NaN in its CSV.
    env.filters["acc"] = lambda value: "–" if math.isnan(value) else f"{value:.4f}"
    env.filters["pct"] = lambda value: "0" if math.isnan(value) else f"{100 * value:.1f}"
    env.filters["num"] = lambda value: f"{value:g}" if isinstance(value, float) else str(value)
    env.filters["utc"] = _utc
    return env


def render_page(inputs: ReportInputs, origin: Mapping[str, Any]) -> str:
    """The report page as HTML text: ``inputs`` (:func:`read_inputs`) and ``origin``
    (:func:`provenance`). Every number of metrics.json is an element with ``data-metric``
    (``knn.test_accuracy``) and its exact value in ``data-value``, for tests and scrapers."""
    counts = inputs.class_counts
    totals = {column: int(counts[column].sum()) for column in COUNT_COLUMNS[1:]}
    return _environment().from_string(TEMPLATE).render(
        metrics=inputs.metrics,
        choices=inputs.choices,
        knn_cv=inputs.knn_cv,
        meta=inputs.meta,
        counts=counts.to_dict("records"),
        totals=totals,
        per_class=inputs.per_class.to_dict("records"),
        fig=inputs.figures,
        origin=origin,
    )


TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<link rel="icon" href="data:,">
<title>cifarlab · {{ origin.experiment }} · k-NN {{ metrics.knn.test_accuracy | acc }}, \
linear {{ metrics.svm.test_accuracy | acc }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; color: #1d2330; margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; }
header { background: #1d2330; color: #fff; padding: 14px 24px; }
header h1 { font-size: 20px; margin: 0; } header p { margin: 2px 0 0; color: #c9cfdb; }
nav a { color: #c9cfdb; margin-right: 14px; font-size: 14px; }
header code { background: #2f3747; color: #fff; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #d5d9e0; }
h3 { font-size: 16px; margin: 18px 0 6px; }
section > p { margin: 6px 0; }
.headline { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 16px; }
.card { background: #fff; border: 1px solid #d5d9e0; border-radius: 8px; padding: 14px 20px;
        flex: 1 1 320px; }
.card .label { font-size: 14px; color: #4a5366; text-transform: uppercase; letter-spacing: .04em; }
.card .big { font-size: 46px; font-weight: 700; line-height: 1.1; }
.card .detail { color: #4a5366; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.row > figure { flex: 1 1 420px; }
figure { margin: 8px 0; background: #fff; border: 1px solid #d5d9e0; border-radius: 6px;
         padding: 8px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 13px; color: #4a5366; margin-top: 4px; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d5d9e0; padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eceff3; }
tfoot td { font-weight: 600; }
td.bar { white-space: nowrap; }
td.bar span { display: inline-block; height: 10px; background: #5b7bd5; margin-right: 6px; }
table.text td, table.text th { text-align: left; }
td.bar.svm span { background: #d5815b; }
.better { font-weight: 700; }
code { font: 13px ui-monospace, monospace; background: #eceff3; padding: 1px 4px;
       border-radius: 3px; }
.warn { color: #a0400b; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dt { font-weight: 600; } dd { margin: 0; }
</style>
</head>
<body>
<header>
<h1>cifarlab: CIFAR-10 with k-NN and a linear classifier</h1>
<p>DVC experiment <strong>{{ origin.experiment }}</strong> · commit
<code>{{ origin.commit[:12] }}</code>{% if origin.changed %} + uncommitted changes{% endif %}
 · generated {{ origin.generated }}</p>
<nav><a href="#results">Results</a><a href="#data">Data</a><a href="#knn">k-NN</a>\
<a href="#linear">Linear</a><a href="#test">Test evaluation</a>\
<a href="#provenance">Provenance</a></nav>
</header>
<main>
{% set knn, svm = metrics.knn, metrics.svm %}
{% set kc, sc = choices.knn, choices.svm %}
<section id="results">
<div class="headline">
 <div class="card">
  <div class="label">k-nearest neighbour · test accuracy</div>
  <div class="big" data-metric="knn.test_accuracy" data-value="{{ knn.test_accuracy }}">\
{{ knn.test_accuracy | acc }}</div>
  <div class="detail">{{ kc.distance | upper }} distance, k = {{ kc.k }} · CV accuracy
   <span data-metric="knn.cv_accuracy" data-value="{{ knn.cv_accuracy }}">\
{{ knn.cv_accuracy | acc }}</span></div>
 </div>
 <div class="card">
  <div class="label">linear {{ "SVM (hinge loss)" if sc.loss == "hinge" else sc.loss ~ " loss" }}
   · test accuracy</div>
  <div class="big" data-metric="svm.test_accuracy" data-value="{{ svm.test_accuracy }}">\
{{ svm.test_accuracy | acc }}</div>
  <div class="detail">learning rate {{ sc.learning_rate | num }}, reg {{ sc.reg | num }},
   batch {{ sc.batch_size }} · val accuracy
   <span data-metric="svm.val_accuracy" data-value="{{ svm.val_accuracy }}">\
{{ svm.val_accuracy | acc }}</span></div>
 </div>
</div>
<p>Test accuracy is measured once per model on the official test batch
({{ totals.test }} images); the choices were made on the training split only.</p>
</section>

<section id="data">
<h2>Data</h2>
<p>CIFAR-10 archive md5 <code>{{ origin.archive_md5 }}</code>: images per class and split.</p>
<table>
<thead><tr><th>class</th><th>train</th><th>val</th><th>test</th></tr></thead>
<tbody>
{% for row in counts %}
<tr><td>{{ row["class"] }}</td><td>{{ row.train }}</td><td>{{ row.val }}</td>\
<td>{{ row.test }}</td></tr>
{% endfor %}
</tbody>
<tfoot><tr><td>total</td><td>{{ totals.train }}</td><td>{{ totals.val }}</td>\
<td>{{ totals.test }}</td></tr></tfoot>
</table>
</section>

<section id="knn">
<h2>k-nearest neighbour: cross-validation</h2>
<p>Chosen: <strong>{{ kc.distance | upper }}, k = {{ kc.k }}</strong>, mean CV accuracy
{{ knn_cv.cv_accuracy | acc }} ± {{ knn_cv.cv_accuracy_std | acc }} (the highest mean; ties
go to the smaller k).</p>
<figure><img src="{{ fig.knn_cv.data_uri }}" width="{{ fig.knn_cv.width }}"
 height="{{ fig.knn_cv.height }}" alt="k-NN cross-validation accuracy against k, per distance">
<figcaption>Cross-validation accuracy against k, one line per distance, with each fold.
</figcaption></figure>
</section>

<section id="linear">
<h2>Linear classifier: search and training</h2>
<p>Chosen on val: <strong>{{ sc.loss }} loss, learning rate {{ sc.learning_rate | num }},
reg {{ sc.reg | num }}, batch size {{ sc.batch_size }}</strong>; the final model's val accuracy
{{ svm.val_accuracy | acc }}.</p>
<figure><img src="{{ fig.svm_tune.data_uri }}" width="{{ fig.svm_tune.width }}"
 height="{{ fig.svm_tune.height }}" alt="val accuracy over learning rate and regularization">
<figcaption>Search: val accuracy of every trial over learning rate × regularization.
</figcaption></figure>
<figure><img src="{{ fig.svm_loss.data_uri }}" width="{{ fig.svm_loss.width }}"
 height="{{ fig.svm_loss.height }}" alt="training loss and accuracy curves">
<figcaption>Training of the final model: loss per step, train and val accuracy per epoch.
</figcaption></figure>
<figure><img src="{{ fig.svm_templates.data_uri }}" width="{{ fig.svm_templates.width }}"
 height="{{ fig.svm_templates.height }}" alt="the learned weights of each class as images">
<figcaption>The weights of each class, shown as images (templates).</figcaption></figure>
</section>

<section id="test">
<h2>Test evaluation</h2>
<div class="row">
<figure><img src="{{ fig.knn_confusion.data_uri }}" width="{{ fig.knn_confusion.width }}"
 height="{{ fig.knn_confusion.height }}" alt="k-NN confusion matrix on test">
<figcaption>k-NN: confusion matrix (rows: true class).</figcaption></figure>
<figure><img src="{{ fig.svm_confusion.data_uri }}" width="{{ fig.svm_confusion.width }}"
 height="{{ fig.svm_confusion.height }}" alt="linear classifier confusion matrix on test">
<figcaption>Linear: confusion matrix (rows: true class).</figcaption></figure>
</div>
<h3>Accuracy per class</h3>
<table>
<thead><tr><th>class</th><th>test images</th><th>k-NN</th><th>linear</th></tr></thead>
<tbody>
{% for row in per_class %}
<tr><td>{{ row["class"] }}</td><td>{{ row.n }}</td>
<td class="bar{{ ' better' if row.knn > row.svm }}"><span style="width: {{ row.knn | pct }}px">\
</span>{{ row.knn | acc }}</td>
<td class="bar svm{{ ' better' if row.svm > row.knn }}"><span style="width: {{ row.svm | pct }}px">\
</span>{{ row.svm | acc }}</td></tr>
{% endfor %}
</tbody>
</table>
<h3>Nearest neighbours</h3>
<figure><img src="{{ fig.knn_neighbors.data_uri }}" width="{{ fig.knn_neighbors.width }}"
 height="{{ fig.knn_neighbors.height }}" alt="test images and their nearest training images">
<figcaption>Test images (left) and their nearest training images: green, same class;
red, another.</figcaption></figure>
<h3>Misclassified examples</h3>
<div class="row">
<figure><img src="{{ fig.knn_misclassified.data_uri }}"
 width="{{ fig.knn_misclassified.width }}" height="{{ fig.knn_misclassified.height }}"
 alt="test images k-NN misclassified">
<figcaption>k-NN: true → predicted class.</figcaption></figure>
<figure><img src="{{ fig.svm_misclassified.data_uri }}"
 width="{{ fig.svm_misclassified.width }}" height="{{ fig.svm_misclassified.height }}"
 alt="test images the linear classifier misclassified">
<figcaption>Linear: true → predicted class.</figcaption></figure>
</div>
</section>

<section id="provenance">
<h2>Provenance</h2>
<dl>
<dt>archive md5</dt><dd><code>{{ origin.archive_md5 }}</code></dd>
<dt>git commit</dt><dd><code>{{ origin.commit }}</code>
{% if origin.commit == "unknown" %}
(not computed in a git checkout)
{% elif origin.changed %}
<span class="warn">with uncommitted changes:</span>
{% for path in origin.changed[:12] %}<code>{{ path }}</code>{{ ", " if not loop.last }}\
{% endfor %}{% if origin.changed | length > 12 %} and {{ origin.changed | length - 12 }}
more{% endif %}
{% else %}
(no uncommitted changes to code or params)
{% endif %}</dd>
<dt>DVC experiment</dt><dd>{{ origin.experiment }}</dd>
<dt>MLflow store</dt><dd><code>{{ origin.tracking_uri }}</code></dd>
</dl>
<h3>MLflow runs of this result</h3>
{% if not origin.served %}
<p>{% if origin.sqlite %}The links open in the MLflow UI that <code>make ui</code> serves
on {{ origin.ui_url }}: start it first.{% else %}This store has no web UI of the project:
look the runs up by id.{% endif %}</p>
{% endif %}
<table class="text">
<thead><tr><th>stage</th><th>run</th><th>status</th><th>started (UTC)</th></tr></thead>
<tbody>
{% for run, url in origin.runs %}
<tr><td>{{ run.stage }}</td><td>
{% if run.run_id is none %}no MLflow run with this stage's hash{% elif url %}\
<a href="{{ url }}"><code>{{ run.run_id }}</code></a>{% else %}<code>{{ run.run_id }}</code>\
{% endif %}{% if run.others %} (+{{ run.others }} earlier run{{ "s" if run.others > 1 }}
of the same stage version){% endif %}</td>
<td>{{ run.status or "" }}</td><td>{{ run.start_time | utc }}</td></tr>
{% endfor %}
</tbody>
</table>
</section>
</main>
</body>
</html>
"""
