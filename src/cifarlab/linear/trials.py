"""The trials of a linear-classifier search (stage ``svm_tune``): what is searched, and the list
of candidates each sampler queues.

Pure: values and an explicit seed or ``numpy.random.Generator`` in, dicts of
``LinearClassifier`` keyword arguments out; the values are those of ``params.yaml``, checked when
it was read. :func:`queued_trials` is what ``cifarlab.linear.search`` queues in a study,
:func:`search_space` the distributions it suggests from, :func:`check_trials` the check of every
trial before any trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cifarlab.errors import ConfigError
from cifarlab.linear.classifier import sgd_config

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


def queued_trials(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trials of a search, in queue order: dicts of learning_rate, reg and batch_size.

    settings : the ``svm_tune`` section. ``sampler`` "grid": every combination of
    learning_rates x regs x batch_sizes; "random": ``n_trials`` seeded draws (see
    :func:`random_trials`); "tpe": ``n_trials`` empty dicts (TPE proposes each trial when a
    worker takes it).
    """
    sampler = settings["sampler"]
    if sampler == "grid":
        keys = ("learning_rates", "regs", "batch_sizes")
        return grid_trials({}, **dict(zip(("learning_rates", "regs", "batch_sizes"),
                                           (settings[k] for k in keys), strict=True)))
    if sampler == "random":
        return random_trials(
            {},
            n_trials=settings["n_trials"],
            learning_rate_range=settings["learning_rate_range"],
            reg_range=settings["reg_range"],
            batch_sizes=settings["batch_sizes"],
            rng=np.random.default_rng(settings["seed"]),
        )
    if sampler == "tpe":
        return [{} for _ in range(settings["n_trials"])]
    raise ConfigError(f"svm_tune.sampler must be 'random', 'grid' or 'tpe', got {sampler!r}")


def search_space(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna distributions of the searched hyperparameters: learning rate and reg
    log-uniform over their ranges (widened to the grid's values), batch size one of
    ``batch_sizes``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    def log_range(bounds: Sequence[float], grid: Sequence[float]) -> FloatDistribution:
        values = [*bounds, *grid]
        return FloatDistribution(min(values), max(values), log=True)

    return {
        "learning_rate": log_range(settings["learning_rate_range"], settings["learning_rates"]),
        "reg": log_range(settings["reg_range"], settings["regs"]),
        "batch_size": CategoricalDistribution(list(settings["batch_sizes"])),
    }


def check_trials(base: Mapping[str, Any], queued: Sequence[Mapping[str, Any]]) -> None:
    """Every queued trial is valid ``LinearClassifier`` hyperparameters over ``base``, checked
    before any trial trains (ConfigError "trial i: …")."""
    if not queued:
        raise ConfigError("svm_tune has no trial to run")
    for index, trial in enumerate(queued):
        try:
            sgd_config({**base, **trial})
        except ConfigError as exc:
            raise ConfigError(f"trial {index}: {exc}") from None
