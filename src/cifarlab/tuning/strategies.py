"""The samplers and pruners of a search, built from its settings, alike in every worker.

Samplers (``sampler``):
- ``random`` and ``grid``: every trial's hyperparameters are drawn (seeded) or listed before the
  search starts and queued in the study, so any number of workers, anywhere, run exactly those
  trials. The study's own sampler then never draws a value.
- ``tpe``: Optuna's ``TPESampler`` proposes each trial from the finished ones, seeded by the
  search seed and the trial's number (one worker: the same trials every time; several: what
  each proposal sees depends on which trials finished first, and the study is the record).

Pruners (``pruner``), fed the val accuracy after every epoch:
- ``none``: every trial runs all its epochs.
- ``percentile``: :class:`InOrderPercentilePruner`, a trial not in the top ``percentile`` % of
  the trials queued before it at an epoch stops (Optuna's ``PercentilePruner`` rule), decided
  in the order of the queue, so the same trials are pruned whatever the number of workers.
- ``median``: the same with ``percentile`` 50 (Optuna's ``MedianPruner`` rule).
- ``hyperband``: Optuna's ``HyperbandPruner`` (min resource ``min_epochs``, max the epochs,
  reduction factor 3), its brackets drawn from the trial number alone; reproducible with one
  worker, as the rung promotions depend on which trials reached a rung first.
"""

from __future__ import annotations

import binascii
import math
import time
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from cifarlab.errors import ConfigError

SAMPLERS = ("random", "grid", "tpe")
PRUNERS = ("none", "median", "percentile", "hyperband")
#: Seconds between looks at the storage while a decision waits for earlier trials.
_POLL_S = 0.05


def queue_position(trial: Any) -> int:
    """Where a trial stands in the study's queue: its number, or for a retried trial (its
    worker died) the number of the trial it repeats."""
    retried = retry_of(trial)
    return trial.number if retried is None else retried


def retry_of(trial: Any) -> int | None:
    """The number of the trial this one repeats after its worker died, or None.

    Optuna's ``RetryHeartbeatStaleTrialCallback`` records it (``retried_trial_number`` reads
    the same attribute, but warns on every call as experimental: this is called per poll)."""
    return trial.system_attrs.get("failed_trial")


def sampler_for_trial(name: str, seed: int, trial_number: int) -> Any:
    """The sampler that proposes trial ``trial_number``: seeded by ``seed`` and the number, so
    two workers never draw the same values and one worker always draws the same ones."""
    trial_seed = int(np.random.SeedSequence([seed, trial_number]).generate_state(1)[0])
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=trial_seed)
    if name in ("random", "grid"):  # queued trials: never asked for a value
        return optuna.samplers.RandomSampler(seed=trial_seed)
    raise ConfigError(f"sampler must be one of {list(SAMPLERS)}, got {name!r}")


def make_pruner(
    name: str, *, min_epochs: int, n_startup_trials: int, epochs: int, percentile: float = 50.0
) -> Any:
    """The pruner ``name`` (see the module docstring); steps are epochs, counted from 0, so a
    trial runs at least ``min_epochs`` epochs before it can be pruned."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name in ("median", "percentile"):
        return InOrderPercentilePruner(
            50.0 if name == "median" else percentile,
            n_startup_trials=n_startup_trials,
            n_warmup_steps=min_epochs - 1,
        )
    if name == "hyperband":
        return _StableHyperband(
            min_resource=min_epochs, max_resource=max(epochs, min_epochs), reduction_factor=3
        )
    raise ConfigError(f"pruner must be one of {list(PRUNERS)}, got {name!r}")


class InOrderPercentilePruner(optuna.pruners.BasePruner):
    """Prune trial n at step s when its value is below the ``100 - percentile`` th percentile
    of the values at step s of the trials queued before it that reached step s (at least
    ``n_startup_trials`` of them), once ``s >= n_warmup_steps``: only the top ``percentile``
    % go on. Maximising.

    Optuna's ``PercentilePruner`` compares with the trials *completed* when it is asked, which
    depends on how fast each worker went. Here the decision waits until every earlier
    trial still running has reported step s (or ended), so it depends only on the queue:
    by induction the first running trial never waits, and each trial sees the same values
    in any run. A worker that died holds nobody up for longer than the storage's grace
    period: its trial is failed meanwhile.
    """

    def __init__(
        self, percentile: float = 50.0, *, n_startup_trials: int = 4, n_warmup_steps: int = 0
    ) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ConfigError(f"percentile must be in [0, 100], got {percentile!r}")
        self._percentile = percentile
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps

    def prune(self, study: Any, trial: Any) -> bool:
        step = trial.last_step
        if step is None or step < self._n_warmup_steps:
            return False
        position = queue_position(trial)
        if position < self._n_startup_trials:  # too few trials before it, whatever they did
            return False
        while True:
            earlier = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.number != trial.number
                and queue_position(t) < position
                and t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
            ]
            if not any(t.state == TrialState.RUNNING and step not in t.intermediate_values
                       for t in earlier):  # fmt: skip
                break
            time.sleep(_POLL_S)
            optuna.storages.fail_stale_trials(study)
        values = [t.intermediate_values[step] for t in earlier if step in t.intermediate_values]
        values = [v for v in values if math.isfinite(v)]
        if len(values) < self._n_startup_trials:
            return False
        threshold = float(np.percentile(values, 100.0 - self._percentile))
        return trial.intermediate_values[step] < threshold


class _StableHyperband(optuna.pruners.HyperbandPruner):
    """Optuna's HyperbandPruner with each trial's bracket drawn from its queue position
    only: Optuna hashes the study's name too, and every svm_tune run has a new study."""

    def _get_bracket_id(self, study: Any, trial: Any) -> int:
        if len(self._pruners) == 0:
            return 0
        n = binascii.crc32(f"svm_tune_{queue_position(trial)}".encode())
        n %= self._total_trial_allocation_budget
        for bracket_id, budget in enumerate(self._trial_allocation_budgets):
            n -= budget
            if n < 0:
                return bracket_id
        raise AssertionError("unreachable: the budgets sum to the total")
