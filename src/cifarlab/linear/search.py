"""Hyperparameter search for the linear classifier (stage ``svm_tune``): grid or random trials.

A trial is a dict of ``LinearClassifier`` keyword arguments. :func:`grid_trials` and
:func:`random_trials` build the list (pure: values and an explicit ``numpy.random.Generator``
in, dicts out; the values are those of ``params.yaml``, checked when it was read);
:func:`run_trials` checks every trial, then fits each on the training split, scores it on the
validation split and reports each result as it completes; :func:`linear_search` tabulates them
and picks the best.

Trials run in ``n_jobs`` worker processes, each limited to one BLAS thread: ``n_jobs``
single-threaded trials keep as many cores busy without oversubscribing them. Each trial is
seeded by its own ``random_state``, and every trial computes with one BLAS thread wherever it
runs (OpenBLAS results differ in the last bits between thread counts), so the results do not
depend on ``n_jobs`` or on the order in which trials finish.
"""

from __future__ import annotations

import math
import multiprocessing
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cifarlab.errors import ConfigError, TrainingDiverged
from cifarlab.linear.classifier import LinearClassifier, sgd_config
from cifarlab.linear.sgd import SGDConfig, single_blas_thread
from cifarlab.params import SECTIONS
from cifarlab.process import die_with_parent

if TYPE_CHECKING:
    import pandas as pd

    from cifarlab.data.prepared import Split

SEARCHED = ("learning_rate", "reg", "batch_size")


# --------------------------------------------------------------------------- trial lists


def grid_trials(
    base: Mapping[str, Any],
    *,
    learning_rates: Sequence[float],
    regs: Sequence[float],
    batch_sizes: Sequence[int],
) -> list[dict[str, Any]]:
    """Every learning rate x reg x batch size (that nesting order), each over ``base``.

    Returns a list of ``len(learning_rates) * len(regs) * len(batch_sizes)`` dicts of
    ``LinearClassifier`` keyword arguments.
    """
    return [
        {**base, "learning_rate": lr, "reg": reg, "batch_size": size}
        for lr in learning_rates
        for reg in regs
        for size in batch_sizes
    ]


def _log_uniform(bounds: Sequence[float], n: int, rng: np.random.Generator) -> np.ndarray:
    low, high = np.log(np.asarray(bounds, dtype=np.float64))
    return np.exp(rng.uniform(low, high, size=n))


def _three_digits(value: float) -> float:
    # Sampled values are rounded to 3 significant digits: readable in tables and the MLflow UI.
    return float(f"{value:.3g}")


def random_trials(
    base: Mapping[str, Any],
    *,
    n_trials: int,
    learning_rate_range: Sequence[float],
    reg_range: Sequence[float],
    batch_sizes: Sequence[int],
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """``n_trials`` random candidates, each over ``base``.

    The learning rate and the regularization strength are log-uniform in their ``[low, high]``
    ranges (rounded to 3 significant digits), the batch size is drawn uniformly from
    ``batch_sizes``. Draw order: all learning rates, then all regs, then all batch sizes, so a
    longer search starts with the trials of a shorter one only if the ranges are unchanged.

    Returns a list of ``n_trials`` dicts of ``LinearClassifier`` keyword arguments.
    """
    lrs = _log_uniform(learning_rate_range, n_trials, rng)
    regs = _log_uniform(reg_range, n_trials, rng)
    picks = rng.integers(0, len(batch_sizes), size=n_trials)
    return [
        {
            **base,
            "learning_rate": _three_digits(lr),
            "reg": _three_digits(reg),
            "batch_size": batch_sizes[pick],
        }
        for lr, reg, pick in zip(lrs, regs, picks, strict=True)
    ]


def linear_search_trials(
    base: Mapping[str, Any], method: str, settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The candidates of ``svm_tune``: ``LinearClassifier`` keyword arguments over ``base``.

    method : "grid" (settings: learning_rates, regs, batch_sizes) or "random" (settings:
    n_trials, learning_rate_range, reg_range, batch_sizes, seed; see :func:`random_trials`).
    """
    if method == "grid":
        return grid_trials(
            base,
            learning_rates=settings["learning_rates"],
            regs=settings["regs"],
            batch_sizes=settings["batch_sizes"],
        )
    if method == "random":
        return random_trials(
            base,
            n_trials=settings["n_trials"],
            learning_rate_range=settings["learning_rate_range"],
            reg_range=settings["reg_range"],
            batch_sizes=settings["batch_sizes"],
            rng=np.random.default_rng(settings["seed"]),
        )
    raise ConfigError(f"svm_tune.method must be 'grid' or 'random', got {method!r}")


# --------------------------------------------------------------------------- running trials


@dataclass(frozen=True)
class TrialResult:
    """One fitted trial (or one that diverged).

    Attributes
    ----------
    index : int
        Position in the trial list.
    hyperparameters : dict
        The ``LinearClassifier`` keyword arguments.
    loss_history : float64 ndarray of shape (n_steps,)
    train_accuracy_history, val_accuracy_history : float64 ndarrays of shape (n_epochs,)
    best_epoch : int
        The epoch whose weights the model kept (see ``LinearClassifier.best_epoch_``).
    seconds : float
        Wall time of the fit in its worker.
    error : str or None
        The ``TrainingDiverged`` message when the trial diverged (the histories are then empty).
    """

    index: int
    hyperparameters: dict[str, Any]
    loss_history: np.ndarray
    train_accuracy_history: np.ndarray
    val_accuracy_history: np.ndarray
    best_epoch: int
    seconds: float
    error: str | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        h = self.hyperparameters
        label = f"lr={h['learning_rate']:g} reg={h['reg']:g} batch={h['batch_size']}"
        object.__setattr__(self, "name", f"trial {self.index}: {label}")

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy of the kept weights (NaN for a diverged trial)."""
        return float(self.val_accuracy_history[self.best_epoch]) if self.error is None else math.nan

    @property
    def train_accuracy(self) -> float:
        """Training accuracy of the kept weights (NaN for a diverged trial)."""
        if self.error is not None:
            return math.nan
        return float(self.train_accuracy_history[self.best_epoch])


# A trial as the workers get it: index, keyword arguments, and their checked config and seed.
_Trial = tuple[int, dict[str, Any], SGDConfig, int]

# Set in each worker process by _init_worker: (X, y, X_val, y_val).
_WORKER_DATA: tuple[np.ndarray, ...] | None = None


def _init_worker(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
    global _WORKER_DATA
    # A worker computes for its stage only: it dies with it (even SIGKILLed), and leaves a
    # Ctrl-C to the stage, which stops the workers itself.
    die_with_parent(signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_DATA = (X, y, X_val, y_val)
    single_blas_thread()  # for the life of this worker process


def _fit_trial(trial: _Trial, data: tuple[np.ndarray, ...]) -> TrialResult:
    index, hyperparameters, config, random_state = trial
    start = time.perf_counter()
    try:
        model = LinearClassifier(**hyperparameters)._fit(config, random_state, *data)
    except TrainingDiverged as exc:
        empty = np.empty(0)
        return TrialResult(
            index, hyperparameters, empty, empty, empty, -1, time.perf_counter() - start, str(exc)
        )
    return TrialResult(
        index=index,
        hyperparameters=hyperparameters,
        loss_history=model.loss_history_,
        train_accuracy_history=model.train_accuracy_history_,
        val_accuracy_history=model.val_accuracy_history_,
        best_epoch=model.best_epoch_,
        seconds=time.perf_counter() - start,
    )


def _worker_trial(trial: _Trial) -> TrialResult:
    assert _WORKER_DATA is not None, "worker not initialised"
    return _fit_trial(trial, _WORKER_DATA)


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to stop running work before Python 3.14.
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _checked_trials(trials: Sequence[Mapping[str, Any]]) -> list[_Trial]:
    checked = []
    for index, trial in enumerate(trials):
        try:
            config, random_state = sgd_config(trial)
        except ConfigError as exc:
            raise ConfigError(f"trial {index}: {exc}") from None
        checked.append((index, dict(trial), config, random_state))
    return checked


def run_trials(
    trials: Sequence[Mapping[str, Any]],
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    n_jobs: int,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Fit ``LinearClassifier(**trial).fit(X, y, X_val, y_val)`` for every trial.

    Parameters
    ----------
    trials : sequence of dicts of ``LinearClassifier`` keyword arguments
        All checked before any training starts.
    X : ndarray of shape (n_samples, n_features); y : ndarray of shape (n_samples,)
    X_val : ndarray of shape (n_val, n_features); y_val : ndarray of shape (n_val,)
    n_jobs : int >= 1
        Worker processes (each with one BLAS thread). 1 runs the trials one after the other in
        this process, also with one BLAS thread, so results are the same for any ``n_jobs``.
    on_trial : callable, optional
        Called in this process with each :class:`TrialResult` as soon as it completes (so in
        completion order, diverged trials included), e.g. to log it.

    Returns
    -------
    list of TrialResult, in the order of ``trials``.

    Raises
    ------
    TrainingDiverged
        As soon as one trial diverges (after ``on_trial`` has seen it): the other trials are
        stopped, nothing is returned.
    """
    n_jobs = SECTIONS["resources"]["n_jobs"].check("n_jobs", n_jobs)
    if not trials:
        raise ConfigError("trials must hold at least one candidate")
    checked = _checked_trials(trials)

    results: list[TrialResult | None] = [None] * len(checked)

    def completed(result: TrialResult) -> None:
        results[result.index] = result
        if on_trial is not None:
            on_trial(result)
        if result.error is not None:
            raise TrainingDiverged(f"{result.name}: {result.error}")

    n_workers = min(n_jobs, len(checked))
    if n_workers == 1:
        data = (X, y, X_val, y_val)
        with single_blas_thread():
            for trial in checked:
                completed(_fit_trial(trial, data))
        return results  # type: ignore[return-value]

    # spawn, not fork: the parent may hold MLflow's threads and a multi-threaded BLAS.
    executor = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(X, y, X_val, y_val),
    )
    try:
        # The workers start here. SIGINT stays blocked meanwhile: they inherit the mask, so a
        # Ctrl-C to the process group cannot interrupt their start-up (with a traceback each);
        # the stage receives it once the block ends, and stops them.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pending: set[Future] = {executor.submit(_worker_trial, trial) for trial in checked}
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: f.result().index):
                completed(future.result())
    except BaseException:
        _kill_workers(executor)
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results  # type: ignore[return-value]


def linear_search(
    train: Split,
    val: Split,
    trials: Sequence[Mapping[str, Any]],
    *,
    n_jobs: int,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit every trial on train, score it on val (``n_jobs`` processes, one BLAS thread each).

    trials : dicts of ``LinearClassifier`` keyword arguments (see :func:`linear_search_trials`).
    on_trial(result) is called with each :class:`TrialResult` as it completes (for tracking); a
    diverged trial raises ``TrainingDiverged`` after it has been reported.
    Returns one row per trial (in trial order) and the best one: the highest val accuracy,
    ties to the earlier trial.
    """
    # Imported here, not above: the spawned trial workers import this module and need no pandas.
    import pandas as pd

    results = run_trials(trials, train.X, train.y, val.X, val.y, n_jobs=n_jobs, on_trial=on_trial)
    rows = [
        {
            "trial": r.index,
            **{key: r.hyperparameters[key] for key in SEARCHED},
            "train_accuracy": r.train_accuracy,
            "val_accuracy": r.val_accuracy,
            "best_epoch": r.best_epoch,
            "epochs_run": len(r.val_accuracy_history),
            "final_loss": float(r.loss_history[-1]),
        }
        for r in results
    ]
    best = rows[int(np.argmax([row["val_accuracy"] for row in rows]))]
    return pd.DataFrame(rows), dict(best)


def progress_message(trial: TrialResult, done: int, total: int, elapsed: float) -> str:
    """One line for a completed trial: ``3/24 trials done, 4:10 left; trial 7: lr=… val
    accuracy 0.3912 (21.3 s)``.

    done : trials completed, this one included (1..total); elapsed : seconds since the search
    started. Time left is the mean wall time per completed trial times the trials left (with
    n_jobs workers the mean already counts their overlap).
    """
    outcome = "diverged" if trial.error else f"val accuracy {trial.val_accuracy:.4f}"
    left = elapsed / done * (total - done) if done else math.nan
    return (
        f"{done}/{total} trials done, {_clock(left)} left; "
        f"{trial.name} {outcome} ({trial.seconds:.1f} s)"
    )


def _clock(seconds: float) -> str:
    """Seconds as m:ss or h:mm:ss (``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
