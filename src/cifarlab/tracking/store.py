"""The MLflow store, as the stage and the tracking worker both see it: where it is, how to open
it, and the run lookups of the CLI."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import tempfile
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


def sqlite_path(uri: str) -> Path | None:
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
    db = sqlite_path(uri)
    if db is None:
        # The MLflow client retries a failing request for minutes by default.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        return MlflowClient(uri)
    from filelock import FileLock

    if "?" not in uri:
        uri = f"{uri}?timeout=60"
    with FileLock(f"{db}.lock", timeout=300):
        if not db.exists():
            _create_sqlite_store(db)
        return MlflowClient(uri)


def _create_sqlite_store(db: Path) -> None:
    """Create MLflow's tables in a file beside ``db`` and rename it into place, so a process
    killed while MLflow builds them (its migrations take a second) leaves no half-made store.
    Built in rollback-journal mode, so the renamed file holds everything; WAL is switched on
    after."""
    from mlflow import MlflowClient

    fd, name = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".creating", dir=db.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        MlflowClient(f"sqlite:///{tmp}").search_experiments(max_results=1)  # creates the tables
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # an ordinary file, not mkstemp's 0600
        # A link, not a rename: a store another MLflow client created meanwhile is kept.
        try:
            os.link(tmp, db)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, created if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # Artifacts next to a SQLite store, by absolute path: runs from `dvc exp run` workspaces and
    # from other clones sharing the store land beside it, not in whichever working directory
    # happened to create the experiment. A server decides for itself.
    location = None
    db = sqlite_path(getattr(client, "tracking_uri", None) or tracking_uri())
    if db is not None:
        location = (db.parent / ARTIFACTS_DIR).as_uri()
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


#: Tags that name the process running a stage's run (children inherit them): what ``sweep``
#: checks to tell a run whose process is gone from one still running.
HOST_TAG, PROCESS_TAG = "cifarlab.host", "cifarlab.process"


def sweep(client: Any, experiment_ids: list[str]) -> list[str]:
    """End KILLED every RUNNING run of ``experiment_ids`` started on this host by a process
    that no longer exists (a stage killed outright, with its tracking worker). Returns their
    ids. Runs of other hosts are left alone: their processes cannot be checked from here."""
    import socket

    from cifarlab.process import identity

    if not experiment_ids:
        return []
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=5000,
    )
    swept = []
    for run in runs:
        process = run.data.tags.get(PROCESS_TAG, "")
        pid = process.split(":")[0]
        if not pid.isdigit() or identity(int(pid)) == process:
            continue
        client.set_tag(
            run.info.run_id,
            "cifarlab.error",
            f"its process ({process} on {host}) ended without ending the run",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        swept.append(run.info.run_id)
    return swept


def sweep_store() -> list[str]:
    """:func:`sweep` over every experiment of the project's store (``cifarlab runs sweep``)."""
    client = open_store(tracking_uri())
    return sweep(client, [e.experiment_id for e in client.search_experiments()])


def probe_sqlite(db: Path) -> None:
    """Prove in milliseconds, without MLflow, that the SQLite store ``db`` can take a write: it
    is a database (or will be created in a writable folder), and a write in a transaction that
    is rolled back succeeds. Raises TrackingError naming the file."""
    import sqlite3

    from cifarlab.errors import TrackingError

    if not db.exists():
        if not os.access(db.parent if db.parent.exists() else Path.cwd(), os.W_OK):
            raise TrackingError(f"cannot create the MLflow store {db}: its folder is not writable")
        return
    try:
        connection = sqlite3.connect(db, timeout=60, isolation_level=None)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("CREATE TABLE cifarlab_write_probe (x)")
            connection.execute("ROLLBACK")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise TrackingError(f"the MLflow store {db} cannot take a write: {exc}") from None
