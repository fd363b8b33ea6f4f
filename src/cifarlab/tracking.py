"""MLflow tracking for the pipeline stages: the only module of cifarlab that imports mlflow.

One MLflow run per stage execution, tagged with the stage, the git commit and the data md5.
Cross-validation and tuning open one child run per candidate. Metric series (per-step loss) are
sent with ``log_batch`` in chunks, never one request per step.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cifarlab.errors import ConfigError

# MLflow's own limit on metrics per log_batch call.
_BATCH = 1000
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
        from mlflow.entities import Metric

        steps = range(len(values)) if steps is None else steps
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, int(s)) for s, v in zip(steps, values, strict=True)]
        for start in range(0, len(metrics), _BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._client.log_figure(self.run_id, figure, artifact_file)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    @contextlib.contextmanager
    def child(self, run_name: str, params: Mapping[str, Any] | None = None) -> Iterator[Run]:
        """A nested run (one candidate of a search), shown under this run in the UI."""
        tags = {"mlflow.parentRunId": self.run_id}
        parent_tags = self._client.get_run(self.run_id).data.tags
        tags.update({k: v for k, v in parent_tags.items() if k.startswith("cifarlab.")})
        run = self._client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        child = Run(self._client, run.info.run_id, self.experiment_id)
        with _terminate_on_exit(self._client, child.run_id):
            if params:
                child.log_params(params)
            yield child


@contextlib.contextmanager
def _terminate_on_exit(client: Any, run_id: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException:
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
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri())
    experiment_id = _experiment_id(client, experiment)
    tags = {
        "cifarlab.stage": stage,
        "mlflow.source.git.commit": _git_commit(Path.cwd()),
        "mlflow.source.name": f"stages/{stage}.py",
    }
    if data_md5:
        tags["cifarlab.data_md5"] = data_md5
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    run = client.create_run(experiment_id, run_name=stage, tags=tags)
    handle = Run(client, run.info.run_id, experiment_id)
    with _terminate_on_exit(client, handle.run_id):
        handle.log_params(params)
        yield handle
