"""The stage's side of tracking: ``stage_run`` and the ``Run`` it yields, which send messages to
the stage's tracking worker process and return at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cifarlab import io
from cifarlab.errors import ConfigError, TrackingError
from cifarlab.tracking.connectivity import check_tracking_uri
from cifarlab.tracking.messages import WORKER_URI_VARIABLE, Kind
from cifarlab.tracking.naming import dataset_description, pipeline_run, run_name
from cifarlab.tracking.store import probe_sqlite, sqlite_path, tracking_uri

# How long a stage waits, at its end, for its tracking worker to store what it was sent.
_CLOSE_TIMEOUT_S = 300
#: The name the linear model is registered under in the MLflow model registry (one version per
#: svm_train run that logs it).
REGISTERED_MODEL_NAME = "cifarlab-linear"


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
        self._worker.send(Kind.PARAMS, self._handle, flatten(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._worker.send(Kind.TAGS, self._handle, {k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        self._worker.send(Kind.METRICS, self._handle, values, step, _now_ms())

    def log_series(
        self, key: str, values: Sequence[float], steps: Sequence[int] | None = None
    ) -> None:
        """Log a whole metric series (e.g. the accuracy of every fold), each value at its step
        (default: its index)."""
        steps = range(len(values)) if steps is None else list(steps)
        self._worker.send(Kind.POINTS, self._handle, [(key, values, steps)], _now_ms())

    def log_curves(self, curves: Mapping[str, Sequence[float]]) -> None:
        """Several series at once, each value at its index as step."""
        series = [(key, values, range(len(values))) for key, values in curves.items()]
        self._worker.send(Kind.POINTS, self._handle, series, _now_ms())

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
            self._worker.send(Kind.POINTS, self._handle, series, _now_ms())

        yield on_epoch_end

    def log_trial(self, trial: Any) -> None:
        """One ended search trial (a ``cifarlab.linear.search.TrialRecord``) as a child run:
        its hyperparameters, loss per step, train / val accuracy per epoch and final figures,
        tagged with its Optuna state (``cifarlab.trial_state``), number and worker.

        COMPLETE ends the run FINISHED; PRUNED FINISHED too (pruning is the search working, not
        a failure: the tag says it); FAIL with an error (it diverged) FAILED with the message as
        its ``cifarlab.error`` tag; FAIL without one (its worker died) KILLED."""
        failed = trial.state == "FAIL"
        record = {
            "name": trial.name,
            "params": flatten({"trial": trial.number, **trial.hyperparameters}),
            "tags": {
                "cifarlab.trial_state": trial.state,
                "cifarlab.trial_number": str(trial.number),
                **({"cifarlab.worker": trial.worker} if trial.worker else {}),
                **({"cifarlab.retry_of": str(trial.retry_of)} if trial.retry_of is not None
                   else {}),
            },  # fmt: skip
            "status": ("FAILED" if trial.error else "KILLED") if failed else "FINISHED",
            "error": trial.error,
            "seconds": float(trial.seconds),
            "curves": {
                "loss": trial.loss_history,
                "train_accuracy": trial.train_accuracy_history,
                "val_accuracy": trial.val_accuracy_history,
            },
            "metrics": {},
        }
        if not failed:
            record["metrics"] = {
                "best_val_accuracy": trial.val_accuracy,
                "best_train_accuracy": trial.train_accuracy,
                "best_epoch": float(trial.best_epoch),
                "fit_seconds": float(trial.seconds),
                "epochs_run": float(len(trial.val_accuracy_history)),
            }
        self._worker.send(Kind.TRIAL, self._handle, record, _now_ms())

    def log_linear_model(
        self,
        model_file: str | os.PathLike[str],
        input_example: Any,
        artifact_path: str = "model",
        registered_model_name: str | None = REGISTERED_MODEL_NAME,
    ) -> None:
        """Log a linear model with MLflow's model API as a pyfunc model named ``artifact_path``:
        a LoggedModel of this run (the UI's Models tab), registered as a new version of
        ``registered_model_name`` (None: not registered). The metrics this run logs with
        ``log_metrics`` afterwards are linked to the model.

        model_file : the ``.npz`` of ``cifarlab.linear.classifier.save_linear_model``, written
            by this stage (the worker reads it before the stage's outputs are renamed into
            place).
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
        file, name = _existing(model_file)
        self._worker.send(
            Kind.MODEL, self._handle, file, name, example, artifact_path, registered_model_name
        )

    def use_model(self, model_file: str | os.PathLike[str]) -> None:
        """This run evaluates the linear model saved in ``model_file``: when a run of this store
        logged it (``log_linear_model``, found by the file's md5), it becomes this run's model
        input and the metrics this run logs afterwards are linked to it (its row in the
        Models tab shows them). A model never logged here is no error: nothing is linked."""
        file, _ = _existing(model_file)
        self._worker.send(Kind.USE_MODEL, self._handle, file)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Store the file at ``path`` (an output this stage wrote, or any file that stays
        unchanged until the run ends) with the run, under its name."""
        file, name = _existing(path)
        self._worker.send(Kind.ARTIFACT, self._handle, file, name, artifact_path)

    @contextlib.contextmanager
    def child(self, run_name: str, params: Mapping[str, Any] | None = None) -> Iterator[Run]:
        """A nested run (one candidate of a search), shown under this run in the UI."""
        child = self._worker.new_run(Kind.CHILD, self._handle, run_name, _now_ms())
        with _ending(child):
            if params:
                child.log_params(params)
            yield child


def _now_ms() -> int:
    return int(time.time() * 1000)


def _existing(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(the file to read now, the name to log it under): an output of this stage is still a
    temporary file until the stage has succeeded (``cifarlab.io.staged_outputs``)."""
    current = io.current_path(path).resolve()
    if not current.is_file():
        raise ConfigError(f"{Path(path).resolve()} not found: write the file before logging it")
    return str(current), Path(path).name


class _Worker:
    """The stage's end of the connection to its tracking worker process."""

    def __init__(self, uri: str) -> None:
        import socket
        import sys
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The worker runs this very copy of cifarlab, installed or not.
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        # The URI goes in the environment, which only this user can read, never in argv (`ps`
        # shows every user the command line, and a URI may hold credentials).
        env[WORKER_URI_VARIABLE] = uri
        command = [sys.executable, "-m", "cifarlab.tracking.worker", str(theirs.fileno())]
        # The worker ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group; the
        # stage ends its runs through the worker, which must live on to do it). It starts with
        # both blocked, so one that arrives while it imports MLflow waits instead of killing
        # it with a traceback; the stage gets its own after the start.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        with theirs:
            try:
                self._process = subprocess.Popen(
                    command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env
                )
            except OSError as exc:
                ours.close()
                raise TrackingError(f"cannot start the MLflow tracking worker: {exc}") from None
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self._connection = Connection(ours.detach())
        self._handles = 0
        self._run_ids: dict[int, str] = {}
        self._answered = False  # a RUN_IDS reply has come since the last run_id() request
        self._closed = False
        self.error: str | None = None

    def send(self, kind: Kind, *args: Any) -> None:
        """Send one message; raise TrackingError if the worker has failed."""
        self._take_replies(wait=False)
        if self.error is not None:
            raise TrackingError(self.error)
        try:
            self._connection.send((kind, *args))
        except OSError:
            raise TrackingError(self._exit_message()) from None

    def new_run(self, kind: Kind, *args: Any) -> Run:
        """Ask for a new run (``Kind.OPEN`` or ``Kind.CHILD``) under the next handle."""
        self._handles += 1
        self.send(kind, self._handles, *args)
        return Run(self, self._handles)

    def run_id(self, handle: int) -> str:
        """The run's id, once the worker has carried out every earlier message (so a failure
        of any of them is raised here); after the stage's tracking closed, the id it had."""
        if self._closed:
            if handle in self._run_ids:
                return self._run_ids[handle]
            raise TrackingError(self.error or "the MLflow run was never created")
        self.send(Kind.RUN_ID, handle)
        # The worker answers in order: the reply to this request is the next RUN_IDS.
        while self._take_replies(wait=True) and not self._answered:
            pass
        self._answered = False
        if self.error is not None:
            raise TrackingError(self.error)
        run_id = self._run_ids.get(handle)
        if run_id is None:
            raise TrackingError(self.error or "the MLflow run was never created")
        return run_id

    def close(self) -> None:
        """Wait until the worker has stored everything and exited (the stage has ended its
        runs); keep the worker's error, if any, in ``error``."""
        self._closed = True
        # An interrupted stage ends its runs KILLED through the worker, and more signals often
        # follow the first (`dvc` forwards one, then its own death sends another): hold them
        # off while the worker finishes, for at most _CLOSE_TIMEOUT_S, then stop it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            with contextlib.suppress(OSError):  # a worker already gone: its exit code tells
                self._connection.send((Kind.CLOSE,))
            deadline = time.monotonic() + _CLOSE_TIMEOUT_S
            while time.monotonic() < deadline:
                if self._connection.poll(0.5) and not self._take_replies(wait=True):
                    break
                if self._process.poll() is not None and not self._connection.poll():
                    break
            else:
                self._process.kill()
                self.error = self.error or (
                    f"the MLflow tracking worker did not finish within {_CLOSE_TIMEOUT_S} s"
                )
        finally:
            self._process.wait()
            self._connection.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if self._process.returncode != 0 and self.error is None:
            self.error = self._exit_message()

    def _take_replies(self, wait: bool) -> bool:
        """Read the worker's replies (run ids, its error); False once it has closed."""
        try:
            while wait or self._connection.poll():
                wait = False
                kind, payload = self._connection.recv()
                if kind is Kind.RUN_IDS:
                    self._run_ids.update(payload)
                    self._answered = True
                elif kind is Kind.ERROR:
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
            run._worker.send(Kind.END, run._handle, "KILLED", None, _now_ms())
        raise
    except BaseException as exc:
        with contextlib.suppress(TrackingError):
            error = f"{type(exc).__name__}: {exc}"
            run._worker.send(Kind.END, run._handle, "FAILED", error, _now_ms())
        raise
    run._worker.send(Kind.END, run._handle, "FINISHED", None, _now_ms())


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    *,
    experiment: str,
    data_md5: str | None = None,
    will_log_model: bool = False,
    label: str | None = None,
    dataset: Mapping[str, Any] | None = None,
) -> Iterator[Run]:
    """Open the MLflow run of one stage execution; end it FINISHED, FAILED or KILLED.

    params : the stage's inputs: its sections of params.yaml and the choices it reads, logged
        flattened as params (``knn.k_choices``, ``svm.loss`` …). Its outputs go to
        ``Run.log_metrics`` (numbers) or ``Run.set_tags``.
    data_md5 : the archive's md5: a ``cifarlab.data_md5`` tag and the run's dataset input
        (``CIFAR-10``, digest = md5, source = ``data.url``, profile = the split sizes of
        ``data/prepared/meta.json`` once prepared; ``dataset`` overrides those fields).
    label : the model part of the run's name (default: from ``params``, see
        ``cifarlab.tracking.naming.run_name``): ``"svm_train · hinge · <DVC experiment>"``.
    will_log_model : the stage will call ``log_linear_model``: the worker then does MLflow's
        one-off preparation of model saving while the stage computes.

    Before the block runs, the store has proved it can write: a SQLite file took a write (in a
    rolled-back transaction); any other store answered (checked over plain HTTP within seconds)
    and the tracking worker has created the run and logged its params. So a store that refuses
    this client costs seconds, never the stage's work. Then the worker
    ends, in the background, the runs of this host whose processes are gone
    (``cifarlab.tracking.store.sweep``).

    The run starts when this block is entered and ends when it is left (times taken here, not
    when the worker gets to them); it is tagged ``cifarlab.pipeline_run``, shared by the stages
    of one ``dvc repro`` / ``dvc exp run``.
    """
    start_ms = _now_ms()
    if not experiment:
        raise ConfigError("tracking.experiment must be a non-empty string")
    flat = flatten(params)
    exp_name = os.environ.get("DVC_EXP_NAME")
    description = None
    if data_md5 or dataset:
        description = dataset_description(data_md5 or "", stage, (dataset or {}).get("source"))
        description.update({k: str(v) for k, v in (dataset or {}).items() if k != "source"})
    opening = {
        "run_name": run_name(stage, flat, exp_name, label),
        "start_ms": start_ms,
        "pipeline_run": pipeline_run(),
        "dataset": description,
    }
    uri = tracking_uri()
    check_tracking_uri(uri, experiment=experiment)
    # A SQLite store proves here in milliseconds that it can write; any other store proves it
    # by the worker creating the run, which the block waits for (seconds: MLflow's import).
    db = sqlite_path(uri)
    if db is not None:
        probe_sqlite(db)
    worker = _Worker(uri)
    try:
        run = worker.new_run(
            Kind.OPEN,
            stage,
            flat,
            experiment,
            data_md5,
            exp_name,
            opening,
        )
        with _ending(run):
            if db is None:
                run.run_id  # noqa: B018  (waits for the worker: the run exists, the store writes)
            worker.send(Kind.AFTER_OPEN, run._handle, stage)
            if will_log_model:
                worker.send(Kind.PREPARE_MODEL)
            yield run
    except BaseException:
        worker.close()  # the block's error is the one to raise
        raise
    worker.close()
    if worker.error is not None:
        raise TrackingError(worker.error)
