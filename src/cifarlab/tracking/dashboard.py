"""The MLflow UI as this project wants it opened: the experiment marked as classic model
training (not GenAI), and a saved view of the runs table with the useful columns.

How the MLflow 3 UI (3.17) decides, read from its build (``mlflow/server/js/build``):
- the experiment tag ``mlflow.experimentKind`` picks the page: ``genai_development`` opens
  "Overview / Traces", ``custom_model_development`` the training runs table;
- the side bar's "GenAI / Model training" switch is the browser's; the URL parameter
  ``workflowType=machine_learning`` turns it to model training;
- the runs table's columns, sort, filter and grouping are UI state kept in the browser; a
  *saved view* is that state in the experiment tag ``mlflow.sharedViewState.<key>`` (an envelope
  ``{"name", "createdAt", "updatedAt", "state"}``, ``state`` a JSON string), listed in the UI's
  views menu and opened by the URL ``#/experiments/<id>/runs?viewStateShareKey=<key>``.

``python -m cifarlab.tracking.dashboard [--port N] [--print-only]`` (``make ui``) prepares the
experiment, prints that URL, starts ``mlflow ui`` on the project's store and opens the URL in a
browser when the machine has one.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cifarlab.tracking.naming import PIPELINE_TAG

KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
VIEW_KEY = "cifarlab-compare"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "cifarlab: compare (test accuracies first)"
#: The UI's global GenAI / Model training switch (kept in the browser, GenAI by default; the
#: ``workflowType`` URL parameter sets it).
WORKFLOW = "machine_learning"

#: The runs table's columns, in order: the headline metrics (summarize), each stage's score,
#: the key hyperparameters, the DVC experiment and pipeline run.
METRIC_COLUMNS = (
    "knn_test_accuracy", "svm_test_accuracy", "test_accuracy", "val_accuracy", "cv_accuracy",
)  # fmt: skip
PARAM_COLUMNS = (
    "svm.loss", "svm.learning_rate", "svm.reg", "svm.batch_size", "knn.distance", "knn.k",
)  # fmt: skip
TAG_COLUMNS = ("dvc.exp_name", PIPELINE_TAG)


def _column(kind: str, name: str) -> str:
    """The UI's column id (its ``makeCanonicalSortKey``): ``metrics.`name```."""
    return f"{kind}.`{name}`"


def view_state() -> dict[str, Any]:
    """The saved view's state: the runs table's selected columns."""
    columns = [
        *(_column("metrics", m) for m in METRIC_COLUMNS),
        *(_column("params", p) for p in PARAM_COLUMNS),
        *(_column("tags", t) for t in TAG_COLUMNS),
        _column("attributes", "Dataset"),
        _column("attributes", "Models"),
    ]
    # The UI fills in the rest from its defaults (newest runs first, no filter).
    return {"selectedColumns": columns}


def view_envelope(now_ms: int | None = None) -> str:
    """The value of ``VIEW_TAG``."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    state = json.dumps(view_state(), sort_keys=True)
    return json.dumps({"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": state})


def experiment_tags_to_set(tags: dict[str, str]) -> dict[str, str]:
    """The tags an experiment with ``tags`` lacks: the training kind (unless a kind is set: the
    user's choice stays) and the saved view (rewritten when its state is not this version's)."""
    wanted: dict[str, str] = {}
    if KIND_TAG not in tags:
        wanted[KIND_TAG] = TRAINING_KIND
    try:
        current = json.loads(json.loads(tags[VIEW_TAG])["state"])
    except (KeyError, TypeError, ValueError):
        current = None
    if current != view_state():
        wanted[VIEW_TAG] = view_envelope()
    return wanted


def prepare_experiment(client: Any, name: str, *, best_effort: bool = False) -> str:
    """The id of experiment ``name`` (created if missing) with the kind and view tags set.

    best_effort : a store that refuses the tags (a server account that may log runs but not
        edit the experiment) leaves them unset instead of failing: for a stage's tracking.
    """
    import contextlib

    from cifarlab.tracking.store import experiment_id

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        experiment = client.get_experiment(experiment_id(client, name))
    refused = (Exception,) if best_effort else ()
    with contextlib.suppress(*refused):
        for key, value in experiment_tags_to_set(dict(experiment.tags)).items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def runs_page_url(base: str, experiment_id: str) -> str:
    """The runs table of ``experiment_id`` opened on the saved view."""
    query = f"viewStateShareKey={VIEW_KEY}&workflowType={WORKFLOW}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


# Run beside the server: wait until it answers, then open the page in a browser if this
# machine has one (argv: the health URL, the page URL).
_OPENER = """
import sys, time, urllib.request, webbrowser
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit(0)
try:
    webbrowser.get()
except webbrowser.Error:
    sys.exit(0)  # no browser: the URL is printed
webbrowser.open(sys.argv[2])
"""


def main(argv: list[str] | None = None) -> int:
    """``make ui``: prepare the experiment, print its runs page, then become ``mlflow ui`` on
    the project's store (so Ctrl-C and signals reach the server as before), a small process
    beside it opening the page once the server answers."""
    import argparse
    import os
    import subprocess
    import sys
    from urllib.parse import urlsplit, urlunsplit

    from cifarlab.params import load_params
    from cifarlab.tracking.store import open_store, tracking_uri

    parser = argparse.ArgumentParser(prog="python -m cifarlab.tracking.dashboard")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--print-only", action="store_true", help="print the URL, start nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    uri = tracking_uri()
    experiment = load_params()["tracking"]["experiment"]
    experiment_id = prepare_experiment(open_store(uri), experiment)
    served = uri.startswith(("http://", "https://"))  # a tracking server serves its own UI
    if served:
        parts = urlsplit(uri)  # never print a login the URI may hold
        base = urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                           parts.path, "", ""))  # fmt: skip
    else:
        base = f"http://{args.host}:{args.port}"
    url = runs_page_url(base, experiment_id)
    print(f"MLflow runs page: {url}", flush=True)
    if args.print_only or served:
        return 0
    health = f"http://{args.host}:{args.port}/health"
    subprocess.Popen([sys.executable, "-c", _OPENER, health, url], stdin=subprocess.DEVNULL)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port)]  # fmt: skip
    os.execv(sys.executable, command)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
