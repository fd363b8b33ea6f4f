"""MLflow tracking for the pipeline stages: the only module of cifarlab that imports mlflow.

One MLflow run per stage execution, tagged with the stage, the git commit, the data md5 and the
DVC stage fingerprint. Cross-validation and tuning open one child run per candidate. The final
linear model is logged as an MLflow pyfunc model (see :meth:`Run.log_linear_model`).

The MLflow work of a stage runs in a tracking worker, a child process (``python -m
cifarlab.tracking``) that the stage starts when it opens its run, so that it costs the stage's
computation nothing: the worker imports MLflow (about a second), creates the run, and stores what
the stage sends it over a socket while the stage computes; the stage only pickles small
messages. Leaving ``with stage_run(...)`` waits until the worker has stored everything and ended
the run, so afterwards the store holds the whole run, as if it had been logged in-process. A
failure in the worker (a refused request, a conflicting parameter) is raised in the stage as a
``TrackingError`` at its next tracking call or at the end of the block; the run ends FAILED. If
the stage process dies, the worker ends its runs KILLED.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cifarlab.connectivity import check_tracking_uri
from cifarlab.errors import ConfigError, TrackingError
from cifarlab.lineage import workspace_fingerprint

# MLflow's own limit on metrics per log_batch call.
_BATCH = 1000
# Longest error message kept as the `cifarlab.error` tag of a failed run.
_ERROR_TAG_CHARS = 4000
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


def _open_store(uri: str, *, check: bool = True) -> Any:
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


def _git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is not None and out.returncode == 0:
        return out.stdout.strip()
    return os.environ.get("DVC_EXP_BASELINE_REV", "unknown")


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"svm": {"reg": 1}}`` → ``{"svm.reg": "1"}``: MLflow params are flat strings."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


# --------------------------------------------------------------------------- the stage's side


class Run:
    """A live MLflow run (a stage's run or one of its children), as the stage sees it.

    Every method sends one message to the tracking worker and returns at once; ``run_id`` waits
    for the worker to have created the run.
    """

    def __init__(self, worker: _Worker, handle: int) -> None:
        self._worker = worker
        self._handle = handle

    @property
    def run_id(self) -> str:
        return self._worker.run_id(self._handle)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._worker.send("params", self._handle, flatten(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._worker.send("tags", self._handle, {k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        self._worker.send("metrics", self._handle, values, step, _now_ms())

    def log_series(
        self, key: str, values: Sequence[float], steps: Sequence[int] | None = None
    ) -> None:
        """Log a whole metric series (e.g. the accuracy of every fold), each value at its step
        (default: its index)."""
        steps = range(len(values)) if steps is None else list(steps)
        self._worker.send("points", self._handle, [(key, values, steps)], _now_ms())

    def log_curves(self, curves: Mapping[str, Sequence[float]]) -> None:
        """Several series at once, each value at its index as step."""
        series = [(key, values, range(len(values))) for key, values in curves.items()]
        self._worker.send("points", self._handle, series, _now_ms())

    @contextlib.contextmanager
    def epoch_logger(self) -> Iterator[Any]:
        """Yield an ``on_epoch_end(epoch, step_losses, train_acc, val_acc)`` callback (the one of
        ``LinearClassifier.fit``) that logs, as training runs, the ``loss`` of every SGD step
        and the ``train_accuracy`` / ``val_accuracy`` of every epoch: one message per epoch, so
        the curves grow live in the UI and a run that fails keeps its finished epochs."""
        next_step = 0

        def on_epoch_end(epoch: int, step_losses: Any, train_acc: float, val_acc: Any) -> None:
            nonlocal next_step
            n_steps = len(step_losses)
            series = [
                ("loss", step_losses, range(next_step, next_step + n_steps)),
                ("train_accuracy", [train_acc], [epoch]),
            ]
            if val_acc is not None:
                series.append(("val_accuracy", [val_acc], [epoch]))
            next_step += n_steps
            self._worker.send("points", self._handle, series, _now_ms())

        yield on_epoch_end

    def log_trial(self, trial: Any) -> None:
        """One search trial (a ``cifarlab.search.TrialResult``) as a child run: its
        hyperparameters, loss per step, train / val accuracy per epoch and final figures. A
        diverged trial's run ends FAILED with the message as its ``cifarlab.error`` tag."""
        record = {
            "name": trial.name,
            "params": flatten({"trial": trial.index, **trial.hyperparameters}),
            "error": trial.error,
        }
        if trial.error is None:
            record["curves"] = {
                "loss": trial.loss_history,
                "train_accuracy": trial.train_accuracy_history,
                "val_accuracy": trial.val_accuracy_history,
            }
            record["metrics"] = {
                "best_val_accuracy": trial.val_accuracy,
                "best_train_accuracy": trial.train_accuracy,
                "best_epoch": float(trial.best_epoch),
                "fit_seconds": float(trial.seconds),
            }
        self._worker.send("trial", self._handle, record, _now_ms())

    def log_linear_model(
        self,
        model_file: str | os.PathLike[str],
        input_example: Any,
        artifact_path: str = "model",
    ) -> None:
        """Log a linear model as an MLflow pyfunc model under ``artifact_path``.

        model_file : the ``.npz`` of ``cifarlab.pipeline.save_linear_model``; it must stay
            unchanged until the run ends (the worker reads it).
        input_example : uint8 array of shape (n, n_features), a few raw images.

        The model loads with ``mlflow.pyfunc.load_model(f"runs:/{run_id}/{artifact_path}")``
        (or serves with ``mlflow models predict``): uint8 images of shape (-1, n_features) in,
        int64 class labels out, the training mean subtracted inside. Its ``code/`` folder holds
        the cifarlab package (loader: ``cifarlab.serving``), so cifarlab need not be installed.
        """
        import numpy as np

        example = np.asarray(input_example)
        if example.ndim != 2 or example.dtype != np.uint8:
            raise ConfigError(
                "input_example must be a uint8 array of shape (n, n_features), "
                f"got {example.dtype} {example.shape}"
            )
        self._worker.send("model", self._handle, str(_existing(model_file)), example, artifact_path)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Store the file at ``path`` with the run; it must stay unchanged until the run ends."""
        self._worker.send("artifact", self._handle, str(_existing(path)), artifact_path)

    @contextlib.contextmanager
    def child(self, run_name: str, params: Mapping[str, Any] | None = None) -> Iterator[Run]:
        """A nested run (one candidate of a search), shown under this run in the UI."""
        child = self._worker.new_run("child", self._handle, run_name)
        with _ending(child):
            if params:
                child.log_params(params)
            yield child


def _now_ms() -> int:
    return int(time.time() * 1000)


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path} not found: write the file before logging it")
    return path


class _Worker:
    """The stage's end of the connection to its tracking worker process."""

    def __init__(self, uri: str) -> None:
        import socket
        import sys
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The worker runs this very copy of cifarlab, installed or not.
        package_parent = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        with theirs:
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "cifarlab.tracking", str(theirs.fileno()), uri],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            except OSError as exc:
                ours.close()
                raise TrackingError(f"cannot start the MLflow tracking worker: {exc}") from None
        self._connection = Connection(ours.detach())
        self._handles = 0
        self._run_ids: dict[int, str] = {}
        self.error: str | None = None

    def send(self, *message: Any) -> None:
        """Send one message; raise TrackingError if the worker has failed."""
        self._take_replies(wait=False)
        if self.error is not None:
            raise TrackingError(self.error)
        try:
            self._connection.send(message)
        except OSError:
            raise TrackingError(self._exit_message()) from None

    def new_run(self, kind: str, *args: Any) -> Run:
        self._handles += 1
        self.send(kind, self._handles, *args)
        return Run(self, self._handles)

    def run_id(self, handle: int) -> str:
        if handle not in self._run_ids:
            self.send("run_id", handle)
            while handle not in self._run_ids and self._take_replies(wait=True):
                pass
        run_id = self._run_ids.get(handle)
        if run_id is None:
            raise TrackingError(self.error or "the MLflow run was never created")
        return run_id

    def close(self) -> None:
        """Wait until the worker has stored everything and exited (the stage has ended its
        runs); keep the worker's error, if any, in ``error``."""
        try:
            with contextlib.suppress(OSError):  # a worker already gone: its exit code tells
                self._connection.send(("close",))
            while self._take_replies(wait=True):
                pass
        except KeyboardInterrupt:
            # Interrupted again while the worker finishes: stop it rather than wait.
            self._process.kill()
            raise
        finally:
            self._process.wait()
            self._connection.close()
        if self._process.returncode != 0 and self.error is None:
            self.error = self._exit_message()

    def _take_replies(self, wait: bool) -> bool:
        """Read the worker's replies (run ids, its error); False once it has closed."""
        try:
            while wait or self._connection.poll():
                wait = False
                kind, payload = self._connection.recv()
                if kind == "run_ids":
                    self._run_ids.update(payload)
                elif kind == "error":
                    self.error = payload
        except (EOFError, OSError):
            if self.error is None and self._process.wait() != 0:
                self.error = self._exit_message()
            return False
        return True

    def _exit_message(self) -> str:
        code = self._process.wait()
        return f"the MLflow tracking worker exited with code {code} (its error is above)"


@contextlib.contextmanager
def _ending(run: Run) -> Iterator[None]:
    """End ``run`` FINISHED, or FAILED / KILLED (with the error as a tag) if the block raises."""
    try:
        yield
    except KeyboardInterrupt:
        with contextlib.suppress(TrackingError):  # the interrupt matters more
            run._worker.send("end", run._handle, "KILLED", None)
        raise
    except BaseException as exc:
        with contextlib.suppress(TrackingError):
            run._worker.send("end", run._handle, "FAILED", f"{type(exc).__name__}: {exc}")
        raise
    run._worker.send("end", run._handle, "FINISHED", None)


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    *,
    experiment: str,
    data_md5: str | None = None,
    will_log_model: bool = False,
) -> Iterator[Run]:
    """Open the MLflow run of one stage execution; end it FINISHED, FAILED or KILLED.

    params : the stage's sections of params.yaml, logged flattened (``knn.k_choices`` …).
    will_log_model : the stage will call ``log_linear_model``: the worker then does MLflow's
        one-off preparation of model saving while the stage computes (module docstring).

    The store is checked first (an unreachable or refusing one is a TrackingError within
    seconds); the run itself is created and logged by the tracking worker (module docstring).
    """
    if not experiment:
        raise ConfigError("tracking.experiment must be a non-empty string")
    uri = tracking_uri()
    check_tracking_uri(uri)
    worker = _Worker(uri)
    try:
        run = worker.new_run(
            "open",
            stage,
            flatten(params),
            experiment,
            data_md5,
            os.environ.get("DVC_EXP_NAME"),
            will_log_model,
        )
        with _ending(run):
            yield run
    except BaseException:
        worker.close()  # the block's error is the one to raise
        raise
    worker.close()
    if worker.error is not None:
        raise TrackingError(worker.error)


# --------------------------------------------------------------------------- the worker's side


class _Recorder:
    """Carries out the stage's messages against an MLflow client (in the tracking worker)."""

    def __init__(self, uri: str) -> None:
        self._client = _open_store(uri, check=False)
        self.run_ids: dict[int, str] = {}
        self._experiment_ids: dict[int, str] = {}
        self._inherited_tags: dict[int, dict[str, str]] = {}
        self.open_runs: list[int] = []
        self._own_handles = itertools.count(-1, -1)  # for trials: the stage's handles are > 0

    def open(
        self,
        handle: int,
        stage: str,
        params: dict[str, str],
        experiment: str,
        data_md5: str | None,
        exp_name: str | None,
        will_log_model: bool,
    ) -> None:
        tags = {
            "cifarlab.stage": stage,
            "mlflow.source.git.commit": _git_commit(Path.cwd()),
            "mlflow.source.name": f"stages/{stage}.py",
        }
        if Path("dvc.yaml").is_file():
            tags["dvc.stage_hash"] = workspace_fingerprint(stage)
        if data_md5:
            tags["cifarlab.data_md5"] = data_md5
        if exp_name:
            tags["dvc.exp_name"] = exp_name
        self._create(handle, _experiment_id(self._client, experiment), stage, tags)
        self.params(handle, params)
        if will_log_model:
            _prepare_model_logging()

    def child(self, handle: int, parent: int, run_name: str) -> None:
        if parent not in self._inherited_tags:
            parent_tags = self._client.get_run(self.run_ids[parent]).data.tags
            self._inherited_tags[parent] = {
                k: v for k, v in parent_tags.items() if k.startswith("cifarlab.")
            }
        tags = {"mlflow.parentRunId": self.run_ids[parent], **self._inherited_tags[parent]}
        self._create(handle, self._experiment_ids[parent], run_name, tags)

    def _create(self, handle: int, experiment_id: str, name: str, tags: dict[str, str]) -> None:
        run = self._client.create_run(experiment_id, run_name=name, tags=tags)
        self.run_ids[handle] = run.info.run_id
        self._experiment_ids[handle] = experiment_id
        self.open_runs.append(handle)

    def params(self, handle: int, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self._client.log_batch(self.run_ids[handle], params=items[start : start + 100])

    def tags(self, handle: int, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_ids[handle], tags=[RunTag(k, v) for k, v in tags.items()])

    def metrics(self, handle: int, metrics: dict[str, float], step: int, timestamp: int) -> None:
        self.points(handle, [(k, [v], [step]) for k, v in metrics.items()], timestamp)

    def points(
        self,
        handle: int,
        series: Sequence[tuple[str, Sequence[float], Sequence[int]]],
        timestamp: int,
    ) -> None:
        """Metric series, sent with ``log_batch`` in batches of 1,000, never a call per point."""
        from mlflow.entities import Metric

        metrics = [
            Metric(key, float(v), timestamp, int(s))
            for key, values, steps in series
            for s, v in zip(steps, values, strict=True)
        ]
        for start in range(0, len(metrics), _BATCH):
            self._client.log_batch(self.run_ids[handle], metrics=metrics[start : start + _BATCH])

    def trial(self, handle: int, record: dict[str, Any], timestamp: int) -> None:
        child = next(self._own_handles)
        self.child(child, handle, record["name"])
        self.params(child, record["params"])
        if record["error"] is None:
            curves = record["curves"].items()
            self.points(child, [(k, v, range(len(v))) for k, v in curves], timestamp)
            self.metrics(child, record["metrics"], 0, timestamp)
        self.end(child, "FINISHED" if record["error"] is None else "FAILED", record["error"])

    def model(self, handle: int, model_file: str, example: Any, artifact_path: str) -> None:
        _log_linear_model(
            self._client, self.run_ids[handle], Path(model_file), example, artifact_path
        )

    def artifact(self, handle: int, path: str, artifact_path: str | None) -> None:
        self._client.log_artifact(self.run_ids[handle], path, artifact_path)

    def end(self, handle: int, status: str, error: str | None) -> None:
        run_id = self.run_ids[handle]
        if error is not None:
            with contextlib.suppress(Exception):  # the status matters more than the tag
                self._client.set_tag(run_id, "cifarlab.error", error[:_ERROR_TAG_CHARS])
        self._client.set_terminated(run_id, status)
        self.open_runs.remove(handle)

    def end_open_runs(self, status: str, error: str) -> None:
        """Best effort, newest first: the worker is stopping on a failure."""
        for handle in reversed(list(self.open_runs)):
            with contextlib.suppress(Exception):
                self.end(handle, status, error)


def _serve(fd: int, uri: str) -> None:
    """The tracking worker's loop: carry out messages until told to close or the stage is gone."""
    import signal
    from multiprocessing.connection import Connection

    # A Ctrl-C or SIGTERM meant for the stage reaches its whole process group: the stage ends
    # the runs KILLED through this worker, which must live on to do it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    connection = Connection(fd)
    recorder: _Recorder | None = None
    failed = False
    while True:
        try:
            kind, *args = connection.recv()
        except EOFError:  # the stage process died without closing
            if recorder is not None:
                recorder.end_open_runs("KILLED", "the stage process exited without ending its run")
            return
        if kind in ("close", "run_id"):
            run_ids = recorder.run_ids if recorder is not None else {}
            if kind == "close" and recorder is not None and recorder.open_runs:
                recorder.end_open_runs("FAILED", "the stage closed its tracking before its run")
            connection.send(("run_ids", dict(run_ids)))
            if kind == "close":
                return
            continue
        if failed:
            continue  # the stage hears of the failure and ends its block
        try:
            if recorder is None:
                recorder = _Recorder(uri)
            getattr(recorder, kind)(*args)
        except Exception as exc:
            failed = True
            message = f"MLflow tracking failed ({kind}): {type(exc).__name__}: {exc}"
            if recorder is not None:
                recorder.end_open_runs("FAILED", message)
            connection.send(("error", message))


def _log_linear_model(
    client: Any, run_id: str, model_file: Path, example: Any, artifact_path: str
) -> None:
    """The pyfunc model of :meth:`Run.log_linear_model`."""
    from importlib.metadata import version

    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    import cifarlab

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, example.shape[1]))]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,))]),
    )
    with tempfile.TemporaryDirectory(prefix="cifarlab-model-") as tmp:
        code = Path(tmp) / "code" / "cifarlab"
        shutil.copytree(
            Path(cifarlab.__file__).parent,
            code,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"),
        )
        model_dir = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(model_dir),
            loader_module="cifarlab.serving",
            data_path=str(model_file),
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            # Explicit, so that MLflow does not load the model in a subprocess to infer them.
            pip_requirements=[f"{p}=={version(p)}" for p in ("mlflow", "numpy", "pandas")],
        )
        client.log_artifacts(run_id, str(model_dir), artifact_path)


def _prepare_model_logging() -> None:
    """Do now, while the stage computes, the slow one-off part of MLflow's first model save.

    Saving a model makes MLflow check its pip requirements against the installed packages,
    which maps every installed distribution to its modules (~0.8 s, cached for the process).
    The mapping is MLflow's private helper: if a later MLflow lacks it, the save pays the cost.
    """
    import mlflow.pyfunc  # noqa: F401

    with contextlib.suppress(ImportError, AttributeError):
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()


def _experiment_id(client: Any, name: str) -> str:
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


def runs_tagged(key: str, value: str) -> list[dict[str, Any]]:
    """Every run, in any experiment of the store, whose tag ``key`` equals ``value``."""
    client = _open_store(tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    escaped = value.replace("'", "\\'")
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{key}` = '{escaped}'", max_results=5000
    )
    return [_describe(run) for run in runs]


def run_description(run_id: str) -> dict[str, Any]:
    return _describe(_open_store(tracking_uri()).get_run(run_id))


def _describe(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "tags": dict(run.data.tags),
        "start_time": run.info.start_time,
    }


if __name__ == "__main__":  # the tracking worker: python -m cifarlab.tracking FD URI
    import sys

    _serve(int(sys.argv[1]), sys.argv[2])
    # Everything is stored (each MLflow call above returned after storing): skip the
    # interpreter's shutdown, whose MLflow and SQLAlchemy exit handlers take ~0.7 s that the
    # stage would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
