"""Running a study's trials: the loop of one worker, here or on another machine.

A worker takes the next WAITING trial of the queue, runs the objective on it with a heartbeat in
the storage, and tells the study how it ended: COMPLETE with its value, PRUNED when the pruner
stopped it, FAIL when it raised (the error kept as the trial's ``cifarlab.error`` attribute).
It stops when nothing waits or runs any more, or when the study is closed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from cifarlab.errors import CifarlabError, TrainingDiverged
from cifarlab.tuning import study as studies
from cifarlab.tuning.strategies import sampler_for_trial

#: Seconds between looks at the storage while other workers' trials run.
IDLE_POLL_S = 1.0
ERROR_ATTR = studies.ERROR_ATTR
WORKER_ATTR = "cifarlab.worker"


def worker_name() -> str:
    """``host:pid``: who ran a trial (a trial attribute, and a tag of its MLflow run)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _take(study: optuna.Study, search: studies.Search) -> optuna.Trial | None:
    """The next WAITING trial, now RUNNING and ours, or None when nothing waits.

    Optuna's ``Study.ask`` takes a waiting trial the same way, but creates a new one when none
    waits: two workers asking for the last trial at once would then make the study one trial
    longer. This takes from the queue only (``Study._pop_waiting_trial_id``, Optuna's own).
    """
    trial_id = study._pop_waiting_trial_id()
    if trial_id is None:
        return None
    # A trial with no heartbeat yet is never found stale: beat at once.
    study._storage.record_heartbeat(trial_id)
    number = study._storage.get_trial_number_from_id(trial_id)
    study.sampler = sampler_for_trial(search.sampler, search.seed, number)
    return optuna.Trial(study, trial_id)


@contextlib.contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat in the storage every interval while the block runs."""
    storage = study._storage
    interval = storage.get_heartbeat_interval()
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is not worth a traceback
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="cifarlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_one(study: optuna.Study, trial: optuna.Trial, objective: Callable[[Any], float]) -> Any:
    """Run ``objective(trial)`` and tell the study how it ended; returns the FrozenTrial.

    ``optuna.TrialPruned`` ends it PRUNED; ``TrainingDiverged`` FAIL with the message as its
    ``cifarlab.error`` attribute (the search's verdict on those hyperparameters). Anything else
    (a Ctrl-C, a bug) is about this worker, not the trial: the trial ends FAIL and is queued
    again once for another worker, as when a worker dies, and the exception is raised again.
    """
    trial.set_user_attr(WORKER_ATTR, worker_name())
    with _heartbeat(study, trial):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
        except TrainingDiverged as exc:
            trial.set_user_attr(ERROR_ATTR, str(exc))
            return study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            with contextlib.suppress(Exception):
                frozen = study.tell(trial, state=TrialState.FAIL)
                RetryHeartbeatStaleTrialCallback(max_retry=1)(study, frozen)
            raise
    return study.tell(trial, float(value))


def work(
    study: optuna.Study,
    search: studies.Search,
    objective: Callable[[Any], float],
    on_trial: Callable[[Any], None] | None = None,
) -> int:
    """Take and run the study's waiting trials until none waits or runs, or it is closed.

    While others' trials still run, this worker waits: one of them may die, and its trial is
    then queued again (once) for whoever is free. on_trial(frozen_trial) is called with each
    trial this worker ended. Returns how many that was.
    """
    done = 0
    while studies.closed(study) is None:
        optuna.storages.fail_stale_trials(study)
        trial = _take(study, search)
        if trial is None:
            if studies.settled(study.get_trials(deepcopy=False)):
                break
            time.sleep(IDLE_POLL_S)
            continue
        frozen = run_one(study, trial, objective)
        done += 1
        if on_trial is not None:
            on_trial(frozen)
    return done


class SearchWorkerError(CifarlabError):
    """A local worker process of the search failed."""


def watch(
    study: optuna.Study,
    processes: list[Any],
    on_ended: Callable[[Any], None],
    poll_s: float = 0.5,
) -> list[Any]:
    """Wait until every trial of ``study`` has ended, calling ``on_ended(frozen_trial)`` once
    per trial as it ends (whichever worker ran it, in the order they are seen).

    processes : the local workers (``multiprocessing.Process``). One killed by a signal is
    survived while another lives (its trial is failed after the storage's grace period and
    queued again); one that exits with an error, or all of them gone with trials left, raises
    SearchWorkerError. Returns the study's trials.
    """
    seen: set[int] = set()
    while True:
        # Exit codes first, then the trials: a worker that ended the last trial and exited is
        # then seen with that trial ended.
        codes = [p.exitcode for p in processes]
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state in studies.FINISHED and trial.number not in seen:
                seen.add(trial.number)
                on_ended(trial)
        if studies.settled(trials):
            return trials
        failed = [(p, c) for p, c in zip(processes, codes, strict=True) if c is not None and c > 0]
        if failed:
            raise SearchWorkerError(
                f"search worker {failed[0][0].pid} exited with code {failed[0][1]} "
                "(its error is above)"
            )
        if processes and None not in codes:
            raise SearchWorkerError(
                f"every search worker died (exit codes {', '.join(map(str, codes))}) "
                "with trials left"
            )
        time.sleep(poll_s)
