"""Where the Optuna studies of ``svm_tune`` live, and opening that storage in seconds.

Default: the SQLite file ``optuna.db`` at the project root (beside MLflow's ``mlflow.db``), so
``dvc exp run`` workspaces share it. ``CIFARLAB_STUDY_STORAGE`` names another SQLAlchemy URL, in
practice the team's PostgreSQL (``scripts/tracking-server.sh study-uri`` prints it; the password
comes from libpq's ``PGPASSFILE`` / ``~/.pgpass``, never from the URL on a command line).

The storage records a heartbeat of every running trial: a trial whose worker was killed is
ended FAIL by the next worker that looks (Optuna's ``fail_stale_trials``), and a copy of it is
queued again once, so the study still gets all its trials.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

from filelock import FileLock

from cifarlab.errors import CifarlabError, quoted
from cifarlab.tracking.store import project_root, sqlite_path

STORAGE_VARIABLE = "CIFARLAB_STUDY_STORAGE"
DB_NAME = "optuna.db"
#: Seconds between a running trial's heartbeats, and without one before it counts as dead.
HEARTBEAT_INTERVAL_S = 2
GRACE_PERIOD_S = 10
#: Seconds to reach a database server before giving up.
CONNECT_TIMEOUT_S = 5


class StudyStorageError(CifarlabError):
    """The study storage cannot be reached or used."""


def storage_url() -> str:
    """``CIFARLAB_STUDY_STORAGE`` if set, else ``sqlite:///<project root>/optuna.db``."""
    return os.environ.get(STORAGE_VARIABLE) or f"sqlite:///{project_root() / DB_NAME}"


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: say so as given, cut short
        return quoted(url)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Workers and the stage write the same file: wait for a busy database, do not fail.
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def open_storage(url: str | None = None) -> Any:
    """An ``optuna.storages.RDBStorage`` on ``url`` (default :func:`storage_url`), its tables
    created if missing; a StudyStorageError naming the URL (password hidden) when it cannot be
    reached or used, within about ``CONNECT_TIMEOUT_S`` seconds for a server."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = url or storage_url()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines say it all
    # The heartbeat and its retry have been "experimental" since Optuna 2.8 and 2.9; the pinned
    # version is tested here.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    db = sqlite_path(url)
    try:
        # Two processes creating the tables of a new SQLite file at once would collide.
        with FileLock(f"{db}.lock", timeout=120) if db else contextlib.nullcontext():
            storage = RDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except Exception as exc:
        raise StudyStorageError(
            f"cannot use the study storage {redact(url)}: {_reason(exc)} "
            f"(set {STORAGE_VARIABLE}, see the README's \"Search on several machines\")"
        ) from None
    if db:
        _serialise_sqlite_writes(storage.engine)
    return storage


def _serialise_sqlite_writes(engine: Any) -> None:
    """Every transaction on a SQLite file takes its write lock when it begins.

    A worker takes a waiting trial by reading WAITING and writing RUNNING in one transaction
    (``SELECT … FOR UPDATE``, which SQLite ignores); in pysqlite's deferred transactions two
    workers could both read WAITING and both take the trial. SQLAlchemy's recipe for pysqlite:
    no implicit BEGIN from the driver, an explicit ``BEGIN IMMEDIATE`` instead. PostgreSQL
    honours FOR UPDATE and needs none of this.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(connection: Any, record: Any) -> None:
        connection.isolation_level = None
        # Write-ahead log, synced at checkpoints: a trial's per-epoch report is one small
        # transaction, and a full fsync for each would cost more than the epoch on fast steps.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections made while creating the tables had neither


def _reason(exc: BaseException) -> str:
    """The first line of the driver's own message, not SQLAlchemy's wrapping."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return lines[0][:200] if lines else type(inner).__name__
