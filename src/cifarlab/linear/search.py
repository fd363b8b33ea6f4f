"""Hyperparameter search of the linear classifier (stage ``svm_tune``), on Optuna.

What is searched: learning rate and regularization strength (log scale) and batch size, each
trial a ``LinearClassifier`` trained on the training split and scored on the validation split
after every epoch (the value the pruner sees). ``cifarlab.linear.trials`` lists a search's
trials, :func:`make_objective` trains one,
:func:`linear_search` runs the whole search, and :func:`join_search` lends it a worker from
anywhere that reaches the study's storage (``cifarlab tune join``).

Each trial is seeded by the ``svm`` seed and computes with one BLAS thread wherever it runs
(OpenBLAS results differ in the last bits between thread counts), so its result does not
depend on the worker, the machine's core count or the order in which trials finish.
"""

from __future__ import annotations

import math
import multiprocessing
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cifarlab.errors import CifarlabError, TrainingDiverged
from cifarlab.linear.classifier import LinearClassifier, sgd_config
from cifarlab.linear.sgd import single_blas_thread
from cifarlab.linear.trials import SEARCHED, check_trials, queued_trials, search_space
from cifarlab.process import die_with_parent, start_without_sigint
from cifarlab.shared_arrays import SharedArrays, attach, shared

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from cifarlab.data.prepared import Split

# --------------------------------------------------------------------------- one trial


def make_objective(
    base: Mapping[str, Any],
    space: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
) -> Callable[[optuna.Trial], float]:
    """The objective of a search: ``objective(trial)`` trains ``LinearClassifier(**base,
    **searched)`` on (X, y) and returns the val accuracy of the weights it keeps.

    X : (n_samples, n_features), y : (n_samples,); X_val : (n_val, n_features), y_val : (n_val,).
    After every epoch the trial reports its best val accuracy so far (step = epoch, from 0) and
    stops with ``optuna.TrialPruned`` when the pruner says so. Its curves (``loss`` per SGD step,
    ``train_accuracy`` / ``val_accuracy`` per epoch), ``best_epoch`` and ``seconds`` are kept as
    user attributes, for a pruned trial too.
    """
    import optuna

    def objective(trial: optuna.Trial) -> float:
        searched = {name: _suggest(trial, name, space[name]) for name in SEARCHED}
        config, random_state = sgd_config({**base, **searched})
        curves: dict[str, list[float]] = {"loss": [], "train_accuracy": [], "val_accuracy": []}
        start = time.perf_counter()

        def keep(best_epoch: int) -> None:
            for name, values in curves.items():
                trial.set_user_attr(name, values)
            trial.set_user_attr("best_epoch", best_epoch)
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))

        def on_epoch_end(epoch: int, losses: Any, train_acc: float, val_acc: float) -> None:
            curves["loss"].extend(float(v) for v in losses)
            curves["train_accuracy"].append(float(train_acc))
            curves["val_accuracy"].append(float(val_acc))
            # The best val accuracy the trial has reached so far: a bad epoch (SGD noise at a
            # high learning rate) does not get it pruned.
            trial.report(max(curves["val_accuracy"]), epoch)
            if trial.should_prune():
                keep(epoch)
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        with single_blas_thread():
            model = LinearClassifier(**base, **searched)._fit(
                config, random_state, X, y, X_val, y_val, on_epoch_end=on_epoch_end
            )
        keep(int(model.best_epoch_))
        return float(model.val_accuracy_history_[model.best_epoch_])

    return objective


def _suggest(trial: optuna.Trial, name: str, distribution: Any) -> Any:
    # A queued trial's fixed value is returned as it is; TPE draws the others.
    if hasattr(distribution, "choices"):
        return trial.suggest_categorical(name, distribution.choices)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as the study records it (from an ``optuna.trial.FrozenTrial``).

    number : its number in the study. hyperparameters : learning_rate, reg, batch_size.
    state : "COMPLETE", "PRUNED" or "FAIL". loss_history : (n_steps,);
    train_accuracy_history, val_accuracy_history : (n_epochs,). best_epoch : the epoch whose
    weights it kept (-1 if none). seconds : its training time. error : why it failed (None if
    it did not, or if its worker died). worker : "host:pid" that ran it. retry_of : the trial
    it repeats after that one's worker died, or None.
    """

    number: int
    hyperparameters: dict[str, Any]
    state: str
    loss_history: np.ndarray
    train_accuracy_history: np.ndarray
    val_accuracy_history: np.ndarray
    best_epoch: int
    seconds: float
    error: str | None
    worker: str | None
    retry_of: int | None

    @classmethod
    def from_frozen(cls, trial: Any) -> TrialRecord:
        from cifarlab.tuning.strategies import retry_of

        attrs = trial.user_attrs
        # A trial whose worker died has no curves of its own: what it reported (its best val
        # accuracy so far, per epoch).
        reported = [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
        seconds = attrs.get("seconds")
        if seconds is None and trial.datetime_start and trial.datetime_complete:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        return cls(
            number=trial.number,
            hyperparameters={k: trial.params[k] for k in SEARCHED if k in trial.params},
            state=trial.state.name,
            loss_history=np.asarray(attrs.get("loss", []), dtype=np.float64),
            train_accuracy_history=np.asarray(attrs.get("train_accuracy", []), dtype=np.float64),
            val_accuracy_history=np.asarray(attrs.get("val_accuracy", reported), dtype=np.float64),
            best_epoch=int(attrs.get("best_epoch", -1)),
            seconds=float(seconds or 0.0),
            error=attrs.get("cifarlab.error"),
            worker=attrs.get("cifarlab.worker"),
            retry_of=retry_of(trial),
        )

    @property
    def name(self) -> str:
        h = self.hyperparameters
        if not h:
            return f"trial {self.number}"
        return (f"trial {self.number}: lr={h['learning_rate']:.3g} reg={h['reg']:.3g} "
                f"batch={h['batch_size']}")

    @property
    def val_accuracy(self) -> float:
        """Val accuracy of the kept weights; of the last epoch for a pruned trial; NaN when it
        failed."""
        if self.state == "FAIL" or self.best_epoch < 0:
            return math.nan
        return float(self.val_accuracy_history[self.best_epoch])

    @property
    def train_accuracy(self) -> float:
        if self.state == "FAIL" or self.best_epoch < 0:
            return math.nan
        return float(self.train_accuracy_history[self.best_epoch])


def search_table(records: Sequence[TrialRecord]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per trial (in number order) and the chosen one: the highest val accuracy among
    the COMPLETE trials, ties to the lower number. A search with no complete trial is an
    error."""
    import pandas as pd

    rows = [
        {
            "trial": r.number,
            **{key: r.hyperparameters.get(key) for key in SEARCHED},
            "state": r.state,
            "train_accuracy": r.train_accuracy,
            "val_accuracy": r.val_accuracy,
            "best_epoch": r.best_epoch,
            "epochs_run": len(r.val_accuracy_history),
            "final_loss": float(r.loss_history[-1]) if len(r.loss_history) else math.nan,
        }
        for r in sorted(records, key=lambda r: r.number)
    ]
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    if not complete:
        raise CifarlabError(f"no trial of the search completed ({len(rows)} trials)")
    best = max(complete, key=lambda row: (row["val_accuracy"], -row["trial"]))
    return pd.DataFrame(rows), dict(best)


# --------------------------------------------------------------------------- workers


def _work_on(
    url: str, name: str, data: tuple[np.ndarray, ...], on_trial: Callable[[Any], None] | None
) -> int:
    from cifarlab.tuning import study as studies
    from cifarlab.tuning.storage import open_storage
    from cifarlab.tuning.workers import work

    study, search = studies.load(open_storage(url), name)
    attrs = studies.attrs(study)
    objective = make_objective(attrs["base"], _space(attrs), *data)
    return work(study, search, objective, on_trial)


def _space(attrs: Mapping[str, Any]) -> dict[str, Any]:
    from optuna.distributions import json_to_distribution

    return {name: json_to_distribution(text) for name, text in attrs["space"].items()}


def _local_worker(url: str, name: str, data: SharedArrays) -> None:
    # A local worker computes for its stage only: it dies with it (even SIGKILLed, also while
    # this worker was still importing its modules), and leaves a Ctrl-C to the stage, which
    # stops the workers itself.
    die_with_parent(signal.SIGKILL, parent=multiprocessing.parent_process().pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    single_blas_thread()  # for the life of this worker process
    try:
        _work_on(url, name, attach(data), None)
    except CifarlabError as exc:
        raise SystemExit(f"error: search worker: {exc}") from None


def linear_search(
    train: Split,
    val: Split,
    base: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    n_jobs: int,
    storage_url: str,
    description: Mapping[str, Any],
    on_trial: Callable[[TrialRecord, Any], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], str]:
    """Search ``settings`` (the ``svm_tune`` section) over ``base`` hyperparameters: a new study
    in ``storage_url`` with the trials queued, ``n_jobs`` local worker processes (one BLAS thread
    each) and any worker that joins, until every trial has ended.

    description : what a joining worker needs besides the data (the DVC experiment, the md5 of
        the split files, the MLflow run); stored with the study.
    on_trial(record, counts) is called here with each trial as it ends (any worker's), with the
    study's trials per state. A diverged trial stops the search (TrainingDiverged) after it has
    been reported. Returns the table, the chosen trial (see :func:`search_table`) and the
    study's name.
    """
    from optuna.distributions import distribution_to_json

    from cifarlab.tuning import study as studies
    from cifarlab.tuning.storage import open_storage
    from cifarlab.tuning.workers import watch

    queued = queued_trials(settings)
    check_trials(base, queued)
    search = studies.Search(
        sampler=settings["sampler"], pruner=settings["pruner"], seed=settings["seed"],
        min_epochs=settings["min_epochs"], n_startup_trials=settings["n_startup_trials"],
        epochs=base["epochs"], percentile=settings["percentile"],
    )  # fmt: skip
    space = {k: distribution_to_json(v) for k, v in search_space(settings).items()}
    description = {**description, "base": dict(base), "space": space}
    study = studies.create(open_storage(storage_url), search, queued, description)

    def ended(trial: Any) -> None:
        record = TrialRecord.from_frozen(trial)
        if on_trial is not None:
            on_trial(record, studies.counts(study.get_trials(deepcopy=False)))
        if record.error is not None:
            raise TrainingDiverged(f"{record.name}: {record.error}")

    context = multiprocessing.get_context("spawn")  # the stage may hold threads and a BLAS pool
    outcome = "failed"
    try:
        with shared((train.X, train.y, val.X, val.y)) as data:
            workers = [
                context.Process(target=_local_worker, args=(storage_url, study.study_name, data),
                                name=f"svm_tune worker {i}", daemon=True)
                for i in range(min(n_jobs, len(queued)))
            ]  # fmt: skip
            try:
                start_without_sigint(workers)
                trials = watch(study, workers, ended)
            finally:
                for worker in (w for w in workers if w.pid is not None):  # the started ones
                    if worker.is_alive():
                        worker.kill()
                    worker.join()
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        studies.close(study, outcome)
    table, best = search_table([TrialRecord.from_frozen(t) for t in trials])
    return table, best, study.study_name


def join_search(
    storage_url: str,
    name: str,
    train: Split,
    val: Split,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> int:
    """Work on study ``name`` from here (``cifarlab tune join``) until it has no trial left.

    train / val : this machine's copy of the split files the study was started with (the
    caller checks their md5 against the study's). Returns how many trials ran here.
    """

    def report(trial: Any) -> None:
        if on_trial is not None:
            on_trial(TrialRecord.from_frozen(trial))

    with single_blas_thread():
        return _work_on(storage_url, name, (train.X, train.y, val.X, val.y), report)


def progress_message(
    record: TrialRecord, counts: Mapping[str, int], total: int, elapsed: float
) -> str:
    """One line for an ended trial: ``3/24 trials done (1 pruned), 4:10 left; trial 7: lr=…
    val accuracy 0.3912 (21.3 s)``.

    counts : the study's trials per state; total : its trials. Time left is the mean wall time
    per ended trial times the trials left (several workers: the mean already counts their
    overlap).
    """
    done = sum(counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
    pruned = counts.get("PRUNED", 0)
    left = elapsed / done * max(total - done, 0) if done else math.nan
    if record.state == "COMPLETE":
        outcome = f"val accuracy {record.val_accuracy:.4f}"
    elif record.state == "PRUNED":
        outcome = (f"pruned after epoch {len(record.val_accuracy_history)} "
                   f"(val accuracy {record.val_accuracy:.4f})")
    else:
        outcome = f"failed: {record.error}" if record.error else "failed: its worker died"
    where = f" on {record.worker}" if record.worker else ""
    return (
        f"{done}/{total} trials done ({pruned} pruned), {_clock(left)} left; "
        f"{record.name} {outcome} ({record.seconds:.1f} s{where})"
    )


def _clock(seconds: float) -> str:
    """Seconds as m:ss or h:mm:ss (``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
