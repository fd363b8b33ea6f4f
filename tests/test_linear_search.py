"""Tests of cifarlab.linear.search: trial lists, trials run in parallel, the svm_tune table."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from conftest import learnable_images

from cifarlab.data.prepared import Split
from cifarlab.errors import ConfigError, TrainingDiverged
from cifarlab.linear import search
from cifarlab.linear.classifier import LinearClassifier, train_linear
from cifarlab.linear.search import (
    TrialResult,
    linear_search,
    linear_search_trials,
    progress_message,
)
from cifarlab.linear.sgd import single_blas_thread
from cifarlab.params import SECTIONS, check_values, linear_hyperparameters

BASE = dict(loss="hinge", epochs=3, lr_decay=0.9, random_state=0)


def images(seed=0, n=120, d=48, n_classes=3):
    """uint8 'images' whose class shows in a few pixels, with noise: learnable, not trivially."""
    return learnable_images(seed, n, d, n_classes, high=200, boost=40)


TRAIN, VAL = Split(*images()), Split(*images(seed=1, n=45))


# --------------------------------------------------------------------------- trial lists


def test_grid_trials_cover_every_combination_in_order():
    trials = search.grid_trials(
        BASE, learning_rates=[1e-3, 1e-2], regs=[0.1, 1.0, 10.0], batch_sizes=[8, 16]
    )
    assert len(trials) == 12
    assert [(t["learning_rate"], t["reg"], t["batch_size"]) for t in trials[:3]] == [
        (1e-3, 0.1, 8),
        (1e-3, 0.1, 16),
        (1e-3, 1.0, 8),
    ]
    assert all(t["loss"] == "hinge" and t["epochs"] == 3 for t in trials)
    assert len({(t["learning_rate"], t["reg"], t["batch_size"]) for t in trials}) == 12


def test_random_trials_are_seeded_log_uniform_and_rounded():
    kw = dict(n_trials=400, learning_rate_range=[1e-7, 1e-3], reg_range=[1.0, 1e4],
              batch_sizes=[50, 100, 200])  # fmt: skip
    trials = search.random_trials(BASE, rng=np.random.default_rng(3), **kw)
    again = search.random_trials(BASE, rng=np.random.default_rng(3), **kw)
    other = search.random_trials(BASE, rng=np.random.default_rng(4), **kw)
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
    trials = search.random_trials(
        {"loss": "hinge"}, n_trials=5, learning_rate_range=[1e-7, 1e-3], reg_range=[1.0, 1e4],
        batch_sizes=[50, 100, 200], rng=np.random.default_rng(3),
    )  # fmt: skip
    assert [(t["learning_rate"], t["reg"], t["batch_size"]) for t in trials] == [
        (2.2e-07, 54.0, 100), (8.86e-07, 82.5, 100), (0.00016, 4.35, 200),
        (2.13e-05, 868.0, 100), (2.38e-07, 2.85, 100),
    ]  # fmt: skip


def test_an_unknown_search_method_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method must be 'grid' or 'random', got 'bayes'"):
        linear_search_trials(BASE, "bayes", {})


# --------------------------------------------------------------------------- running trials


TRIALS = search.grid_trials(
    dict(BASE, train_eval_size=60), learning_rates=[1e-5, 1e-4], regs=[1.0, 100.0],
    batch_sizes=[16, 32],
)  # fmt: skip


def test_trials_match_a_direct_fit_and_come_back_in_order():
    seen = []
    results = search.run_trials(
        TRIALS, TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=1, on_trial=seen.append
    )
    assert [r.index for r in results] == list(range(len(TRIALS)))
    assert sorted(r.index for r in seen) == list(range(len(TRIALS)))
    for trial, result in zip(TRIALS, results, strict=True):
        model = LinearClassifier(**trial).fit(TRAIN.X, TRAIN.y, VAL.X, VAL.y)
        np.testing.assert_array_equal(result.loss_history, model.loss_history_)
        np.testing.assert_array_equal(result.val_accuracy_history, model.val_accuracy_history_)
        assert result.val_accuracy == model.val_accuracy_history_[-1]
        assert result.error is None and result.seconds >= 0
        assert result.name.startswith(f"trial {result.index}: lr=")


def test_results_do_not_depend_on_the_number_of_workers():
    calls = []
    serial = search.run_trials(TRIALS, TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=1)
    parallel = search.run_trials(
        TRIALS, TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=2,
        on_trial=lambda r: calls.append(os.getpid()),
    )  # fmt: skip
    assert calls == [os.getpid()] * len(TRIALS)  # on_trial runs in this process
    for a, b in zip(serial, parallel, strict=True):
        assert a.hyperparameters == b.hyperparameters
        for field in ("loss_history", "train_accuracy_history", "val_accuracy_history"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_diverging_trial_is_reported_then_raised(n_jobs):
    trials = [dict(t) for t in TRIALS[:3]]
    trials[1] = dict(trials[1], learning_rate=1e30)
    seen = []
    with pytest.raises(TrainingDiverged) as info:
        search.run_trials(
            trials, TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=n_jobs, on_trial=seen.append
        )
    message = str(info.value)
    assert message.startswith("trial 1: lr=1e+30")
    assert "at step " in message and "learning_rate=1e+30" in message and "reg=1.0" in message
    failed = [r for r in seen if r.error is not None]
    assert len(failed) == 1 and failed[0].index == 1 and math.isnan(failed[0].val_accuracy)


def test_bad_trials_or_workers_fail_before_any_training():
    with pytest.raises(ConfigError, match="n_jobs must be an integer >= 1, got 0"):
        search.run_trials(TRIALS, TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=0)
    with pytest.raises(ConfigError, match="at least one"):
        search.run_trials([], TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=1)
    # Every trial is checked before the first one trains: trial 0 is fine, trial 2 is not.
    bad = [*TRIALS[:2], dict(TRIALS[2], learning_rate=0.0)]
    seen = []
    for n_jobs in (1, 2):
        with pytest.raises(ConfigError, match=r"^trial 2: learning_rate must be .*> 0, got 0\.0"):
            search.run_trials(
                bad, TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=n_jobs, on_trial=seen.append
            )
    with pytest.raises(ConfigError, match=r"^trial 0: unknown parameter 'lr'"):
        search.run_trials([{"lr": 1e-3}], TRAIN.X, TRAIN.y, VAL.X, VAL.y, n_jobs=1)
    assert seen == []


def test_single_blas_thread_limits_blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with single_blas_thread():
        infos = threadpoolctl.threadpool_info()
        assert all(i["num_threads"] == 1 for i in infos if i["user_api"] == "blas")


def test_linear_search_table_best_and_final_training_agree():
    table, best = linear_search(TRAIN, VAL, TRIALS, n_jobs=1)
    assert list(table.columns) == [
        "trial", "learning_rate", "reg", "batch_size", "train_accuracy", "val_accuracy",
        "best_epoch", "epochs_run", "final_loss",
    ]  # fmt: skip
    assert len(table) == len(TRIALS) and list(table["trial"]) == list(range(len(TRIALS)))
    top = table["val_accuracy"].max()
    assert best["val_accuracy"] == top
    assert best["trial"] == int(np.flatnonzero(table["val_accuracy"].to_numpy() == top)[0])
    assert isinstance(best["batch_size"], int) and isinstance(best["learning_rate"], float)
    # svm_train's retraining of the chosen trial reproduces it exactly.
    hyper = {**TRIALS[best["trial"]]}
    model, summary = train_linear(TRAIN, VAL, hyper)
    assert summary["val_accuracy"] == best["val_accuracy"]
    assert summary["train_accuracy"] == model.score(TRAIN.X, TRAIN.y)
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 2


# --------------------------------------------------------------------------- params


SVM = {
    "loss": "softmax", "delta": 1.0, "reg_type": "l2", "l1_ratio": 0.5, "epochs": 4,
    "momentum": 0.9, "nesterov": True, "lr_decay": 0.9, "patience": None,
    "train_eval_size": 1000, "seed": 0,
}  # fmt: skip
TUNE = {
    "method": "random", "n_trials": 5, "learning_rate_range": [1e-7, 1e-5],
    "reg_range": [10.0, 1000.0], "seed": 0, "learning_rates": [1e-6], "regs": [1e2],
    "batch_sizes": [100, 200],
}  # fmt: skip


def test_svm_and_svm_tune_sections_become_trials():
    hyper = linear_hyperparameters(check_values(SECTIONS["svm"], SVM, "svm."))
    assert hyper["loss"] == "softmax" and hyper["nesterov"] is True
    assert hyper["patience"] is None and hyper["random_state"] == 0
    LinearClassifier(**hyper)  # every key is a LinearClassifier argument
    tune = check_values(SECTIONS["svm_tune"], TUNE, "svm_tune.")
    trials = linear_search_trials(hyper, tune["method"], tune)
    assert len(trials) == 5 and all(t["loss"] == "softmax" for t in trials)
    assert trials == linear_search_trials(hyper, "random", tune)  # seeded by svm_tune.seed
    grid = linear_search_trials(hyper, "grid", tune)
    assert [(t["learning_rate"], t["reg"], t["batch_size"]) for t in grid] == [
        (1e-6, 100.0, 100), (1e-6, 100.0, 200),
    ]  # fmt: skip


def _trial(index=7, error=None):
    return TrialResult(
        index=index,
        hyperparameters={"learning_rate": 1e-6, "reg": 100.0, "batch_size": 16},
        loss_history=np.array([2.0, 1.0]) if error is None else np.zeros(0),
        train_accuracy_history=np.array([0.5]) if error is None else np.zeros(0),
        val_accuracy_history=np.array([0.39125]) if error is None else np.zeros(0),
        best_epoch=0,
        seconds=21.34,
        error=error,
    )


def test_progress_message_says_trials_done_and_time_left():
    line = progress_message(_trial(), done=3, total=24, elapsed=30.0)
    # 10 s a trial so far, 21 to go.
    assert line.startswith("3/24 trials done, 3:30 left; trial 7: ")
    assert line.endswith("val accuracy 0.3912 (21.3 s)")
    assert "1:00:00 left" in progress_message(_trial(), done=1, total=2, elapsed=3600.0)
    assert "0:00 left" in progress_message(_trial(), done=24, total=24, elapsed=99.0)
    assert " diverged (21.3 s)" in progress_message(_trial(error="loss is nan"), 1, 2, 1.0)
