"""One Optuna study per ``svm_tune`` run: its queue, its description, and finding it again.

The stage creates the study with every trial queued (``n_trials`` WAITING trials: with their
hyperparameters fixed for the random and grid samplers, empty for TPE, which proposes them when
a worker takes one), so that workers only ever *take* trials and the study gets exactly
``n_trials`` — never one more because two workers asked at the same moment.

Everything a worker elsewhere needs is in the study's user attributes (``cifarlab.*``): the
fixed hyperparameters, the sampler and pruner settings, the md5 of the training and validation
files it must train on, the DVC experiment and the MLflow run of the stage. A study is *open*
until the stage closes it (``cifarlab.closed``: ``finished``, or why it stopped); workers take no
trial from a closed study.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from cifarlab.errors import CifarlabError
from cifarlab.tuning.strategies import make_pruner, retry_of, sampler_for_trial

KIND = "svm_tune"
PREFIX = "cifarlab."
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: The trial attribute holding why a trial failed (it diverged), set by its worker.
ERROR_ATTR = "cifarlab.error"
#: Seconds a failed trial of a dead worker may wait for its retry to be queued.
RETRY_WAIT_S = 30


@dataclass(frozen=True)
class Search:
    """How a study searches: what every worker builds its sampler and pruner from.

    sampler : "random", "grid" or "tpe"; pruner : "none", "median", "percentile" or
    "hyperband". seed : the search seed (TPE's draws). min_epochs, n_startup_trials,
    percentile : the pruner's.
    epochs : the most epochs of a trial.
    """

    sampler: str
    pruner: str
    seed: int
    min_epochs: int
    n_startup_trials: int
    epochs: int
    percentile: float = 50.0

    def pruner_object(self) -> Any:
        return make_pruner(
            self.pruner,
            min_epochs=self.min_epochs,
            n_startup_trials=self.n_startup_trials,
            epochs=self.epochs,
            percentile=self.percentile,
        )


def create(
    storage: Any,
    search: Search,
    queued: Sequence[Mapping[str, Any]],
    description: Mapping[str, Any],
) -> optuna.Study:
    """A new study in ``storage`` holding ``queued`` as its WAITING trials, in that order.

    queued : one dict of fixed hyperparameters per trial (an empty dict: the sampler proposes
        them). description : JSON values a joining worker needs (stored as ``cifarlab.<key>``).
    The name is ``svm_tune <experiment> <UTC time> <host>:<pid>``: new for every run.
    """
    experiment = description.get("experiment", "workspace")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    name = f"{KIND} {experiment} {stamp} {socket.gethostname()}:{os.getpid()}"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=sampler_for_trial(search.sampler, search.seed, 0),
        pruner=search.pruner_object(),
    )
    study.set_metric_names(["val accuracy"])  # what optuna-dashboard calls the objective
    attrs = {"kind": KIND, "search": search.__dict__, "n_trials": len(queued), **description}
    for key, value in attrs.items():
        study.set_user_attr(PREFIX + key, value)
    for params in queued:
        study.enqueue_trial(dict(params))
    return study


def attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's ``cifarlab.*`` user attributes, without the prefix."""
    return {k[len(PREFIX) :]: v for k, v in study.user_attrs.items() if k.startswith(PREFIX)}


def load(storage: Any, name: str) -> tuple[optuna.Study, Search]:
    """Study ``name`` with its pruner as the stage built it, and its :class:`Search`."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise CifarlabError(f"no study named {name!r} in the study storage") from None
    search = Search(**attrs(study)["search"])
    study.pruner = search.pruner_object()
    return study, search


def close(study: optuna.Study, outcome: str) -> None:
    """Mark the study closed (``finished`` or why it stopped): workers take no more trials.

    Also after a Ctrl-C that landed inside a storage call: that session is dropped first (it
    may still hold its transaction, and so SQLite's lock)."""
    study._storage.remove_session()
    study.set_user_attr(PREFIX + "closed", outcome)


def closed(study: optuna.Study) -> str | None:
    """Why the study was closed, or None while it is open (read from the storage)."""
    return study.user_attrs.get(PREFIX + "closed")


def open_studies(storage: Any, experiment: str | None = None) -> list[optuna.study.StudySummary]:
    """The open ``svm_tune`` studies of ``storage`` (of one DVC experiment, if given), oldest
    first."""
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        user = summary.user_attrs
        if user.get(PREFIX + "kind") != KIND or PREFIX + "closed" in user:
            continue
        if experiment is not None and user.get(PREFIX + "experiment") != experiment:
            continue
        found.append(summary)
    return sorted(found, key=lambda s: s.datetime_start or dt.datetime.min)


def counts(trials: Sequence[Any]) -> Counter:
    """Trials per state name: ``{"COMPLETE": 3, "PRUNED": 2, "RUNNING": 2, "WAITING": 17}``."""
    return Counter(t.state.name for t in trials)


def settled(trials: Sequence[Any], now: dt.datetime | None = None) -> bool:
    """No trial waits or runs, and none is about to be queued again: the search is over.

    A trial whose worker died ends FAIL first and its retry is queued a moment later (by
    whoever noticed); until then, or for ``RETRY_WAIT_S`` at most, it is not over.
    """
    if not all(t.state in FINISHED for t in trials):
        return False
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    now = now or dt.datetime.now()
    for t in trials:
        awaiting_retry = (
            t.state == TrialState.FAIL
            and ERROR_ATTR not in t.user_attrs  # a diverged trial is not run again
            and retry_of(t) is None  # nor a retry (one retry each)
            and t.number not in retried
        )
        if awaiting_retry and t.datetime_complete is not None:
            if (now - t.datetime_complete).total_seconds() < RETRY_WAIT_S:
                return False
    return True
