"""MLflow tracking for the pipeline stages: the only module of cifarlab that imports mlflow.

One MLflow run per stage execution, tagged with the stage, the git commit and the data md5.
Cross-validation and tuning open one child run per candidate. Metric series (per-step loss) are
sent with ``log_batch`` in chunks, never one request per step. The final linear model is logged
as an MLflow pyfunc model (see :meth:`Run.log_linear_model`).
"""

from __future__ import annotations

import contextlib
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
from cifarlab.errors import ConfigError
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


def _open_store(uri: str) -> Any:
    """A client for ``uri``, after checking the store answers (seconds, not minutes of retries).

    A SQLite store is shared by every pipeline of the project (``dvc exp run`` queues run them
    side by side): its first creation is serialised by a file lock, it runs in WAL mode (readers
    never block the writer) and each connection waits up to 60 s for a busy database instead of
    failing with "database is locked".
    """
    from mlflow import MlflowClient

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


class Run:
    """A live MLflow run (a stage's run or one of its children)."""

    def __init__(self, client: Any, run_id: str, experiment_id: str) -> None:
        self._client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._inherited_tags: dict[str, str] | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self._client.log_batch(self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=batch)

    def log_series(
        self, key: str, values: Sequence[float], steps: Sequence[int] | None = None
    ) -> None:
        """Log a whole metric series (e.g. the loss at every SGD step) in batches of 1,000."""
        steps = range(len(values)) if steps is None else steps
        self._log_points([(key, values, steps)])

    def log_curves(self, curves: Mapping[str, Sequence[float]]) -> None:
        """Several series at once, each value at its index as step, in shared batches of 1,000
        (the loss per step and the accuracies per epoch of a training run)."""
        self._log_points([(key, values, range(len(values))) for key, values in curves.items()])

    def _log_points(self, series: Sequence[tuple[str, Sequence[float], Sequence[int]]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(v), now, int(s))
            for key, values, steps in series
            for s, v in zip(steps, values, strict=True)
        ]
        for start in range(0, len(metrics), _BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])

    @contextlib.contextmanager
    def epoch_logger(self) -> Iterator[Any]:
        """Yield an ``on_epoch_end(epoch, step_losses, train_acc, val_acc)`` callback (the one of
        ``LinearClassifier.fit``) that logs, as training runs, the ``loss`` of every SGD step
        and the ``train_accuracy`` / ``val_accuracy`` of every epoch: one ``log_batch`` per
        epoch, so the curves grow live in the UI and a run that fails keeps its finished epochs.

        Storing is synchronous, in this process: measured against MLflow's asynchronous queue
        (ending the run then waits up to 1 s for its thread), a logging thread (it competes with
        the training for the GIL) and a logging child process (its start-up and the memory
        traffic slow the memory-bound training), it costs the least (benchmarks/linear.py).
        """
        from mlflow.entities import Metric

        next_step = 0

        def on_epoch_end(epoch: int, step_losses: Any, train_acc: float, val_acc: Any) -> None:
            nonlocal next_step
            now = int(time.time() * 1000)
            metrics = [
                Metric("loss", float(v), now, step)
                for step, v in enumerate(step_losses, start=next_step)
            ]
            next_step += len(step_losses)
            metrics.append(Metric("train_accuracy", float(train_acc), now, epoch))
            if val_acc is not None:
                metrics.append(Metric("val_accuracy", float(val_acc), now, epoch))
            for start in range(0, len(metrics), _BATCH):
                self._client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])

        yield on_epoch_end

    def log_trial(self, trial: Any) -> None:
        """One search trial (a ``cifarlab.search.TrialResult``) as a child run: its
        hyperparameters, loss per step, train / val accuracy per epoch and final figures. A
        diverged trial's run ends FAILED with the message as its ``cifarlab.error`` tag."""
        run = self._create_child(trial.name)
        run.log_params({"trial": trial.index, **trial.hyperparameters})
        if trial.error is None:
            run.log_curves(
                {
                    "loss": trial.loss_history,
                    "train_accuracy": trial.train_accuracy_history,
                    "val_accuracy": trial.val_accuracy_history,
                }
            )
            run.log_metrics(
                {
                    "best_val_accuracy": trial.val_accuracy,
                    "best_train_accuracy": trial.train_accuracy,
                    "best_epoch": trial.best_epoch,
                    "fit_seconds": trial.seconds,
                }
            )
            self._client.set_terminated(run.run_id, "FINISHED")
        else:
            run.set_tags({"cifarlab.error": trial.error[:_ERROR_TAG_CHARS]})
            self._client.set_terminated(run.run_id, "FAILED")

    def log_linear_model(
        self,
        model_file: str | os.PathLike[str],
        input_example: Any,
        artifact_path: str = "model",
    ) -> None:
        """Log a linear model as an MLflow pyfunc model under ``artifact_path``.

        model_file : the ``.npz`` of ``cifarlab.pipeline.save_linear_model``.
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
        model_file = Path(model_file).resolve()
        if not model_file.is_file():
            raise ConfigError(f"{model_file} not found: save the model before logging it")
        _log_linear_model(self._client, self.run_id, model_file, example, artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._client.log_figure(self.run_id, figure, artifact_file)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    @contextlib.contextmanager
    def child(self, run_name: str, params: Mapping[str, Any] | None = None) -> Iterator[Run]:
        """A nested run (one candidate of a search), shown under this run in the UI."""
        child = self._create_child(run_name)
        with _terminate_on_exit(self._client, child.run_id):
            if params:
                child.log_params(params)
            yield child

    def _create_child(self, run_name: str) -> Run:
        if self._inherited_tags is None:
            parent_tags = self._client.get_run(self.run_id).data.tags
            self._inherited_tags = {
                k: v for k, v in parent_tags.items() if k.startswith("cifarlab.")
            }
        tags = {"mlflow.parentRunId": self.run_id, **self._inherited_tags}
        run = self._client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        return Run(self._client, run.info.run_id, self.experiment_id)


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


@contextlib.contextmanager
def _terminate_on_exit(client: Any, run_id: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the FAILED status matters more than the tag
            message = f"{type(exc).__name__}: {exc}"
            client.set_tag(run_id, "cifarlab.error", message[:_ERROR_TAG_CHARS])
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


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


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    *,
    experiment: str,
    data_md5: str | None = None,
) -> Iterator[Run]:
    """Open the MLflow run of one stage execution; end it FINISHED, FAILED or KILLED.

    params : the stage's sections of params.yaml, logged flattened (``knn.k_choices`` …).
    """
    if not experiment:
        raise ConfigError("tracking.experiment must be a non-empty string")
    client = _open_store(tracking_uri())
    experiment_id = _experiment_id(client, experiment)
    tags = {
        "cifarlab.stage": stage,
        "mlflow.source.git.commit": _git_commit(Path.cwd()),
        "mlflow.source.name": f"stages/{stage}.py",
    }
    if Path("dvc.yaml").is_file():
        tags["dvc.stage_hash"] = workspace_fingerprint(stage)
    if data_md5:
        tags["cifarlab.data_md5"] = data_md5
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    run = client.create_run(experiment_id, run_name=stage, tags=tags)
    handle = Run(client, run.info.run_id, experiment_id)
    with _terminate_on_exit(client, handle.run_id):
        handle.log_params(params)
        yield handle


def runs_tagged(key: str, value: str) -> list[dict[str, Any]]:
    """Every run, in any experiment of the store, whose tag ``key`` equals ``value``."""
    client = _open_store(tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    escaped = value.replace("'", "\\'")
    runs = client.search_runs(experiments, filter_string=f"tags.`{key}` = '{escaped}'",
                              max_results=5000)
    return [_describe(run) for run in runs]


def run_description(run_id: str) -> dict[str, Any]:
    return _describe(_open_store(tracking_uri()).get_run(run_id))


def _describe(run: Any) -> dict[str, Any]:
    return {"run_id": run.info.run_id, "status": run.info.status, "tags": dict(run.data.tags),
            "start_time": run.info.start_time}

