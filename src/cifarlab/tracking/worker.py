"""The tracking worker: ``python -m cifarlab.tracking.worker FD``, started by ``stage_run``.

It reads the stage's messages (``cifarlab.tracking.messages``) from the socket ``FD`` and carries
them out against the MLflow store whose URI the stage put in the environment
(``WORKER_URI_VARIABLE``), in order, until the stage closes its tracking.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cifarlab.lineage import workspace_fingerprint
from cifarlab.process import identity
from cifarlab.tracking import store
from cifarlab.tracking.dashboard import prepare_experiment
from cifarlab.tracking.messages import WORKER_URI_VARIABLE, Kind
from cifarlab.tracking.models import find_linear_model, log_linear_model, prepare_model_logging
from cifarlab.tracking.naming import PIPELINE_TAG

# MLflow's own limit on metrics per log_batch call.
_BATCH = 1000
# Longest error message kept as the `cifarlab.error` tag of a failed run.
_ERROR_TAG_CHARS = 4000


class _Recorder:
    """Carries out the stage's messages against an MLflow client (in the tracking worker)."""

    def __init__(self, uri: str) -> None:
        self._client = store.open_store(uri, check=False)
        self.run_ids: dict[int, str] = {}
        self._model_ids: dict[int, str] = {}  # handle -> the LoggedModel it logged
        self._experiments: dict[str, str] = {}  # name -> id, prepared once
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
        opening: dict[str, Any],
    ) -> None:
        tags = {
            "cifarlab.stage": stage,
            PIPELINE_TAG: opening["pipeline_run"],
            # The stage's process (this worker's parent), for sweep.
            store.HOST_TAG: socket.gethostname(),
            store.PROCESS_TAG: identity(os.getppid()),
            "mlflow.source.git.commit": store.git_commit(Path.cwd()),
            "mlflow.source.name": f"stages/{stage}.py",
        }
        if data_md5:
            tags["cifarlab.data_md5"] = data_md5
        if exp_name:
            tags["dvc.exp_name"] = exp_name
        if experiment not in self._experiments:
            self._experiments[experiment] = prepare_experiment(
                self._client, experiment, best_effort=True
            )
        self._create(
            handle, self._experiments[experiment], opening["run_name"], tags, opening["start_ms"]
        )
        self.params(handle, params)
        if opening["dataset"]:
            self._log_dataset(handle, opening["dataset"])

    def _log_dataset(self, handle: int, description: dict[str, Any]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        fields = ("name", "digest", "source_type", "source", "profile")
        dataset = Dataset(**{key: description[key] for key in fields})
        context = InputTag("mlflow.data.context", description["context"])
        self._client.log_inputs(self.run_ids[handle], [DatasetInput(dataset, [context])])

    def after_open(self, handle: int, stage: str) -> None:
        """What can wait until the stage computes: the DVC stage fingerprint (it hashes the
        stage's inputs, hundreds of MB) and the sweep of runs left by dead processes."""
        if Path("dvc.yaml").is_file():
            self.tags(handle, {"dvc.stage_hash": workspace_fingerprint(stage)})
        store.sweep(self._client, sorted(set(self._experiment_ids.values())))

    def prepare_model(self) -> None:
        prepare_model_logging()

    def child(self, handle: int, parent: int, run_name: str, start_ms: int) -> None:
        if parent not in self._inherited_tags:
            parent_tags = self._client.get_run(self.run_ids[parent]).data.tags
            self._inherited_tags[parent] = {
                k: v for k, v in parent_tags.items() if k.startswith("cifarlab.")
            }
        tags = {"mlflow.parentRunId": self.run_ids[parent], **self._inherited_tags[parent]}
        self._create(handle, self._experiment_ids[parent], run_name, tags, start_ms)

    def _create(
        self, handle: int, experiment_id: str, name: str, tags: dict[str, str], start_ms: int
    ) -> None:
        run = self._client.create_run(experiment_id, start_time=start_ms, run_name=name, tags=tags)
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
        """Single values; after the run logged a model, linked to it (its Models tab row)."""
        if handle not in self._model_ids:
            self.points(handle, [(k, [v], [step]) for k, v in metrics.items()], timestamp)
            return
        from mlflow.entities import Metric

        model_id = self._model_ids[handle]
        items = [
            Metric(k, float(v), timestamp, step, model_id=model_id) for k, v in metrics.items()
        ]
        for start in range(0, len(items), _BATCH):
            self._client.log_batch(self.run_ids[handle], metrics=items[start : start + _BATCH])

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
        # The trial ran for its `seconds` until the stage heard of it.
        start = timestamp - int(record.get("seconds", 0.0) * 1000)
        self.child(child, handle, record["name"], start)
        self.params(child, record["params"])
        self.tags(child, record["tags"])
        curves = [(k, v, range(len(v))) for k, v in record["curves"].items() if len(v)]
        self.points(child, curves, timestamp)
        if record["metrics"]:
            self.metrics(child, record["metrics"], 0, timestamp)
        self.end(child, record["status"], record["error"], timestamp)

    def model(
        self,
        handle: int,
        model_file: str,
        name: str,
        example: Any,
        artifact_path: str,
        registered_model_name: str | None,
    ) -> None:
        with _named(model_file, name) as path:
            self._model_ids[handle] = log_linear_model(
                self._client,
                self.run_ids[handle],
                path,
                example,
                artifact_path,
                registered_model_name,
            )

    def use_model(self, handle: int, model_file: str) -> None:
        from mlflow.entities import LoggedModelInput

        found = find_linear_model(self._client, self._experiment_ids[handle], model_file)
        if found is not None:
            self._client.log_inputs(self.run_ids[handle], models=[LoggedModelInput(found)])
            self._model_ids[handle] = found

    def artifact(self, handle: int, path: str, name: str, artifact_path: str | None) -> None:
        with _named(path, name) as named:
            self._client.log_artifact(self.run_ids[handle], str(named), artifact_path)

    def end(self, handle: int, status: str, error: str | None, end_ms: int | None = None) -> None:
        run_id = self.run_ids[handle]
        if error is not None:
            with contextlib.suppress(Exception):  # the status matters more than the tag
                self._client.set_tag(run_id, "cifarlab.error", error[:_ERROR_TAG_CHARS])
        self._client.set_terminated(run_id, status, end_time=end_ms)
        self.open_runs.remove(handle)

    def end_open_runs(self, status: str, error: str) -> None:
        """Best effort, newest first: the worker is stopping on a failure."""
        for handle in reversed(list(self.open_runs)):
            with contextlib.suppress(Exception):
                self.end(handle, status, error)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters: a store may answer with
    a whole HTML page, which belongs in no error line."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()
    return text if len(text) <= limit else f"{text[:limit]}…"


@contextlib.contextmanager
def _named(path: str, name: str) -> Any:
    """``path`` as a file called ``name`` (MLflow logs a file under its own name): a hard link
    in a temporary folder when the names differ (a staged output), a copy across devices."""
    if Path(path).name == name:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="cifarlab-artifact-") as tmp:
        named = Path(tmp) / name
        try:
            os.link(path, named)
        except OSError:
            shutil.copyfile(path, named)
        yield named


def _handlers(recorder: _Recorder) -> dict[Kind, Callable[..., None]]:
    """The recorder's method for each request kind but RUN_ID and CLOSE (``_serve`` answers
    those itself)."""
    return {
        Kind.OPEN: recorder.open,
        Kind.CHILD: recorder.child,
        Kind.PARAMS: recorder.params,
        Kind.TAGS: recorder.tags,
        Kind.METRICS: recorder.metrics,
        Kind.POINTS: recorder.points,
        Kind.TRIAL: recorder.trial,
        Kind.MODEL: recorder.model,
        Kind.ARTIFACT: recorder.artifact,
        Kind.USE_MODEL: recorder.use_model,
        Kind.END: recorder.end,
        Kind.AFTER_OPEN: recorder.after_open,
        Kind.PREPARE_MODEL: recorder.prepare_model,
    }


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
    handlers: dict[Kind, Callable[..., None]] = {}
    failed = False
    while True:
        try:
            kind, *args = connection.recv()
        except EOFError:  # the stage process died without closing
            if recorder is not None:
                recorder.end_open_runs("KILLED", "the stage process exited without ending its run")
            return
        if kind in (Kind.CLOSE, Kind.RUN_ID):
            run_ids = recorder.run_ids if recorder is not None else {}
            if kind is Kind.CLOSE and recorder is not None and recorder.open_runs:
                recorder.end_open_runs("FAILED", "the stage closed its tracking before its run")
            connection.send((Kind.RUN_IDS, dict(run_ids)))
            if kind is Kind.CLOSE:
                return
            continue
        if failed:
            continue  # the stage hears of the failure and ends its block
        try:
            if recorder is None:
                # Inside the try: a store that cannot be opened fails like any request.
                recorder = _Recorder(uri)
                handlers = _handlers(recorder)
            handlers[kind](*args)
        except Exception as exc:
            failed = True
            message = f"MLflow tracking failed ({kind.value}): {_one_line(exc)}"
            if recorder is not None:
                recorder.end_open_runs("FAILED", message)
            connection.send((Kind.ERROR, message))


def _quiet_logging() -> None:
    """Keep MLflow's INFO chatter (creating the store's tables, alembic's migrations, checking
    the model's input example) out of the stage's output; its warnings and errors still show.
    Before MLflow is imported: it reads ``MLFLOW_LOGGING_LEVEL`` once, on import."""
    import logging

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    level = getattr(logging, os.environ["MLFLOW_LOGGING_LEVEL"].upper(), logging.WARNING)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(level)


if __name__ == "__main__":
    import sys

    _quiet_logging()
    _serve(int(sys.argv[1]), os.environ[WORKER_URI_VARIABLE])
    # Everything is stored (each MLflow call above returned after storing): skip the
    # interpreter's shutdown, whose MLflow and SQLAlchemy exit handlers take ~0.7 s that the
    # stage would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
