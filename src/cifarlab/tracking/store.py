"""The MLflow store, as the stage and the tracking worker both see it: where it is, how to open
it, and the run lookups of the CLI."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from cifarlab.tracking.connectivity import check_tracking_uri

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The project's root, also from inside a ``dvc exp run`` workspace.

    DVC runs temporary and queued experiments in copies under ``<root>/.dvc/tmp/exps/``; their
    runs belong in the project's one store, so the path is cut before that folder.
    """
    here = Path(start or os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store ``mlflow.db`` at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / DB_NAME}"


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :].split("?")[0]) if uri.startswith(prefix) else None


def open_store(uri: str, *, check: bool = True) -> Any:
    """A client for ``uri``, after checking the store answers (seconds, not minutes of retries).

    A SQLite store is shared by every pipeline of the project (``dvc exp run`` queues run them
    side by side): its first creation is serialised by a file lock, it runs in WAL mode (readers
    never block the writer) and each connection waits up to 60 s for a busy database instead of
    failing with "database is locked".
    """
    from mlflow import MlflowClient

    if check:
        check_tracking_uri(uri)
    db = _sqlite_path(uri)
    if db is None:
        # The MLflow client retries a failing request for minutes by default.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        return MlflowClient(uri)
    from filelock import FileLock

    if "?" not in uri:
        uri = f"{uri}?timeout=60"
    with FileLock(f"{db}.lock", timeout=300):
        fresh = not db.exists()
        if fresh:
            with contextlib.closing(sqlite3.connect(db)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
        client = MlflowClient(uri)
        if fresh:
            client.search_experiments(max_results=1)  # creates the tables under the lock
    return client


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, created if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # Artifacts next to the SQLite store, by absolute path, so runs from `dvc exp run`
    # workspaces (other working directories) land in the same place.
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (project_root() / ARTIFACTS_DIR).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:
        # Another process created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit(cwd: Path) -> str:
    """The commit checked out at ``cwd``, else ``$DVC_EXP_BASELINE_REV``, else ``"unknown"``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is not None and out.returncode == 0:
        return out.stdout.strip()
    return os.environ.get("DVC_EXP_BASELINE_REV", "unknown")


def runs_tagged(key: str, value: str) -> list[dict[str, Any]]:
    """Every run, in any experiment of the store, whose tag ``key`` equals ``value``."""
    client = open_store(tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    escaped = value.replace("'", "\\'")
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{key}` = '{escaped}'", max_results=5000
    )
    return [_describe(run) for run in runs]


def run_description(run_id: str) -> dict[str, Any]:
    """``run_id``'s id, status, tags and start time (ms), as ``runs_tagged`` lists them."""
    return _describe(open_store(tracking_uri()).get_run(run_id))


def _describe(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "tags": dict(run.data.tags),
        "start_time": run.info.start_time,
    }
