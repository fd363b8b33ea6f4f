"""Tests of cifarlab.linear.search: the trials of a search, one trial's objective, the records
and table of a study, and whole searches (local workers, a joining worker, a killed one)."""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import learnable_images
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from cifarlab.data.prepared import Split
from cifarlab.errors import CifarlabError, ConfigError, TrainingDiverged
from cifarlab.linear import search
from cifarlab.linear import trials as trial_lists
from cifarlab.linear.classifier import LinearClassifier, train_linear
from cifarlab.linear.search import (
    TrialRecord,
    join_search,
    linear_search,
    progress_message,
    search_table,
)
from cifarlab.linear.sgd import single_blas_thread
from cifarlab.params import SECTIONS, check_values, linear_hyperparameters
from cifarlab.tuning import storage as storages
from cifarlab.tuning import study as studies
from cifarlab.tuning.storage import open_storage
from cifarlab.tuning.workers import SearchWorkerError

BASE = dict(loss="hinge", epochs=6, lr_decay=0.9, random_state=0)
# A random search with the median pruner: 8 trials, some complete, some pruned.
TUNE = {
    "sampler": "random", "pruner": "median", "min_epochs": 2, "n_startup_trials": 2,
    "percentile": 50, "n_trials": 8, "learning_rate_range": [1e-6, 1e-3],
    "reg_range": [1e-2, 10.0], "seed": 0,
    "learning_rates": [1e-5, 1e-4], "regs": [1.0], "batch_sizes": [16, 32],
}  # fmt: skip
DESCRIPTION = {"experiment": "tests", "md5": {}}


def images(seed=0, n=120, d=48, n_classes=3):
    """uint8 'images' whose class shows in a few pixels, with noise: learnable, not trivially."""
    return learnable_images(seed, n, d, n_classes, high=200, boost=40)


TRAIN, VAL = Split(*images()), Split(*images(seed=1, n=45))


def searched(**hyper):
    return {k: hyper[k] for k in trial_lists.SEARCHED}


# --------------------------------------------------------------------------- trial lists


def test_grid_trials_cover_every_combination_in_order():
    trials = trial_lists.grid_trials(
        BASE, learning_rates=[1e-3, 1e-2], regs=[0.1, 1.0, 10.0], batch_sizes=[8, 16]
    )
    assert len(trials) == 12
    assert [(t["learning_rate"], t["reg"], t["batch_size"]) for t in trials[:3]] == [
        (1e-3, 0.1, 8),
        (1e-3, 0.1, 16),
        (1e-3, 1.0, 8),
    ]
    assert all(t["loss"] == "hinge" and t["epochs"] == 6 for t in trials)
    assert len({(t["learning_rate"], t["reg"], t["batch_size"]) for t in trials}) == 12


def test_random_trials_are_seeded_log_uniform_and_rounded():
    kw = dict(n_trials=400, learning_rate_range=[1e-7, 1e-3], reg_range=[1.0, 1e4],
              batch_sizes=[50, 100, 200])  # fmt: skip
    trials = trial_lists.random_trials(BASE, rng=np.random.default_rng(3), **kw)
    again = trial_lists.random_trials(BASE, rng=np.random.default_rng(3), **kw)
    other = trial_lists.random_trials(BASE, rng=np.random.default_rng(4), **kw)
    assert trials == again and trials != other
    lrs = np.array([t["learning_rate"] for t in trials])
    regs = np.array([t["reg"] for t in trials])
    assert lrs.min() >= 1e-7 * 0.999 and lrs.max() <= 1e-3 * 1.001
    assert regs.min() >= 1.0 * 0.999 and regs.max() <= 1e4 * 1.001
    # Log-uniform: each decade of the range holds about a quarter of the draws (not ~0.01%).
    for low in (1e-7, 1e-6, 1e-5, 1e-4):
        share = np.mean((lrs >= low) & (lrs < 10 * low))
        assert 0.17 < share < 0.33, (low, share)
    assert all(float(f"{v:.3g}") == v for v in np.concatenate([lrs, regs]))
    sizes = [t["batch_size"] for t in trials]
    assert set(sizes) == {50, 100, 200} and all(type(s) is int for s in sizes)


def test_random_trials_draw_the_recorded_trials():
    # The draw order (all learning rates, all regs, then the batch sizes) is part of the result.
    trials = trial_lists.random_trials(
        {"loss": "hinge"}, n_trials=5, learning_rate_range=[1e-7, 1e-3], reg_range=[1.0, 1e4],
        batch_sizes=[50, 100, 200], rng=np.random.default_rng(3),
    )  # fmt: skip
    assert [(t["learning_rate"], t["reg"], t["batch_size"]) for t in trials] == [
        (2.2e-07, 54.0, 100), (8.86e-07, 82.5, 100), (0.00016, 4.35, 200),
        (2.13e-05, 868.0, 100), (2.38e-07, 2.85, 100),
    ]  # fmt: skip


def test_queued_trials_follow_the_sampler():
    grid = trial_lists.queued_trials({**TUNE, "sampler": "grid"})
    assert grid == trial_lists.grid_trials({}, learning_rates=[1e-5, 1e-4], regs=[1.0],
                                      batch_sizes=[16, 32])  # fmt: skip
    assert len(grid) == 4 and set(grid[0]) == set(trial_lists.SEARCHED)
    drawn = trial_lists.queued_trials(TUNE)
    assert drawn == trial_lists.random_trials(
        {}, n_trials=8, learning_rate_range=[1e-6, 1e-3], reg_range=[1e-2, 10.0],
        batch_sizes=[16, 32], rng=np.random.default_rng(0),
    )  # fmt: skip
    assert drawn != trial_lists.queued_trials({**TUNE, "seed": 1})
    assert trial_lists.queued_trials({**TUNE, "sampler": "tpe"}) == [{}] * 8
    with pytest.raises(ConfigError, match=r"sampler must be 'random', 'grid' or 'tpe', got 'cma'"):
        trial_lists.queued_trials({**TUNE, "sampler": "cma"})


def test_search_space_spans_the_ranges_and_the_grid():
    space = trial_lists.search_space({**TUNE, "learning_rates": [1e-7, 1e-4], "regs": [100.0]})
    lr, reg, size = space["learning_rate"], space["reg"], space["batch_size"]
    assert isinstance(lr, FloatDistribution) and lr.log and (lr.low, lr.high) == (1e-7, 1e-3)
    assert isinstance(reg, FloatDistribution) and reg.log and (reg.low, reg.high) == (1e-2, 100.0)
    assert isinstance(size, CategoricalDistribution) and list(size.choices) == [16, 32]
    # Every queued trial is inside it (Optuna would refuse a fixed value outside).
    for sampler in ("grid", "random"):
        for trial in trial_lists.queued_trials({**TUNE, "sampler": sampler}):
            assert lr.low <= trial["learning_rate"] <= lr.high
            assert reg.low <= trial["reg"] <= reg.high and trial["batch_size"] in size.choices


def test_check_trials_names_the_first_bad_trial(tmp_path):
    trial_lists.check_trials(BASE, trial_lists.queued_trials(TUNE))
    trials = [{"learning_rate": 1e-5}, {"learning_rate": 1e-5}, {"learning_rate": 0.0}]
    with pytest.raises(ConfigError, match=r"^trial 2: learning_rate must be .*> 0, got 0\.0"):
        trial_lists.check_trials(BASE, trials)
    with pytest.raises(ConfigError, match=r"^trial 0: unknown parameter 'lr'"):
        trial_lists.check_trials(BASE, [{"lr": 1e-3}])
    with pytest.raises(ConfigError, match="no trial to run"):
        trial_lists.check_trials(BASE, [])
    # A search with a bad trial stops before its study exists.
    url = f"sqlite:///{tmp_path}/o.db"
    bad = {**TUNE, "sampler": "grid", "regs": [1.0, -1.0]}
    with pytest.raises(ConfigError, match=r"^trial 2: reg must be"):
        linear_search(TRAIN, VAL, BASE, bad, n_jobs=1, storage_url=url, description=DESCRIPTION)
    assert optuna.get_all_study_summaries(open_storage(url)) == []


def test_single_blas_thread_limits_blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with single_blas_thread():
        infos = threadpoolctl.threadpool_info()
        assert all(i["num_threads"] == 1 for i in infos if i["user_api"] == "blas")


# --------------------------------------------------------------------------- one trial


class _PruneFrom(optuna.pruners.BasePruner):
    def __init__(self, step):
        self.step = step

    def prune(self, study, trial):
        return trial.last_step >= self.step


def _run_objective(params, pruner=None, sampler=None):
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=sampler)
    if params:
        study.enqueue_trial(params)
    objective = search.make_objective(BASE, trial_lists.search_space(TUNE), TRAIN.X, TRAIN.y, VAL.X,
                                      VAL.y)  # fmt: skip
    study.optimize(objective, n_trials=1)
    return study.trials[0]


def test_objective_trains_the_trial_as_a_direct_fit():
    params = {"learning_rate": 1e-4, "reg": 1.0, "batch_size": 16}
    trial = _run_objective(params)
    model = LinearClassifier(**BASE, **params).fit(TRAIN.X, TRAIN.y, VAL.X, VAL.y)
    assert trial.state == TrialState.COMPLETE and trial.params == params
    assert trial.value == model.val_accuracy_history_[model.best_epoch_]
    attrs = trial.user_attrs
    np.testing.assert_array_equal(attrs["loss"], model.loss_history_)
    np.testing.assert_array_equal(attrs["train_accuracy"], model.train_accuracy_history_)
    np.testing.assert_array_equal(attrs["val_accuracy"], model.val_accuracy_history_)
    assert attrs["best_epoch"] == model.best_epoch_ == 5 and attrs["seconds"] >= 0
    # The pruner saw the best val accuracy so far after every epoch (steps from 0).
    best_so_far = np.maximum.accumulate(model.val_accuracy_history_)
    assert trial.intermediate_values == dict(enumerate(best_so_far))
    assert (np.diff(model.val_accuracy_history_) < 0).any()  # so the two differ here


def test_a_pruned_trial_keeps_its_curves_up_to_the_prune_epoch():
    params = {"learning_rate": 1e-4, "reg": 1.0, "batch_size": 32}
    trial = _run_objective(params, pruner=_PruneFrom(2))
    model = LinearClassifier(**BASE, **params).fit(TRAIN.X, TRAIN.y, VAL.X, VAL.y)
    assert trial.state == TrialState.PRUNED
    np.testing.assert_array_equal(trial.user_attrs["val_accuracy"],
                                  model.val_accuracy_history_[:3])  # fmt: skip
    steps_per_epoch = math.ceil(len(TRAIN.y) / 32)
    np.testing.assert_array_equal(trial.user_attrs["loss"],
                                  model.loss_history_[: 3 * steps_per_epoch])  # fmt: skip
    assert trial.user_attrs["best_epoch"] == 2
    record = TrialRecord.from_frozen(trial)
    assert record.state == "PRUNED" and record.val_accuracy == model.val_accuracy_history_[2]


def test_an_empty_trial_is_drawn_from_the_space():
    trial = _run_objective({}, sampler=optuna.samplers.TPESampler(seed=0))
    space = trial_lists.search_space(TUNE)
    assert trial.state == TrialState.COMPLETE and set(trial.params) == set(trial_lists.SEARCHED)
    assert space["learning_rate"].low <= trial.params["learning_rate"] <= 1e-3
    assert space["reg"].low <= trial.params["reg"] <= space["reg"].high
    assert trial.params["batch_size"] in (16, 32)


# --------------------------------------------------------------------------- records, table


DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-7, 1e-3, log=True),
    "reg": FloatDistribution(1e-2, 1e3, log=True),
    "batch_size": CategoricalDistribution([16, 32]),
}


def _frozen(state, number=0, val=(0.3, 0.4), **kw):
    """A FrozenTrial as a worker leaves it (val accuracy per epoch in ``val``)."""
    curves = {
        "loss": [2.0, 1.5, 1.0, 0.5],
        "train_accuracy": [v + 0.1 for v in val],
        "val_accuracy": list(val),
        "best_epoch": len(val) - 1,
        "seconds": 1.25,
    }
    user_attrs = {**(curves if state != TrialState.FAIL else {}), "cifarlab.worker": "vm:7",
                  **kw.pop("user_attrs", {})}  # fmt: skip
    trial = create_trial(
        state=state,
        value=val[-1] if state == TrialState.COMPLETE else None,
        params={"learning_rate": 1e-5, "reg": 100.0, "batch_size": 16},
        distributions=DISTRIBUTIONS,
        user_attrs=user_attrs,
        intermediate_values=dict(enumerate(val)),
        **kw,
    )
    trial.number = number
    return trial


def test_records_of_complete_pruned_and_failed_trials():
    done = TrialRecord.from_frozen(_frozen(TrialState.COMPLETE, number=3))
    assert (done.number, done.state, done.worker, done.error, done.retry_of) == (
        3, "COMPLETE", "vm:7", None, None,
    )  # fmt: skip
    assert done.hyperparameters == {"learning_rate": 1e-5, "reg": 100.0, "batch_size": 16}
    assert done.val_accuracy == 0.4 and done.train_accuracy == pytest.approx(0.5)
    assert done.seconds == 1.25 and done.best_epoch == 1 and len(done.loss_history) == 4
    assert done.name == "trial 3: lr=1e-05 reg=100 batch=16"
    pruned = TrialRecord.from_frozen(_frozen(TrialState.PRUNED, val=(0.3, 0.2, 0.1)))
    assert pruned.state == "PRUNED" and pruned.val_accuracy == 0.1
    np.testing.assert_array_equal(pruned.val_accuracy_history, [0.3, 0.2, 0.1])
    # Diverged: its error; no accuracy.
    diverged = TrialRecord.from_frozen(
        _frozen(TrialState.FAIL, user_attrs={"cifarlab.error": "training diverged: loss is nan"})
    )
    assert diverged.error == "training diverged: loss is nan"
    assert math.isnan(diverged.val_accuracy) and math.isnan(diverged.train_accuracy)
    # Its worker died: no curves of its own but the val accuracies it reported; a retry says
    # which trial it repeats.
    killed = TrialRecord.from_frozen(_frozen(TrialState.FAIL, val=(0.25, 0.5)))
    assert killed.error is None and killed.best_epoch == -1 and math.isnan(killed.val_accuracy)
    np.testing.assert_array_equal(killed.val_accuracy_history, [0.25, 0.5])
    retry = TrialRecord.from_frozen(
        _frozen(TrialState.COMPLETE, number=9, system_attrs={"failed_trial": 4})
    )
    assert retry.retry_of == 4


def _record(number, state, val):
    return TrialRecord.from_frozen(_frozen(getattr(TrialState, state), number, val=(0.1, val)))


def test_search_table_chooses_the_best_complete_trial():
    records = [_record(2, "COMPLETE", 0.5), _record(0, "COMPLETE", 0.4),
               _record(1, "PRUNED", 0.9), _record(3, "COMPLETE", 0.5),
               _record(4, "FAIL", 0.9)]  # fmt: skip
    table, best = search_table(records)
    assert list(table.columns) == [
        "trial", "learning_rate", "reg", "batch_size", "state", "train_accuracy",
        "val_accuracy", "best_epoch", "epochs_run", "final_loss",
    ]  # fmt: skip
    assert list(table["trial"]) == [0, 1, 2, 3, 4]
    assert list(table["state"]) == ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "FAIL"]
    # 0.5 twice: the lower number; the pruned trial's 0.9 is not a result.
    assert best["trial"] == 2 and best["val_accuracy"] == 0.5 and best["state"] == "COMPLETE"
    assert best["final_loss"] == 0.5 and best["epochs_run"] == 2
    with pytest.raises(CifarlabError, match=r"no trial of the search completed \(2 trials\)"):
        search_table([_record(0, "PRUNED", 0.5), _record(1, "FAIL", 0.5)])


def test_progress_message_says_trials_done_pruned_and_time_left():
    record = TrialRecord.from_frozen(_frozen(TrialState.COMPLETE, number=7, val=(0.3, 0.39125)))
    counts = {"COMPLETE": 2, "PRUNED": 1, "RUNNING": 2, "WAITING": 19}
    line = progress_message(record, counts, total=24, elapsed=30.0)
    # 10 s a trial so far, 21 to go.
    assert line == ("3/24 trials done (1 pruned), 3:30 left; trial 7: lr=1e-05 reg=100 "
                    "batch=16 val accuracy 0.3912 (1.2 s on vm:7)")  # fmt: skip
    assert "1:00:00 left" in progress_message(record, {"COMPLETE": 1}, 2, 3600.0)
    assert "0:00 left" in progress_message(record, {"COMPLETE": 24}, 24, 99.0)
    assert "? left" in progress_message(record, {"RUNNING": 2}, 24, 5.0)
    pruned = TrialRecord.from_frozen(_frozen(TrialState.PRUNED, val=(0.3, 0.2, 0.1)))
    assert " pruned after epoch 3 (val accuracy 0.1000) (" in progress_message(
        pruned, {"PRUNED": 1}, 2, 1.0)  # fmt: skip
    diverged = TrialRecord.from_frozen(
        _frozen(TrialState.FAIL, user_attrs={"cifarlab.error": "loss is nan"})
    )
    assert " failed: loss is nan (" in progress_message(diverged, {"FAIL": 1}, 2, 1.0)
    killed = TrialRecord.from_frozen(_frozen(TrialState.FAIL))
    assert " failed: its worker died (" in progress_message(killed, {"FAIL": 1}, 2, 1.0)


# --------------------------------------------------------------------------- params


SVM = {
    "loss": "softmax", "delta": 1.0, "reg_type": "l2", "l1_ratio": 0.5, "epochs": 4,
    "momentum": 0.9, "nesterov": True, "lr_decay": 0.9, "patience": None,
    "train_eval_size": 1000, "seed": 0,
}  # fmt: skip


def test_svm_and_svm_tune_sections_become_trials():
    hyper = linear_hyperparameters(check_values(SECTIONS["svm"], SVM, "svm."))
    assert hyper["loss"] == "softmax" and hyper["nesterov"] is True
    assert hyper["patience"] is None and hyper["random_state"] == 0
    LinearClassifier(**hyper)  # every key is a LinearClassifier argument
    for sampler in ("random", "grid", "tpe"):
        for pruner in ("none", "median", "percentile", "hyperband"):
            tune = check_values(SECTIONS["svm_tune"], {**TUNE, "sampler": sampler,
                                                       "pruner": pruner}, "svm_tune.")  # fmt: skip
            trial_lists.check_trials(hyper, trial_lists.queued_trials(tune))
    with pytest.raises(ConfigError, match=r"svm_tune\.sampler must be one of \['random', 'grid', "
                       r"'tpe'\], got 'bayes'"):  # fmt: skip
        check_values(SECTIONS["svm_tune"], {**TUNE, "sampler": "bayes"}, "svm_tune.")
    with pytest.raises(ConfigError, match=r"svm_tune\.pruner must be one of \['none', 'median', "
                       r"'percentile', 'hyperband'\], got 'asha'"):  # fmt: skip
        check_values(SECTIONS["svm_tune"], {**TUNE, "pruner": "asha"}, "svm_tune.")
    with pytest.raises(ConfigError, match=r"svm_tune\.min_epochs must be an integer >= 1"):
        check_values(SECTIONS["svm_tune"], {**TUNE, "min_epochs": 0}, "svm_tune.")
    for bad in (0, 101, "a third"):
        with pytest.raises(ConfigError, match=r"svm_tune\.percentile must be a number in "
                                              r"\(0, 100\], got"):  # fmt: skip
            check_values(SECTIONS["svm_tune"], {**TUNE, "percentile": bad}, "svm_tune.")
    with pytest.raises(ConfigError, match=r"svm_tune\.method: unknown"):
        check_values(SECTIONS["svm_tune"], {**TUNE, "method": "grid"}, "svm_tune.")


# --------------------------------------------------------------------------- whole searches


def _search(url, settings=TUNE, n_jobs=1, base=BASE, data=None):
    seen = []
    train, val = data or (TRAIN, VAL)
    table, best, name = linear_search(
        train, val, base, settings, n_jobs=n_jobs, storage_url=url, description=DESCRIPTION,
        on_trial=lambda record, counts: seen.append((record, dict(counts))),
    )  # fmt: skip
    return table, best, name, seen


def _trials(url, name):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


@pytest.fixture(scope="module")
def median_search(tmp_path_factory):
    """TUNE searched by one local worker."""
    url = f"sqlite:///{tmp_path_factory.mktemp('median')}/o.db"
    return url, *_search(url)


def test_a_search_records_every_trial_and_chooses_the_best_complete_one(median_search):
    url, table, best, name, seen = median_search
    trials = _trials(url, name)
    assert [t.number for t in trials] == list(range(8))  # exactly the queued trials
    assert [t.params for t in trials] == trial_lists.queued_trials(TUNE)
    states = list(table["state"])
    assert set(states) == {"COMPLETE", "PRUNED"}, states  # the median pruner stopped some
    assert list(table["trial"]) == list(range(8))
    # Pruned trials: their curves up to the epoch they were stopped at, from min_epochs on.
    pruned = table[table["state"] == "PRUNED"]
    assert (pruned["epochs_run"] >= TUNE["min_epochs"]).all()
    assert (pruned["epochs_run"] < BASE["epochs"]).all()
    assert (table[table["state"] == "COMPLETE"]["epochs_run"] == BASE["epochs"]).all()
    for t in trials:
        assert len(t.user_attrs["val_accuracy"]) == len(t.intermediate_values)
    complete = table[table["state"] == "COMPLETE"]
    top = complete["val_accuracy"].max()
    assert best["val_accuracy"] == top and best["state"] == "COMPLETE"
    assert best["trial"] == int(complete[complete["val_accuracy"] == top]["trial"].min())
    assert isinstance(best["batch_size"], int) and isinstance(best["learning_rate"], float)
    # on_trial saw every trial once, with the study's counts.
    assert sorted(r.number for r, _ in seen) == list(range(8))
    assert sum(seen[-1][1].get(s, 0) for s in ("COMPLETE", "PRUNED")) == 8
    # The study is closed: nobody can join it any more.
    assert studies.open_studies(open_storage(url)) == []
    assert optuna.load_study(study_name=name, storage=open_storage(url)).user_attrs[
        "cifarlab.closed"] == "finished"  # fmt: skip


def test_retraining_the_chosen_trial_reproduces_it(median_search):
    _, table, best, _, _ = median_search
    model, summary = train_linear(TRAIN, VAL, {**BASE, **searched(**best)})
    assert summary["val_accuracy"] == best["val_accuracy"]
    assert summary["train_accuracy"] == pytest.approx(best["train_accuracy"])
    assert summary["best_epoch"] == best["best_epoch"] == BASE["epochs"] - 1


def _both_worked(url, name):
    """Skip (not pass) a two-worker test whose second worker started too late to take a trial:
    it compared nothing (the machine was busy)."""
    if len({t.user_attrs["cifarlab.worker"] for t in _trials(url, name)}) < 2:
        pytest.skip("one worker ran every trial before the other started")


def test_a_search_does_not_depend_on_the_number_of_workers(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    one, best_one, _, _ = _search(url, n_jobs=1, data=_slow_data())
    two, best_two, name, _ = _search(url, n_jobs=2, data=_slow_data())
    assert "PRUNED" in set(one["state"]), one
    assert one.equals(two), (one, two)  # the same trials, pruned at the same epochs
    assert best_one == best_two
    _both_worked(url, name)


def test_a_grid_search_with_two_workers_trains_each_trial_as_a_direct_fit(tmp_path):
    settings = {**TUNE, "sampler": "grid", "pruner": "none"}
    url = f"sqlite:///{tmp_path}/o.db"
    train, val = _slow_data()
    table, best, name, _ = _search(url, settings, n_jobs=2, data=(train, val))
    queued = trial_lists.queued_trials(settings)
    assert [searched(**row) for row in table.to_dict("records")] == queued
    for row in table.itertuples():
        hyper = {"learning_rate": row.learning_rate, "reg": row.reg, "batch_size": row.batch_size}
        model = LinearClassifier(**BASE, **hyper).fit(train.X, train.y, val.X, val.y)
        assert row.state == "COMPLETE" and row.epochs_run == BASE["epochs"]
        assert row.val_accuracy == model.val_accuracy_history_[-1]
        assert row.final_loss == model.loss_history_[-1]
    assert best["val_accuracy"] == table["val_accuracy"].max()
    _both_worked(url, name)


def test_a_tpe_search_with_one_worker_is_reproducible(tmp_path):
    settings = {**TUNE, "sampler": "tpe", "pruner": "hyperband", "min_epochs": 1, "n_trials": 6}
    url = f"sqlite:///{tmp_path}/o.db"
    first, best, name, _ = _search(url, settings)
    again, best_again, other, _ = _search(url, settings)
    assert name != other
    assert first.equals(again), (first, again)
    assert best == best_again
    lrs, regs = first["learning_rate"], first["reg"]
    assert lrs.nunique() == 6 and regs.nunique() == 6  # drawn, not queued
    assert lrs.between(1e-6, 1e-3).all() and regs.between(1e-2, 10.0).all()
    assert set(first["batch_size"]) <= {16, 32}
    assert "PRUNED" in set(first["state"]), first  # hyperband stopped some: same ones twice


def test_a_diverging_trial_stops_the_search_after_it_was_reported(tmp_path):
    settings = {**TUNE, "sampler": "grid", "pruner": "none", "learning_rates": [1e-5, 1e30],
                "batch_sizes": [16]}  # fmt: skip
    url = f"sqlite:///{tmp_path}/o.db"
    seen = []
    with pytest.raises(TrainingDiverged) as info:
        linear_search(TRAIN, VAL, BASE, settings, n_jobs=1, storage_url=url,
                      description=DESCRIPTION, on_trial=lambda r, c: seen.append(r))  # fmt: skip
    message = str(info.value)
    assert message.startswith("trial 1: lr=1e+30 reg=1 batch=16: training diverged")
    failed = [r for r in seen if r.state == "FAIL"]
    assert [r.number for r in failed] == [1] and "training diverged" in failed[0].error
    assert math.isnan(failed[0].val_accuracy)
    storage = open_storage(url)
    assert studies.open_studies(storage) == []
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.user_attrs["cifarlab.closed"] == "failed"


def test_a_worker_that_dies_at_start_is_one_error_not_a_hang(tmp_path, monkeypatch):
    # Every spawned Python dies before it reads a byte of its start-up data. The training split
    # here (37 MB) is far more than a pipe holds: had it travelled through each worker's pipe,
    # the search would block for good writing to a worker already dead.
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-such-python"))
    train, val = _slow_data()

    def hung(signum, frame):
        raise AssertionError("the search hung on its dead workers")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with pytest.raises(SearchWorkerError) as info:
            linear_search(train, val, BASE, TUNE, n_jobs=2, storage_url=f"sqlite:///{tmp_path}/o.db",
                          description=DESCRIPTION)  # fmt: skip
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert re.fullmatch(r"search worker \d+ exited with code 1 \(its error is above\)",
                        str(info.value))  # fmt: skip


@functools.cache
def _slow_data():
    """Train / val with trials long enough (about 0.3 s each) for a second worker to arrive,
    or a killer to catch one, before they are all done."""
    return Split(*images(seed=2, n=12_000, d=3072)), Split(*images(seed=3, n=45, d=3072))


def _join_elsewhere(url, train, val, out, ready):
    """A worker from elsewhere: joins the first open study once a trial of it was taken."""
    storage = open_storage(url)
    ready.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = studies.open_studies(storage)
        if found:
            study = optuna.load_study(study_name=found[0].study_name, storage=storage)
            if any(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False)):
                ran = join_search(url, found[0].study_name, train, val)
                Path(out).write_text(str(ran))
                return
        time.sleep(0.02)
    raise SystemExit("no study to join")


def test_a_worker_that_joins_shares_the_trials(tmp_path):
    url, out = f"sqlite:///{tmp_path}/o.db", tmp_path / "ran"
    open_storage(url)  # its tables, before two processes open it at once (see issue12_bugs)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    data = _slow_data()
    joiner = context.Process(target=_join_elsewhere, args=(url, *data, str(out), ready))
    joiner.start()
    try:
        assert ready.wait(timeout=60)
        table, best, name, seen = _search(url, data=data)
        joiner.join(timeout=30)
    finally:
        joiner.kill()
    assert joiner.exitcode == 0
    trials = _trials(url, name)
    assert [t.number for t in trials] == list(range(8))  # none twice, none lost, none more
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    by = [t.user_attrs["cifarlab.worker"] for t in trials]
    joined = f"{socket.gethostname()}:{joiner.pid}"
    assert 0 < by.count(joined) < 8, by  # both worked
    assert by.count(joined) == int(out.read_text())
    assert sorted(r.number for r, _ in seen) == list(range(8))  # the stage saw each once
    assert len(table) == 8 and best["state"] == "COMPLETE"
    assert studies.open_studies(open_storage(url)) == []


def _kill_a_worker_mid_trial(url, killed, stop):
    """SIGKILL a local worker of the search while its trial is under way (an epoch reported,
    most to go)."""
    storage = open_storage(url)
    while not stop.is_set():
        local = {p.pid for p in multiprocessing.active_children()
                 if p.name.startswith("svm_tune worker")}  # fmt: skip
        found = studies.open_studies(storage)
        if len(local) == 2 and found:
            study = optuna.load_study(study_name=found[0].study_name, storage=storage)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                pid = int(t.user_attrs.get("cifarlab.worker", "x:0").rsplit(":", 1)[1])
                if pid in local and 1 <= len(t.intermediate_values) <= 4:
                    os.kill(pid, signal.SIGKILL)
                    killed["worker"] = f"{socket.gethostname()}:{pid}"
                    return
        time.sleep(0.005)


def test_a_killed_worker_s_trial_runs_again_on_another(tmp_path, monkeypatch):
    # The stage declares a worker dead after one missed heartbeat (every worker beats every
    # HEARTBEAT_INTERVAL_S), not after GRACE_PERIOD_S: seconds instead of a minute of test.
    monkeypatch.setattr(storages, "GRACE_PERIOD_S", storages.HEARTBEAT_INTERVAL_S + 1)
    base, settings = {**BASE, "epochs": 12}, {**TUNE, "pruner": "none", "n_trials": 6}
    url = f"sqlite:///{tmp_path}/o.db"
    open_storage(url)  # its tables, before two threads open it at once (see issue12_bugs)
    killed, stop = {}, threading.Event()
    killer = threading.Thread(target=_kill_a_worker_mid_trial, args=(url, killed, stop))
    killer.start()
    try:
        table, best, name, seen = _search(url, settings, n_jobs=2, base=base, data=_slow_data())
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was killed mid-trial"
    records = {r.number: r for r, _ in seen}
    (dead,) = [r for r in records.values() if r.state == "FAIL"]
    assert dead.worker == killed["worker"]
    assert dead.error is None  # its worker died: KILLED in MLflow, not FAILED
    (retry,) = [r for r in records.values() if r.retry_of == dead.number]
    assert retry.state == "COMPLETE" and retry.worker != dead.worker
    assert retry.hyperparameters == dead.hyperparameters
    # Every queued trial ended once, the dead one through its retry.
    ended = [r.retry_of if r.retry_of is not None else r.number
             for r in records.values() if r.state != "FAIL"]  # fmt: skip
    assert sorted(ended) == list(range(6))
    assert len(records) == len(table) == 7 and sorted(records) == list(range(7))
    assert best["state"] == "COMPLETE"
