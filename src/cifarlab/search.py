"""Hyperparameter search for :class:`~cifarlab.linear.LinearClassifier`: grid or random trials.

A trial is a dict of ``LinearClassifier`` keyword arguments. :func:`grid_trials` and
:func:`random_trials` build the list (pure: values and an explicit ``numpy.random.Generator``
in, dicts out); :func:`run_trials` fits every trial on the training split, scores it on the
validation split and reports each result as it completes.

Trials run in ``n_jobs`` worker processes, each limited to one BLAS thread: ``n_jobs``
single-threaded trials keep as many cores busy without oversubscribing them. Each trial is
seeded by its own ``random_state``, and every trial computes with one BLAS thread wherever it
runs (OpenBLAS results differ in the last bits between thread counts), so the results do not
depend on ``n_jobs`` or on the order in which trials finish.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifarlab.errors import ConfigError, TrainingDiverged
from cifarlab.linear import LinearClassifier, check_hyperparameters

SEARCHED = ("learning_rate", "reg", "batch_size")


# --------------------------------------------------------------------------- trial lists


def _positive_floats(name: str, values: Sequence[Any]) -> list[float]:
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ConfigError(f"{name} must be a non-empty list, got {values!r}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must hold numbers, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must hold finite numbers > 0, got {value!r}")
        out.append(float(value))
    return out


def _batch_sizes(values: Sequence[Any]) -> list[int]:
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ConfigError(f"batch_sizes must be a non-empty list, got {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"batch_sizes must hold integers >= 1, got {value!r}")
    return [int(v) for v in values]


def grid_trials(
    base: Mapping[str, Any],
    *,
    learning_rates: Sequence[float],
    regs: Sequence[float],
    batch_sizes: Sequence[int],
) -> list[dict[str, Any]]:
    """Every learning rate x reg x batch size (that nesting order), each over ``base``.

    Returns a list of ``len(learning_rates) * len(regs) * len(batch_sizes)`` dicts of
    ``LinearClassifier`` keyword arguments; every one is validated here.
    """
    lrs = _positive_floats("learning_rates", learning_rates)
    regs_ = _positive_floats("regs", regs)
    sizes = _batch_sizes(batch_sizes)
    trials = [
        {**base, "learning_rate": lr, "reg": reg, "batch_size": size}
        for lr in lrs
        for reg in regs_
        for size in sizes
    ]
    for trial in trials:
        check_hyperparameters(trial)
    return trials


def _log_uniform(
    name: str, bounds: Sequence[float], n: int, rng: np.random.Generator
) -> np.ndarray:
    values = _positive_floats(name, bounds)
    if len(values) != 2 or values[0] > values[1]:
        raise ConfigError(f"{name} must be [low, high] with 0 < low <= high, got {bounds!r}")
    low, high = np.log(values)
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
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    sizes = _batch_sizes(batch_sizes)
    lrs = _log_uniform("learning_rate_range", learning_rate_range, n_trials, rng)
    regs = _log_uniform("reg_range", reg_range, n_trials, rng)
    picks = rng.integers(0, len(sizes), size=n_trials)
    trials = [
        {
            **base,
            "learning_rate": _three_digits(lr),
            "reg": _three_digits(reg),
            "batch_size": sizes[pick],
        }
        for lr, reg, pick in zip(lrs, regs, picks, strict=True)
    ]
    for trial in trials:
        check_hyperparameters(trial)
    return trials


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


# Set in each worker process by _init_worker: (X, y, X_val, y_val).
_WORKER_DATA: tuple[np.ndarray, ...] | None = None


def single_blas_thread() -> Any:
    """Limit BLAS to one thread (a context manager; or, called bare, for the whole process)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _init_worker(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
    global _WORKER_DATA
    _WORKER_DATA = (X, y, X_val, y_val)
    single_blas_thread()  # for the life of this worker process


def _fit_trial(
    index: int, hyperparameters: dict[str, Any], data: tuple[np.ndarray, ...]
) -> TrialResult:
    X, y, X_val, y_val = data
    start = time.perf_counter()
    try:
        model = LinearClassifier(**hyperparameters).fit(X, y, X_val, y_val)
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


def _worker_trial(index: int, hyperparameters: dict[str, Any]) -> TrialResult:
    assert _WORKER_DATA is not None, "worker not initialised"
    return _fit_trial(index, hyperparameters, _WORKER_DATA)


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to stop running work before Python 3.14.
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


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
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ConfigError(f"n_jobs must be an integer >= 1, got {n_jobs!r}")
    if not trials:
        raise ConfigError("trials must hold at least one candidate")
    trials = [dict(t) for t in trials]
    for trial in trials:
        check_hyperparameters(trial)

    results: list[TrialResult | None] = [None] * len(trials)

    def completed(result: TrialResult) -> None:
        results[result.index] = result
        if on_trial is not None:
            on_trial(result)
        if result.error is not None:
            raise TrainingDiverged(f"{result.name}: {result.error}")

    n_workers = min(n_jobs, len(trials))
    if n_workers == 1:
        data = (X, y, X_val, y_val)
        with single_blas_thread():
            for index, trial in enumerate(trials):
                completed(_fit_trial(index, trial, data))
        return results  # type: ignore[return-value]

    # spawn, not fork: the parent may hold MLflow's threads and a multi-threaded BLAS.
    executor = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(X, y, X_val, y_val),
    )
    try:
        pending: set[Future] = {
            executor.submit(_worker_trial, index, trial) for index, trial in enumerate(trials)
        }
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
