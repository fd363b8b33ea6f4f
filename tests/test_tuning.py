"""Tests of cifarlab.tuning: the study storage, the samplers and pruners, the study's queue and
the worker loop (on toy objectives: the linear classifier's search is test_linear_search.py)."""

from __future__ import annotations

import datetime as dt
import threading
import time
import types

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from cifarlab.errors import CifarlabError, ConfigError, TrainingDiverged
from cifarlab.tuning import storage as storages
from cifarlab.tuning import study as studies
from cifarlab.tuning import workers
from cifarlab.tuning.strategies import (
    InOrderPercentilePruner,
    make_pruner,
    queue_position,
    sampler_for_trial,
)

SEARCH = studies.Search(
    sampler="random", pruner="none", seed=0, min_epochs=1, n_startup_trials=0, epochs=3
)
X = FloatDistribution(0.0, 1.0)


def _objective(trial):
    return trial.suggest_float("x", 0.0, 1.0)


@pytest.fixture
def storage(tmp_path):
    return storages.open_storage(f"sqlite:///{tmp_path}/o.db")


# --------------------------------------------------------------------------- storage


def test_storage_url_is_the_project_file_unless_the_variable_names_one(monkeypatch):
    monkeypatch.delenv(storages.STORAGE_VARIABLE, raising=False)
    assert storages.storage_url().startswith("sqlite:///")
    assert storages.storage_url().endswith("/optuna.db")
    monkeypatch.setenv(storages.STORAGE_VARIABLE, "postgresql://team@db.example/optuna")
    assert storages.storage_url() == "postgresql://team@db.example/optuna"


def test_redact_hides_the_password_only():
    assert storages.redact("postgresql://ann:s3cret@db:5432/optuna") == (
        "postgresql://ann:***@db:5432/optuna"
    )
    assert storages.redact("sqlite:////tmp/o.db") == "sqlite:////tmp/o.db"


def test_a_sqlite_storage_has_the_heartbeat_of_the_module(storage):
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.get_heartbeat_interval() == storages.HEARTBEAT_INTERVAL_S
    assert storages.GRACE_PERIOD_S > storages.HEARTBEAT_INTERVAL_S


def test_an_unreachable_server_is_a_one_line_error_within_seconds():
    start = time.monotonic()
    with pytest.raises(storages.StudyStorageError) as info:
        storages.open_storage("postgresql+psycopg2://u:s3cret@127.0.0.1:1/x")
    assert time.monotonic() - start < storages.CONNECT_TIMEOUT_S + 3
    message = str(info.value)
    assert "\n" not in message
    assert "postgresql+psycopg2://u:***@127.0.0.1:1/x" in message and "s3cret" not in message
    assert storages.STORAGE_VARIABLE in message


def test_a_bad_url_is_a_storage_error():
    with pytest.raises(storages.StudyStorageError, match=r"cannot use the study storage"):
        storages.open_storage("no such url")


# --------------------------------------------------------------------------- samplers, pruners


def test_sampler_for_trial_is_seeded_by_seed_and_trial_number():
    def draws(seed, number, name="tpe"):
        study = optuna.create_study(sampler=sampler_for_trial(name, seed, number))
        return [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(3)]

    assert draws(0, 5) == draws(0, 5)
    assert draws(0, 5) != draws(0, 6) and draws(0, 5) != draws(1, 5)
    assert isinstance(sampler_for_trial("tpe", 0, 0), optuna.samplers.TPESampler)
    assert isinstance(sampler_for_trial("grid", 0, 0), optuna.samplers.RandomSampler)
    with pytest.raises(ConfigError, match=r"sampler must be one of \['random', 'grid', 'tpe'\]"):
        sampler_for_trial("cmaes", 0, 0)


def test_make_pruner_builds_each_choice():
    assert isinstance(make_pruner("none", min_epochs=2, n_startup_trials=1, epochs=5),
                      optuna.pruners.NopPruner)  # fmt: skip
    median = make_pruner("median", min_epochs=3, n_startup_trials=4, epochs=5)
    assert isinstance(median, InOrderPercentilePruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (4, 2)
    percentile = make_pruner("percentile", min_epochs=1, n_startup_trials=6, epochs=5,
                             percentile=33)  # fmt: skip
    assert (percentile._percentile, percentile._n_warmup_steps) == (33, 0)
    assert make_pruner("median", min_epochs=1, n_startup_trials=6, epochs=5,
                       percentile=33)._percentile == 50  # fmt: skip
    with pytest.raises(ConfigError, match=r"percentile must be in \[0, 100\], got 150"):
        make_pruner("percentile", min_epochs=1, n_startup_trials=0, epochs=3, percentile=150)
    assert isinstance(make_pruner("hyperband", min_epochs=1, n_startup_trials=0, epochs=9),
                      optuna.pruners.HyperbandPruner)  # fmt: skip
    with pytest.raises(ConfigError, match=r"pruner must be one of .* got 'asha'"):
        make_pruner("asha", min_epochs=1, n_startup_trials=0, epochs=3)


def test_queue_position_of_a_retry_is_the_trial_it_repeats():
    assert queue_position(types.SimpleNamespace(number=7, system_attrs={})) == 7
    assert queue_position(types.SimpleNamespace(number=7, system_attrs={"failed_trial": 2})) == 2


def _finished(study, values, state=TrialState.COMPLETE):
    """Add a finished trial with val accuracy values[s] at step s."""
    study.add_trial(create_trial(
        state=state, value=values[-1] if state == TrialState.COMPLETE else None,
        intermediate_values=dict(enumerate(values)),
    ))  # fmt: skip


def _running(study, values):
    trial = study.ask()
    for step, value in enumerate(values):
        trial.report(value, step)
    return trial


def _frozen(study, trial):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)


def test_median_pruner_compares_with_earlier_trials_at_the_same_step():
    study = optuna.create_study(direction="maximize")
    for v in (0.2, 0.4, 0.6):
        _finished(study, [0.1, v])
    low, high = _running(study, [0.5, 0.3]), _running(study, [0.5, 0.5])
    pruner = InOrderPercentilePruner(n_startup_trials=3, n_warmup_steps=1)
    assert pruner.prune(study, _frozen(study, low))  # 0.3 < median(0.2, 0.4, 0.6)
    assert not pruner.prune(study, _frozen(study, high))
    # Not enough earlier trials, or still warming up: never pruned.
    assert not InOrderPercentilePruner(n_startup_trials=4).prune(study, _frozen(study, low))
    warming_up = InOrderPercentilePruner(n_startup_trials=3, n_warmup_steps=2)
    assert not warming_up.prune(study, _frozen(study, low))


def test_percentile_pruner_lets_only_the_top_share_go_on():
    study = optuna.create_study(direction="maximize")
    for v in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        _finished(study, [v])
    trial = _frozen(study, _running(study, [0.42]))
    # The top third starts at the 67th percentile, 0.435; the top half at the median, 0.35.
    assert InOrderPercentilePruner(33, n_startup_trials=6).prune(study, trial)
    assert not InOrderPercentilePruner(50, n_startup_trials=6).prune(study, trial)
    assert not InOrderPercentilePruner(100, n_startup_trials=6).prune(study, trial)


def test_a_trial_among_the_startup_trials_is_decided_without_waiting():
    study = optuna.create_study(direction="maximize")
    _running(study, [])  # trial 0 has not reported step 0, and never will here
    trial = _frozen(study, _running(study, [0.1]))
    started = time.monotonic()
    # Trial 1 has one trial before it, fewer than 2: it cannot be pruned, whatever trial 0 does.
    assert not InOrderPercentilePruner(n_startup_trials=2).prune(study, trial)
    assert time.monotonic() - started < 0.5


def test_median_pruner_ignores_trials_queued_after():
    study = optuna.create_study(direction="maximize")
    _finished(study, [0.2])
    _finished(study, [0.4])
    trial = _running(study, [0.35])
    _finished(study, [0.9])  # queued after `trial`: Optuna's MedianPruner would count them
    _finished(study, [0.9])
    assert not InOrderPercentilePruner(n_startup_trials=2).prune(study, _frozen(study, trial))
    late = _running(study, [0.35])  # sees all four: median 0.65
    assert InOrderPercentilePruner(n_startup_trials=2).prune(study, _frozen(study, late))


def test_median_pruner_places_a_retry_at_the_trial_it_repeats():
    study = optuna.create_study(direction="maximize")
    for v in (0.5, 0.6, 0.7):
        _finished(study, [v])
    study.add_trial(create_trial(state=TrialState.WAITING, system_attrs={"failed_trial": 0}))
    retry = _running(study, [0.1])  # takes the waiting retry: number 3, position 0
    assert retry.number == 3
    assert not InOrderPercentilePruner(n_startup_trials=1).prune(study, _frozen(study, retry))


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_median_pruner_waits_for_earlier_running_trials():
    study = optuna.create_study(direction="maximize")
    earlier = _running(study, [])
    trial = _running(study, [0.5])
    pruner = InOrderPercentilePruner(n_startup_trials=1)
    decision = []
    thread = threading.Thread(
        target=lambda: decision.append(pruner.prune(study, _frozen(study, trial)))
    )
    thread.start()
    time.sleep(0.6)
    assert thread.is_alive() and decision == []  # trial 0 has not reported step 0 yet
    earlier.report(0.9, 0)
    thread.join(timeout=5)
    assert decision == [True]  # decided with trial 0's value, as one worker would


# --------------------------------------------------------------------------- studies


def test_create_queues_the_trials_in_order_with_the_description(storage):
    queued = [{"x": 0.25}, {"x": 0.75}, {}]
    study = studies.create(storage, SEARCH, queued, {"experiment": "exp-1", "md5": {"a": "1"}})
    assert study.study_name.startswith("svm_tune exp-1 ")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.WAITING] * 3
    assert [t.system_attrs.get("fixed_params") for t in trials] == [{"x": 0.25}, {"x": 0.75}, {}]
    attrs = studies.attrs(study)
    assert attrs["n_trials"] == 3 and attrs["md5"] == {"a": "1"} and attrs["kind"] == "svm_tune"
    again, search = studies.load(storage, study.study_name)
    assert search == SEARCH and again.direction == optuna.study.StudyDirection.MAXIMIZE
    with pytest.raises(CifarlabError, match="no study named 'nope'"):
        studies.load(storage, "nope")


def test_open_studies_lists_the_open_ones_of_an_experiment(storage):
    a = studies.create(storage, SEARCH, [{}], {"experiment": "a"})
    b = studies.create(storage, SEARCH, [{}], {"experiment": "b"})
    optuna.create_study(storage=storage, study_name="someone else's")
    assert [s.study_name for s in studies.open_studies(storage)] == [a.study_name, b.study_name]
    assert [s.study_name for s in studies.open_studies(storage, "b")] == [b.study_name]
    assert studies.closed(a) is None
    studies.close(a, "finished")
    assert studies.closed(a) == "finished"
    assert [s.study_name for s in studies.open_studies(storage)] == [b.study_name]


def test_counts_and_settled():
    def t(state, number=0, user=None, system=None, ended=None):
        return types.SimpleNamespace(
            state=state, number=number, user_attrs=user or {}, system_attrs=system or {},
            datetime_complete=ended,
        )  # fmt: skip

    trials = [t(TrialState.COMPLETE), t(TrialState.PRUNED), t(TrialState.COMPLETE)]
    assert studies.counts(trials) == {"COMPLETE": 2, "PRUNED": 1}
    assert studies.settled(trials)
    assert not studies.settled([*trials, t(TrialState.WAITING)])
    assert not studies.settled([*trials, t(TrialState.RUNNING)])
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    # A diverged trial is final; a dead worker's trial is not, until its retry is queued (or
    # for RETRY_WAIT_S at most); a retry is final.
    diverged = t(TrialState.FAIL, 3, user={studies.ERROR_ATTR: "diverged"}, ended=now)
    assert studies.settled([*trials, diverged], now)
    dead = t(TrialState.FAIL, 3, ended=now)
    assert not studies.settled([*trials, dead], now)
    later = now + dt.timedelta(seconds=studies.RETRY_WAIT_S + 1)
    assert studies.settled([*trials, dead], later)
    retry = t(TrialState.COMPLETE, 4, system={"failed_trial": 3, "retry_history": [3]})
    assert studies.settled([*trials, dead, retry], now)
    dead_retry = t(TrialState.FAIL, 4, system={"failed_trial": 3, "retry_history": [3]},
                   ended=now)  # fmt: skip
    assert studies.settled([*trials, dead, dead_retry], now)


# --------------------------------------------------------------------------- workers


def test_work_runs_exactly_the_queued_trials(storage):
    study = studies.create(storage, SEARCH, [{"x": 0.1}, {"x": 0.2}, {"x": 0.3}], {})
    seen = []
    assert workers.work(study, SEARCH, _objective, seen.append) == 3
    trials = study.get_trials()
    assert [(t.number, t.state, t.value) for t in trials] == [
        (0, TrialState.COMPLETE, 0.1), (1, TrialState.COMPLETE, 0.2),
        (2, TrialState.COMPLETE, 0.3),
    ]  # fmt: skip
    assert [t.number for t in seen] == [0, 1, 2]
    assert {t.user_attrs[workers.WORKER_ATTR] for t in trials} == {workers.worker_name()}
    assert workers.work(study, SEARCH, _objective) == 0  # nothing left: no new trial
    assert len(study.get_trials()) == 3


def test_a_waiting_trial_is_taken_by_one_worker_only(tmp_path, storage):
    # Four workers (each with its own connection, as processes have) empty the queue at once.
    url = f"sqlite:///{tmp_path}/o.db"
    study = studies.create(storage, SEARCH, [{}] * 40, {})
    taken = []

    def worker():
        mine, search = studies.load(storages.open_storage(url), study.study_name)
        while (trial := workers._take(mine, search)) is not None:
            taken.append(trial.number)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    twice = sorted({n for n in taken if taken.count(n) > 1})
    assert twice == [], f"trials taken twice: {twice}"
    assert sorted(taken) == list(range(40))


def test_a_closed_study_gets_no_more_trials(storage):
    study = studies.create(storage, SEARCH, [{"x": 0.1}], {})
    studies.close(study, "interrupted")
    assert workers.work(study, SEARCH, _objective) == 0
    assert [t.state for t in study.get_trials()] == [TrialState.WAITING]


def test_run_one_ends_a_trial_by_how_the_objective_ended(storage):
    study = studies.create(storage, SEARCH, [{}] * 4, {})

    def raising(exc):
        def objective(trial):
            raise exc

        return objective

    def take():
        return workers._take(study, SEARCH)

    assert workers.run_one(study, take(), raising(optuna.TrialPruned())).state == (
        TrialState.PRUNED
    )
    diverged = workers.run_one(study, take(), raising(TrainingDiverged("loss is nan")))
    assert diverged.state == TrialState.FAIL
    assert diverged.user_attrs[workers.ERROR_ATTR] == "loss is nan"
    # Anything else is the worker's trouble, not the trial's: FAIL without an error, a retry
    # queued for another worker, and the exception raised again.
    with pytest.raises(ValueError, match="bug"):
        workers.run_one(study, take(), raising(ValueError("bug")))
    trials = study.get_trials()
    assert trials[2].state == TrialState.FAIL and workers.ERROR_ATTR not in trials[2].user_attrs
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 2]
    assert [t.state for t in retries] == [TrialState.WAITING]
    assert workers.run_one(study, take(), _objective).state == TrialState.COMPLETE


def _process(exitcode, pid=4242):
    return types.SimpleNamespace(exitcode=exitcode, pid=pid)


def test_watch_reports_every_trial_once_and_returns_when_settled(storage):
    study = studies.create(storage, SEARCH, [{"x": 0.1}, {"x": 0.2}], {})
    workers.work(study, SEARCH, _objective)
    ended = []
    trials = workers.watch(study, [_process(0)], ended.append, poll_s=0.01)
    assert [t.number for t in ended] == [0, 1] and len(trials) == 2


def test_watch_raises_when_a_worker_fails_or_all_died(storage):
    study = studies.create(storage, SEARCH, [{"x": 0.1}], {})
    with pytest.raises(workers.SearchWorkerError, match=r"worker 4242 exited with code 1"):
        workers.watch(study, [_process(None, 1), _process(1)], lambda t: None, poll_s=0.01)
    with pytest.raises(workers.SearchWorkerError, match=r"every search worker died \(exit codes "
                       r"-9, -9\) with trials left"):  # fmt: skip
        workers.watch(study, [_process(-9), _process(-9)], lambda t: None, poll_s=0.01)
