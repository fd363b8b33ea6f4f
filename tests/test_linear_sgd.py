"""Tests of cifarlab.linear.sgd: SGD replayed step by step against a slow reference, its
schedule, early stopping, divergence, and SGDConfig's checks (the step kernel against the numpy
loop it replaced: test_linear_sgd_kernel.py). Everything runs on tiny synthetic problems."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from conftest import learnable_images
from linear_reference import assert_config_error, blobs, sgd_reference

from cifarlab.errors import ConfigError, TrainingDiverged
from cifarlab.linear.classifier import LinearClassifier
from cifarlab.linear.sgd import SGDConfig, SGDResult, sgd
from cifarlab.params import LOSSES

OBJECTIVE = dict(loss="hinge", reg=1e-3, reg_type="l2", l1_ratio=0.5, delta=1.0)
SCHEDULE = dict(learning_rate=0.05, batch_size=16, epochs=15)
# Arguments of sgd() itself; everything else goes into its SGDConfig.
SGD_ARGUMENTS = ("n_classes", "rng", "mean", "X_val", "y_val", "on_epoch_end")


def run_sgd(X, y, seed=0, **overrides):
    kw = {key: overrides.pop(key) for key in SGD_ARGUMENTS if key in overrides}
    n_classes = kw.pop("n_classes", 3)
    kw.setdefault("rng", np.random.default_rng(seed))
    return sgd(X, y, n_classes, SGDConfig(**{**OBJECTIVE, **SCHEDULE, **overrides}), **kw)


def noisy_blobs(seed=0, n_per_class=40, d=8, n_classes=3):
    """Overlapping blobs: validation accuracy goes up and down between epochs."""
    return blobs(seed, n_per_class=n_per_class, d=d, n_classes=n_classes, spread=2.5)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize(
    "momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)], ids=["plain", "mom", "nag"]
)
def test_sgd_converges_on_separable_blobs(loss, momentum, nesterov):
    X, y = blobs()
    lr = 0.005 if momentum else 0.05  # momentum ~ 1 / (1 - 0.9) = 10x larger effective step
    result = run_sgd(X, y, loss=loss, learning_rate=lr, momentum=momentum, nesterov=nesterov)
    assert isinstance(result, SGDResult)
    steps = -(-y.size // 16)
    history = result.loss_history
    assert history.dtype == np.float64 and history.shape == (15 * steps,)
    assert history[-steps:].mean() < 0.25 * history[:steps].mean()
    assert result.train_accuracy[-1] == 1.0
    assert result.W.dtype == np.float32 and result.b.dtype == np.float32


@pytest.mark.parametrize(
    "momentum, nesterov, lr_decay", [(0.0, False, 1.0), (0.8, False, 0.5), (0.8, True, 0.7)]
)
@pytest.mark.parametrize("loss", LOSSES)
def test_sgd_replays_the_reference_step_by_step(loss, momentum, nesterov, lr_decay):
    # n = 23 with batches of 5: four full batches and a last partial one of 3, each epoch.
    rng = np.random.default_rng(7)
    X = rng.standard_normal((23, 4))
    y = rng.integers(0, 3, size=23)
    objective = dict(loss=loss, reg=0.05, reg_type="elasticnet", l1_ratio=0.3, delta=1.0)
    schedule = dict(
        learning_rate=0.1, batch_size=5, epochs=3, momentum=momentum, nesterov=nesterov,
        lr_decay=lr_decay, W0_scale=0.1,
    )  # fmt: skip
    result = sgd(X, y, 3, SGDConfig(**objective, **schedule), rng=np.random.default_rng(11))
    W, b, losses = sgd_reference(X, y, 3, rng=np.random.default_rng(11), **objective, **schedule)
    assert result.n_steps == 3 * 5
    np.testing.assert_allclose(result.loss_history, losses, rtol=1e-10)
    np.testing.assert_allclose(result.W, W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.b, b, rtol=1e-10, atol=1e-12)


def test_lr_decay_changes_only_later_epochs():
    X, y = blobs()
    steps = -(-y.size // 16)
    plain = run_sgd(X, y, epochs=3)
    decayed = run_sgd(X, y, epochs=3, lr_decay=0.5)
    # Epoch 0 uses the same rate (the first loss of epoch 1 still reflects only epoch-0 updates).
    np.testing.assert_array_equal(
        decayed.loss_history[: steps + 1], plain.loss_history[: steps + 1]
    )
    assert not np.array_equal(decayed.loss_history[steps + 1 :], plain.loss_history[steps + 1 :])


@pytest.mark.parametrize("n, batch_size, steps_per_epoch", [(23, 5, 5), (20, 5, 4), (7, 100, 1)])
def test_last_partial_batch_is_a_step(n, batch_size, steps_per_epoch):
    X, y = blobs(n_per_class=10)
    result = run_sgd(X[:n], y[:n], batch_size=batch_size, epochs=2)
    assert result.n_steps == 2 * steps_per_epoch
    assert result.loss_history.shape == (2 * steps_per_epoch,)


def test_on_epoch_end_receives_epoch_losses_and_accuracies():
    X, y = blobs()
    X_val, y_val = blobs(seed=1, n_per_class=10)
    calls = []
    result = run_sgd(
        X, y, epochs=4, X_val=X_val, y_val=y_val, on_epoch_end=lambda *a: calls.append(a)
    )
    steps = -(-y.size // 16)
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    for epoch, step_losses, train_acc, val_acc in calls:
        np.testing.assert_array_equal(
            step_losses, result.loss_history[epoch * steps : (epoch + 1) * steps]
        )
        assert train_acc == result.train_accuracy[epoch]
        assert val_acc == result.val_accuracy[epoch]
    # The accuracies are those of the weights at the end of the last epoch.
    assert result.train_accuracy[-1] == np.mean((X @ result.W + result.b).argmax(1) == y)
    assert result.val_accuracy[-1] == np.mean((X_val @ result.W + result.b).argmax(1) == y_val)


def test_on_epoch_end_without_validation_gets_none():
    X, y = blobs(n_per_class=5)
    calls = []
    result = run_sgd(X, y, epochs=2, on_epoch_end=lambda *a: calls.append(a))
    assert [c[3] for c in calls] == [None, None]
    assert result.val_accuracy.shape == (0,)


def test_sgd_does_not_modify_its_inputs():
    X, y = blobs()
    X_copy, y_copy = X.copy(), y.copy()
    run_sgd(X, y, epochs=1)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_huge_learning_rate_raises_training_diverged():
    X, y = blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning may leak out either
        with pytest.raises(TrainingDiverged) as info:
            run_sgd(X * 100, y, learning_rate=1e30, reg=10.0)
    message = str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert "at step " in message and "epoch " in message
    assert "learning_rate=1e+30" in message and "reg=10.0" in message
    assert "reg_type='l2'" in message and "batch_size=16" in message


def test_weights_overflowing_on_the_last_step_raise():
    # A single step per training run: its loss is finite, its update overflows float32.
    X, y = blobs()
    with pytest.raises(TrainingDiverged, match=r"weights became non-finite at step 0"):
        run_sgd(X * 100, y, learning_rate=1e38, batch_size=1000, epochs=1)


def stopping_epoch(val_accuracy, patience):
    """Reference of the early-stopping rule: the first epoch that is `patience` epochs past the
    first best validation accuracy so far (None if training would run to the end)."""
    best = 0
    for epoch in range(1, len(val_accuracy)):
        if val_accuracy[epoch] > val_accuracy[best]:
            best = epoch
        elif epoch - best >= patience:
            return epoch, best
    return None, best


@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("loss", LOSSES)
def test_early_stopping_stops_on_the_rule_and_keeps_the_best_epoch(loss, patience):
    X, y = noisy_blobs()
    X_val, y_val = noisy_blobs(seed=1, n_per_class=10)
    kw = dict(loss=loss, learning_rate=0.5, batch_size=8, epochs=25, X_val=X_val, y_val=y_val)
    full = run_sgd(X, y, **kw)
    stopped = run_sgd(X, y, patience=patience, **kw)
    stop, best = stopping_epoch(full.val_accuracy, patience)
    assert stop is not None, "the problem must make early stopping trigger"
    assert stopped.n_epochs == stop + 1 and stopped.best_epoch == best
    steps = -(-y.size // 8)
    assert stopped.n_steps == (stop + 1) * steps
    assert stopped.loss_history.shape == (stopped.n_steps,)
    # The run is the prefix of the full one, and its weights are those after the best epoch:
    # training for best + 1 epochs gives the same (SGD draws the same numbers in the same order).
    np.testing.assert_array_equal(stopped.val_accuracy, full.val_accuracy[: stop + 1])
    np.testing.assert_array_equal(stopped.loss_history, full.loss_history[: stopped.n_steps])
    upto_best = run_sgd(X, y, **dict(kw, epochs=best + 1))
    np.testing.assert_array_equal(stopped.W, upto_best.W)
    np.testing.assert_array_equal(stopped.b, upto_best.b)
    assert stopped.val_accuracy[best] == stopped.val_accuracy.max()


def test_without_patience_the_last_epoch_is_kept():
    X, y = noisy_blobs()
    X_val, y_val = noisy_blobs(seed=1, n_per_class=10)
    result = run_sgd(X, y, learning_rate=0.5, batch_size=8, epochs=6, X_val=X_val, y_val=y_val)
    assert result.n_epochs == 6 and result.best_epoch == 5


def test_patience_longer_than_training_runs_every_epoch():
    X, y = noisy_blobs()
    X_val, y_val = noisy_blobs(seed=1, n_per_class=10)
    result = run_sgd(X, y, epochs=4, patience=10, X_val=X_val, y_val=y_val)
    assert result.n_epochs == 4
    assert result.best_epoch == int(np.argmax(result.val_accuracy))


def test_train_eval_size_measures_a_fixed_subset_and_leaves_training_unchanged():
    X, y = noisy_blobs(n_per_class=50)
    every = run_sgd(X, y, epochs=3)
    subset = run_sgd(X, y, epochs=3, train_eval_size=40)
    same = run_sgd(X, y, epochs=3, train_eval_size=10_000)  # >= n_samples: all of them
    np.testing.assert_array_equal(subset.W, every.W)  # the subset does not touch SGD's stream
    np.testing.assert_array_equal(same.train_accuracy, every.train_accuracy)
    # The subset is rng.spawn(1)[0].choice(n, 40, replace=False), the same every epoch.
    rows = np.sort(np.random.default_rng(0).spawn(1)[0].choice(y.size, 40, replace=False))
    expected = np.mean((X[rows] @ subset.W + subset.b).argmax(1) == y[rows])
    assert subset.train_accuracy[-1] == expected
    assert np.all(subset.train_accuracy * 40 == np.round(subset.train_accuracy * 40))


@pytest.mark.parametrize("nesterov", [False, True])
def test_mean_centres_raw_minibatches_exactly_like_centring_first(nesterov):
    X, y = learnable_images(0, n=90)
    X_val, y_val = learnable_images(1, n=30)
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    kw = dict(learning_rate=1e-4, reg=1e-2, batch_size=16, epochs=3, momentum=0.5,
              nesterov=nesterov)  # fmt: skip
    on_the_fly = run_sgd(X, y, mean=mean, X_val=X_val, y_val=y_val, **kw)
    centred = run_sgd(
        X.astype(np.float32) - mean, y, X_val=X_val.astype(np.float32) - mean, y_val=y_val, **kw
    )
    for field in ("W", "b", "loss_history", "train_accuracy", "val_accuracy"):
        np.testing.assert_array_equal(getattr(on_the_fly, field), getattr(centred, field))
    assert on_the_fly.W.dtype == np.float32


# Bit-for-bit digests of fitted weights were recorded here before the fused step kernel; it sums
# in another order than numpy, so the kernel is now checked against that numpy loop to float
# tolerance, with the same seeds, in test_linear_sgd_kernel.py.


# --------------------------------------------------------------------------- SGDConfig


def test_config_is_frozen_and_holds_converted_values():
    config = SGDConfig(**{**OBJECTIVE, "reg": 2, "learning_rate": 1, "batch_size": 16.0,
                          "epochs": 3, "patience": 2.0})  # fmt: skip
    assert config.reg == 2.0 and type(config.reg) is float
    assert config.learning_rate == 1.0 and type(config.learning_rate) is float
    assert type(config.batch_size) is int and type(config.patience) is int
    assert (config.momentum, config.nesterov, config.lr_decay) == (0.0, False, 1.0)
    assert config.W0_scale == 1e-3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learning_rate = 2.0
    with pytest.raises(ConfigError, match=r"^learning_rate must be a finite number > 0, got 0"):
        dataclasses.replace(config, learning_rate=0)  # a replaced value is checked too


def test_config_fields_are_the_classifier_hyperparameters():
    names = [field.name for field in dataclasses.fields(SGDConfig)]
    assert names == [*LinearClassifier().get_params()][:-1] + ["W0_scale"]  # no random_state


_SMALL = blobs(n_per_class=2)

BAD_INPUTS = {
    # SGDConfig: only what is not a LinearClassifier hyperparameter (see test_linear_classifier)
    "W0_scale": (
        lambda: SGDConfig(**OBJECTIVE, **SCHEDULE, W0_scale=-1.0),
        r"^W0_scale must be a finite number >= 0, got -1\.0$",
    ),
    "W0_scale str": (
        lambda: SGDConfig(**OBJECTIVE, **SCHEDULE, W0_scale="big"),
        r"^W0_scale must be .*'big'",
    ),
    "config learning_rate": (
        lambda: SGDConfig(**OBJECTIVE, **dict(SCHEDULE, learning_rate=-1e-7)),
        r"^learning_rate must be a finite number > 0, got -1e-07$",
    ),
    "config nesterov": (
        lambda: SGDConfig(**OBJECTIVE, **SCHEDULE, nesterov=True),
        r"^nesterov needs momentum > 0, got momentum=0\.0$",
    ),
    # sgd()
    "config dict": (
        lambda: sgd(*_SMALL, 3, dict(OBJECTIVE, **SCHEDULE), rng=np.random.default_rng(0)),
        r"config must be an SGDConfig, got dict",
    ),
    "rng": (lambda: run_sgd(*_SMALL, rng=0), r"rng must be a numpy Generator .*int"),
    "n_classes": (lambda: run_sgd(*_SMALL, n_classes=1), r"^n_classes must be an integer >= 2"),
    "label range": (lambda: run_sgd(*_SMALL, n_classes=2), r"y must hold labels in \[0, 1\]"),
    "X 1-D": (lambda: run_sgd(_SMALL[0][0], _SMALL[1]), r"X must be 2-D"),
    "X nan": (lambda: run_sgd(_SMALL[0] * np.nan, _SMALL[1]), r"X contains NaN"),
    "mean shape": (
        lambda: run_sgd(*_SMALL, mean=np.zeros(3, np.float32)),
        r"mean must be a float array of shape \(8,\)",
    ),
    "mean nan": (
        lambda: run_sgd(*_SMALL, mean=np.full(8, np.nan, np.float32)),
        r"mean contains NaN",
    ),
    "X_val alone": (
        lambda: run_sgd(*_SMALL, X_val=_SMALL[0]),
        r"X_val and y_val must be given together",
    ),
    "patience no val": (
        lambda: run_sgd(*_SMALL, patience=2),
        r"patience=2 \(early stopping\) needs X_val",
    ),
    "X_val features": (
        lambda: run_sgd(*_SMALL, X_val=_SMALL[0][:, :5], y_val=_SMALL[1]),
        r"X_val has 5 features but X has 8",
    ),
    "y_val labels": (
        lambda: run_sgd(*_SMALL, X_val=_SMALL[0], y_val=_SMALL[1] + 1),
        r"y_val must hold labels in \[0, 2\]",
    ),
    "on_epoch_end": (lambda: run_sgd(*_SMALL, on_epoch_end=3), r"on_epoch_end must be callable"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_config_error(case):
    assert_config_error(*BAD_INPUTS[case])
