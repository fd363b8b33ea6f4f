"""Tests of cifarlab.linear: losses against loop references and finite differences, SGD
behaviour (replayed step by step against a slow reference), the estimator contract and
input validation. Everything runs on tiny synthetic problems (a few seconds in total)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import learnable_images

from cifarlab.errors import ConfigError, TrainingDiverged
from cifarlab.linear import (
    LOSSES,
    REGULARIZERS,
    LinearClassifier,
    SGDResult,
    check_hyperparameters,
    hinge_loss_grad,
    loss_grad,
    regularization,
    sgd,
    softmax_loss_grad,
)

# --------------------------------------------------------------------------- references


def hinge_reference(W, b, X, y, delta=1.0):
    """Multiclass SVM loss and gradient with explicit loops over samples and classes."""
    n, _ = X.shape
    n_classes = W.shape[1]
    loss = 0.0
    dW = np.zeros_like(W, dtype=np.float64)
    db = np.zeros(n_classes)
    for i in range(n):
        scores = [float(X[i] @ W[:, j] + b[j]) for j in range(n_classes)]
        for j in range(n_classes):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + delta
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
                db[j] += 1
                db[y[i]] -= 1
    return loss / n, dW / n, db / n


def softmax_reference(W, b, X, y):
    """Mean cross-entropy and gradient with explicit loops over samples and classes."""
    n, _ = X.shape
    n_classes = W.shape[1]
    loss = 0.0
    dW = np.zeros_like(W, dtype=np.float64)
    db = np.zeros(n_classes)
    for i in range(n):
        scores = [float(X[i] @ W[:, j] + b[j]) for j in range(n_classes)]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        loss += math.log(total) - (scores[y[i]] - top)  # -log p_y without underflow
        for j in range(n_classes):
            p = exps[j] / total - (1.0 if j == y[i] else 0.0)
            dW[:, j] += p * X[i]
            db[j] += p
    return loss / n, dW / n, db / n


def regularization_reference(W, reg, reg_type, l1_ratio):
    l1 = {"l2": 0.0, "l1": 1.0, "elasticnet": l1_ratio}[reg_type]
    penalty = 0.0
    dW = np.zeros_like(W, dtype=np.float64)
    for k in range(W.shape[0]):
        for j in range(W.shape[1]):
            w = float(W[k, j])
            penalty += l1 * abs(w) + (1 - l1) * w * w
            dW[k, j] = l1 * np.sign(w) + (1 - l1) * 2 * w
    return reg * penalty, reg * dW


def loss_grad_reference(W, b, X, y, loss, reg, reg_type, l1_ratio, delta):
    if loss == "hinge":
        value, dW, db = hinge_reference(W, b, X, y, delta)
    else:
        value, dW, db = softmax_reference(W, b, X, y)
    penalty, dW_reg = regularization_reference(W, reg, reg_type, l1_ratio)
    return value + penalty, dW + dW_reg, db


def sgd_reference(X, y, n_classes, *, learning_rate, batch_size, epochs, momentum, nesterov,
                  lr_decay, rng, W0_scale, **objective):  # fmt: skip
    """Plain-loop SGD following the documented algorithm, on top of the loop references."""
    n, d = X.shape
    W = W0_scale * rng.standard_normal((d, n_classes))
    b = np.zeros(n_classes)
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    lr = learning_rate
    losses = []
    for _ in range(epochs):
        order = rng.permutation(n)
        start = 0
        while start < n:
            idx = order[start : start + batch_size]
            start += batch_size
            at_W, at_b = (W + momentum * vW, b + momentum * vb) if nesterov else (W, b)
            value, dW, db = loss_grad_reference(at_W, at_b, X[idx], y[idx], **objective)
            losses.append(value)
            vW = momentum * vW - lr * dW
            vb = momentum * vb - lr * db
            W = W + vW
            b = b + vb
        lr *= lr_decay
    return W, b, np.array(losses)


# --------------------------------------------------------------------------- helpers


def random_problem(seed, n=7, d=5, n_classes=4, delta=1.0, kink_gap=1e-3):
    """Small float64 problem whose W entries are away from 0 (l1 kink) and whose hinge margins
    are away from 0 (hinge kink), so that finite differences see a smooth function."""
    rng = np.random.default_rng(seed)
    while True:
        X = rng.standard_normal((n, d))
        y = rng.integers(0, n_classes, size=n)
        W = rng.choice([-1.0, 1.0], size=(d, n_classes)) * rng.uniform(0.1, 1.0, (d, n_classes))
        b = rng.standard_normal(n_classes)
        scores = X @ W + b
        margins = scores - scores[np.arange(n), y][:, None] + delta
        margins[np.arange(n), y] = np.inf
        # Some margins must be violated, or the hinge gradient is trivially zero.
        if np.abs(margins).min() > kink_gap and (margins[np.isfinite(margins)] > 0).any():
            return W, b, X, y


def numerical_gradient(f, A, h=1e-6):
    """Centred finite differences of the scalar f() with respect to every entry of A (in place)."""
    grad = np.zeros_like(A)
    for index in np.ndindex(A.shape):
        saved = A[index]
        A[index] = saved + h
        plus = f()
        A[index] = saved - h
        minus = f()
        A[index] = saved
        grad[index] = (plus - minus) / (2 * h)
    return grad


def blobs(seed=0, n_per_class=40, d=8, n_classes=3, spread=0.5):
    """Linearly separable Gaussian blobs: class c is centred at 3 * e_c."""
    rng = np.random.default_rng(seed)
    centers = 3.0 * np.eye(n_classes, d)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + spread * rng.standard_normal((y.size, d))
    return X.astype(np.float32), y


OBJECTIVE = dict(loss="hinge", reg=1e-3, reg_type="l2", l1_ratio=0.5, delta=1.0)


def run_sgd(X, y, n_classes=3, seed=0, **overrides):
    params = dict(
        OBJECTIVE,
        learning_rate=0.05,
        batch_size=16,
        epochs=15,
        momentum=0.0,
        nesterov=False,
        lr_decay=1.0,
        rng=np.random.default_rng(seed),
    )
    params.update(overrides)
    return sgd(X, y, n_classes, **params)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("seed", range(3))
def test_hinge_matches_loop_reference(seed):
    W, b, X, y = random_problem(seed, n=12, d=6, n_classes=5)
    for delta in (1.0, 0.3):
        expected = hinge_reference(W, b, X, y, delta)
        actual = hinge_loss_grad(W, b, X, y, delta=delta)
        for got, want in zip(actual, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_softmax_matches_loop_reference(seed):
    W, b, X, y = random_problem(seed, n=12, d=6, n_classes=5)
    expected = softmax_reference(W, b, X, y)
    actual = softmax_loss_grad(W, b, X, y)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_hinge_counts_only_violating_classes():
    # One sample, scores (0, 0.5, -2) with y=0 and delta=1: class 1 violates by 1.5, class 2 not.
    W = np.zeros((1, 3))
    b = np.array([0.0, 0.5, -2.0])
    X = np.ones((1, 1))
    loss, dW, db = hinge_loss_grad(W, b, X, np.array([0]), delta=1.0)
    assert loss == pytest.approx(1.5)
    np.testing.assert_array_equal(db, [-1.0, 1.0, 0.0])
    np.testing.assert_array_equal(dW, [[-1.0, 1.0, 0.0]])


def test_softmax_is_stable_for_huge_scores():
    W, b, X, y = random_problem(0)
    W = W * 1e4  # scores of order 1e4: exp() would overflow without the max shift
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, dW, db = softmax_loss_grad(W, b, X, y)
    assert np.isfinite(value) and np.isfinite(dW).all() and np.isfinite(db).all()
    expected = softmax_reference(W, b, X, y)
    np.testing.assert_allclose(value, expected[0], rtol=1e-10)
    np.testing.assert_allclose(dW, expected[1], rtol=1e-10, atol=1e-12)


def test_softmax_of_uniform_scores_is_log_n_classes():
    X = np.ones((4, 3))
    value, _, _ = softmax_loss_grad(np.zeros((3, 10)), np.zeros(10), X, np.arange(4))
    assert value == pytest.approx(math.log(10))


@pytest.mark.parametrize("loss", LOSSES)
def test_float32_agrees_with_float64(loss):
    W, b, X, y = random_problem(1, n=20, d=10, n_classes=4)
    args64 = (W, b, X, y)
    args32 = (W.astype(np.float32), b.astype(np.float32), X.astype(np.float32), y)
    kw = dict(OBJECTIVE, loss=loss)
    value64, dW64, db64 = loss_grad(*args64, **kw)
    value32, dW32, db32 = loss_grad(*args32, **kw)
    assert dW32.dtype == np.float32 and db32.dtype == np.float32
    np.testing.assert_allclose(value32, value64, rtol=1e-5)
    np.testing.assert_allclose(dW32, dW64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db32, db64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reg_type", REGULARIZERS)
@pytest.mark.parametrize("l1_ratio", [0.0, 0.3, 1.0])
def test_regularization_matches_reference(reg_type, l1_ratio):
    W, _, _, _ = random_problem(2)
    penalty, dW = regularization(W, 0.7, reg_type, l1_ratio)
    want_penalty, want_dW = regularization_reference(W, 0.7, reg_type, l1_ratio)
    assert penalty == pytest.approx(want_penalty, rel=1e-12)
    np.testing.assert_allclose(dW, want_dW, rtol=1e-12)


def test_regularization_formulas_and_elasticnet_limits():
    W = np.array([[1.0, -2.0], [0.0, 3.0]])
    assert regularization(W, 2.0, "l2")[0] == pytest.approx(2.0 * 14.0)
    assert regularization(W, 2.0, "l1")[0] == pytest.approx(2.0 * 6.0)
    np.testing.assert_array_equal(regularization(W, 2.0, "l1")[1], 2.0 * np.sign(W))
    np.testing.assert_array_equal(regularization(W, 2.0, "l2")[1], 4.0 * W)
    for ratio, same_as in ((1.0, "l1"), (0.0, "l2")):
        for got, want in zip(
            regularization(W, 2.0, "elasticnet", ratio),
            regularization(W, 2.0, same_as),
            strict=True,
        ):
            np.testing.assert_allclose(got, want)
    assert regularization(W, 0.0, "elasticnet")[0] == 0.0


def test_bias_is_not_regularised():
    W, b, X, y = random_problem(3)
    _, _, db_no_reg = loss_grad(W, b, X, y, **dict(OBJECTIVE, reg=0.0))
    _, _, db_reg = loss_grad(W, b, X, y, **dict(OBJECTIVE, reg=100.0))
    np.testing.assert_array_equal(db_reg, db_no_reg)


@pytest.mark.parametrize("reg_type", REGULARIZERS)
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_grad_matches_reference(loss, reg_type):
    W, b, X, y = random_problem(4, n=9)
    kw = dict(loss=loss, reg=0.3, reg_type=reg_type, l1_ratio=0.4, delta=1.0)
    actual = loss_grad(W, b, X, y, **kw)
    expected = loss_grad_reference(W, b, X, y, **kw)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reg_type", REGULARIZERS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_finite_differences(loss, reg_type):
    W, b, X, y = random_problem(5)
    kw = dict(loss=loss, reg=0.25, reg_type=reg_type, l1_ratio=0.4, delta=1.0)
    _, dW, db = loss_grad(W, b, X, y, **kw)

    def objective():
        return loss_grad(W, b, X, y, **kw)[0]

    # h = 1e-6 moves a score by ~1e-6, far from the >= 1e-3 kink gap of random_problem.
    np.testing.assert_allclose(dW, numerical_gradient(objective, W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numerical_gradient(objective, b), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- SGD


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
    result = sgd(X, y, 3, rng=np.random.default_rng(11), **objective, **schedule)
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


def test_model_fit_diverging_names_hyperparameters():
    X, y = blobs()
    clf = LinearClassifier(learning_rate=1e30, reg=1.0, batch_size=20, epochs=2)
    with pytest.raises(TrainingDiverged, match=r"step \d+.*learning_rate=1e\+30.*reg=1\.0"):
        clf.fit(X * 100, y)


def noisy_blobs(seed=0, n_per_class=40, d=8, n_classes=3):
    """Overlapping blobs: validation accuracy goes up and down between epochs."""
    return blobs(seed, n_per_class=n_per_class, d=d, n_classes=n_classes, spread=2.5)


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
    X, y = small_images(n=90)
    X_val, y_val = small_images(seed=1, n=30)
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


def test_check_hyperparameters_accepts_partial_dicts_and_names_bad_ones():
    check_hyperparameters({"loss": "softmax", "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        check_hyperparameters({"lr": 1e-3})
    with pytest.raises(ConfigError, match="patience"):
        check_hyperparameters({"patience": 0})


# --------------------------------------------------------------------------- estimator


def small_images(seed=0, n=60, d=12, n_classes=3):
    """uint8 'images' whose class shows in the pixel values (learnable after centring)."""
    return learnable_images(seed, n, d, n_classes)


FAST = dict(learning_rate=1e-4, reg=1e-2, batch_size=10, epochs=5)


def test_fit_returns_self_and_sets_learned_state():
    X, y = small_images()
    clf = LinearClassifier(**FAST)
    assert clf.fit(X, y) is clf
    assert clf.W_.shape == (12, 3) and clf.W_.dtype == np.float32
    assert clf.b_.shape == (3,) and clf.b_.dtype == np.float32
    assert clf.mean_.shape == (12,) and clf.mean_.dtype == np.float32
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_steps_ == 5 * 6 and clf.loss_history_.shape == (30,)
    assert clf.n_epochs_ == 5 and clf.best_epoch_ == 4
    assert clf.train_accuracy_history_.shape == (5,)
    assert clf.val_accuracy_history_.shape == (0,)
    assert clf.n_features_in_ == 12
    assert clf.score(X, y) == 1.0


def test_init_stores_hyperparameters_unmodified_and_get_params_round_trips():
    params = dict(
        loss="softmax", reg=3, reg_type="elasticnet", l1_ratio=0.2, delta=2.0,
        learning_rate=1e-3, batch_size=7, epochs=2, momentum=0.5, nesterov=True,
        lr_decay=0.9, patience=3, train_eval_size=100, random_state=42,
    )  # fmt: skip
    clf = LinearClassifier(**params)
    assert clf.get_params() == params
    assert type(clf.get_params()["reg"]) is int  # stored as given, not coerced
    assert LinearClassifier(**clf.get_params()).get_params() == params
    assert LinearClassifier().set_params(**params).get_params() == params
    with pytest.raises(ConfigError, match="bogus"):
        LinearClassifier().set_params(bogus=1)
    with pytest.raises(TypeError):
        LinearClassifier("hinge")  # keyword-only, as scikit-learn requires


def test_works_with_sklearn_clone():
    base = pytest.importorskip("sklearn.base")
    clf = LinearClassifier(loss="softmax", reg=1.0, epochs=3)
    clone = base.clone(clf)
    assert clone is not clf and clone.get_params() == clf.get_params()


def test_same_random_state_is_reproducible_and_different_seeds_differ():
    X, y = small_images()
    a = LinearClassifier(**FAST, random_state=3).fit(X, y)
    b = LinearClassifier(**FAST, random_state=3).fit(X, y)
    c = LinearClassifier(**FAST, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.W_, b.W_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    assert not np.array_equal(a.W_, c.W_)


def test_mean_is_computed_on_training_data_only():
    X, y = small_images()
    X_val, y_val = small_images(seed=1, n=30)
    X_val = X_val // 4 + 150  # a very different mean: must not leak into mean_
    clf = LinearClassifier(**FAST).fit(X, y, X_val=X_val, y_val=y_val)
    np.testing.assert_allclose(clf.mean_, X.mean(axis=0, dtype=np.float64), rtol=1e-6)
    # The validation accuracy logged during training used the training mean too.
    assert clf.val_accuracy_history_[-1] == clf.score(X_val, y_val)


def test_decision_function_centres_raw_input_and_leaves_it_untouched():
    X, y = small_images()
    X_float = X.astype(np.float64)
    clf = LinearClassifier(**FAST).fit(X_float, y)
    scores = clf.decision_function(X_float)
    np.testing.assert_array_equal(X_float, X)  # not centred in place
    assert scores.shape == (60, 3)
    np.testing.assert_allclose(scores, (X - clf.mean_) @ clf.W_ + clf.b_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), scores.argmax(axis=1))
    assert clf.score(X, y) == np.mean(clf.predict(X) == y)


def test_chunked_scoring_matches_unchunked(monkeypatch):
    import cifarlab.linear as linear

    X, y = small_images(n=50)
    clf = LinearClassifier(**FAST).fit(X, y)
    whole = clf.decision_function(X)
    monkeypatch.setattr(linear, "_CHUNK_ROWS", 7)
    np.testing.assert_allclose(clf.decision_function(X), whole, rtol=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reg_type", REGULARIZERS)
def test_model_learns_every_objective(loss, reg_type):
    X, y = small_images()
    clf = LinearClassifier(**dict(FAST, loss=loss, reg_type=reg_type, epochs=10)).fit(X, y)
    assert clf.score(X, y) >= 0.9


# --------------------------------------------------------------------------- validation


def _fit(X=None, y=None, **kwargs):
    X0, y0 = small_images(n=12)
    params = {k: kwargs.pop(k) for k in list(kwargs) if k in LinearClassifier._PARAM_NAMES}
    LinearClassifier(**dict(FAST, **params)).fit(
        X0 if X is None else X, y0 if y is None else y, **kwargs
    )


def _fitted():
    return LinearClassifier(**FAST).fit(*small_images(n=12))


_X, _Y = small_images(n=12)
_W, _B, _XS, _YS = random_problem(0)

BAD_INPUTS = {
    # hyperparameters (checked by fit)
    "loss": (lambda: _fit(loss="svm"), r"loss .*'svm'"),
    "reg_type": (lambda: _fit(reg_type="l3"), r"reg_type .*'l3'"),
    "reg<0": (lambda: _fit(reg=-1.0), r"reg must .*-1\.0"),
    "reg nan": (lambda: _fit(reg=float("nan")), r"reg must .*nan"),
    "reg str": (lambda: _fit(reg="1e3"), r"reg must .*'1e3'"),
    "l1_ratio>1": (lambda: _fit(l1_ratio=1.5), r"l1_ratio .*1\.5"),
    "l1_ratio<0": (lambda: _fit(l1_ratio=-0.1), r"l1_ratio .*-0\.1"),
    "delta=0": (lambda: _fit(delta=0.0), r"delta .*0\.0"),
    "learning_rate=0": (lambda: _fit(learning_rate=0.0), r"learning_rate .*0\.0"),
    "learning_rate<0": (lambda: _fit(learning_rate=-1e-7), r"learning_rate .*-1e-07"),
    "learning_rate inf": (lambda: _fit(learning_rate=float("inf")), r"learning_rate .*inf"),
    "batch_size=0": (lambda: _fit(batch_size=0), r"batch_size .*0"),
    "batch_size float": (lambda: _fit(batch_size=2.5), r"batch_size .*2\.5"),
    "batch_size bool": (lambda: _fit(batch_size=True), r"batch_size .*True"),
    "epochs=0": (lambda: _fit(epochs=0), r"epochs .*0"),
    "momentum=1": (lambda: _fit(momentum=1.0), r"momentum .*1\.0"),
    "momentum<0": (lambda: _fit(momentum=-0.5), r"momentum .*-0\.5"),
    "nesterov str": (lambda: _fit(nesterov="yes"), r"nesterov .*'yes'"),
    "nesterov no momentum": (lambda: _fit(nesterov=True), r"nesterov=True needs momentum"),
    "lr_decay=0": (lambda: _fit(lr_decay=0.0), r"lr_decay .*0\.0"),
    "lr_decay>1": (lambda: _fit(lr_decay=1.5), r"lr_decay .*1\.5"),
    "patience=0": (lambda: _fit(patience=0, X_val=_X, y_val=_Y), r"patience .*0"),
    "patience float": (lambda: _fit(patience=2.0, X_val=_X, y_val=_Y), r"patience .*2\.0"),
    "patience no val": (lambda: _fit(patience=2), r"patience=2 \(early stopping\) needs X_val"),
    "train_eval_size=0": (lambda: _fit(train_eval_size=0), r"train_eval_size .*0"),
    "random_state<0": (lambda: _fit(random_state=-1), r"random_state .*-1"),
    "random_state str": (lambda: _fit(random_state="0"), r"random_state .*'0'"),
    # data given to fit
    "X 1-D": (lambda: _fit(X=_X[0]), r"X must be 2-D .*\(12,\)"),
    "X 3-D": (lambda: _fit(X=_X.reshape(12, 3, 4)), r"X must be 2-D .*\(12, 3, 4\)"),
    "X strings": (lambda: _fit(X=_X.astype(str)), r"X must be numeric"),
    "X empty": (lambda: _fit(X=_X[:0], y=_Y[:0]), r"X must have at least one sample"),
    "X nan": (lambda: _fit(X=np.where(_X == _X[0, 0], np.nan, _X)), r"X contains NaN"),
    "y 2-D": (lambda: _fit(y=_Y[:, None]), r"y must be 1-D .*\(12, 1\)"),
    "y float": (lambda: _fit(y=_Y.astype(float)), r"y must hold integer .*float64"),
    "len mismatch": (lambda: _fit(y=_Y[:-1]), r"y has 11 labels but X has 12"),
    "classes gap": (lambda: _fit(y=_Y * 2), r"contiguous .*\[0, 2, 4\]"),
    "one class": (lambda: _fit(y=np.zeros(12, dtype=int)), r"contiguous .*\[0\]"),
    "negative label": (lambda: _fit(y=_Y - 1), r"contiguous .*\[-1, 0, 1\]"),
    "X_val alone": (lambda: _fit(X_val=_X), r"X_val and y_val must be given together"),
    "X_val features": (lambda: _fit(X_val=_X[:, :5], y_val=_Y), r"X_val has 5 features"),
    "y_val length": (lambda: _fit(X_val=_X, y_val=_Y[:3]), r"y_val has 3 labels"),
    "y_val label": (lambda: _fit(X_val=_X, y_val=_Y + 1), r"y_val must hold labels in \[0, 2\]"),
    "on_epoch_end": (lambda: _fit(on_epoch_end=3), r"on_epoch_end must be callable .*3"),
    # using the model
    "predict unfitted": (lambda: LinearClassifier().predict(_X), r"not fitted yet"),
    "decision unfitted": (lambda: LinearClassifier().decision_function(_X), r"not fitted yet"),
    "score unfitted": (lambda: LinearClassifier().score(_X, _Y), r"not fitted yet"),
    "predict features": (lambda: _fitted().predict(_X[:, :5]), r"X has 5 features .* 12"),
    "predict 1-D": (lambda: _fitted().predict(_X[0]), r"X must be 2-D"),
    "score len": (lambda: _fitted().score(_X, _Y[:4]), r"y has 4 labels but X has 12"),
    # pure functions
    "hinge label range": (lambda: hinge_loss_grad(_W, _B, _XS, _YS + 4), r"y must hold labels"),
    "hinge W 1-D": (lambda: hinge_loss_grad(_W[0], _B, _XS, _YS), r"W must be 2-D"),
    "hinge b shape": (lambda: hinge_loss_grad(_W, _B[:2], _XS, _YS), r"b must have shape \(4,\)"),
    "hinge X features": (lambda: hinge_loss_grad(_W, _B, _XS[:, :2], _YS), r"X must have shape"),
    "hinge delta": (lambda: hinge_loss_grad(_W, _B, _XS, _YS, delta=-1.0), r"delta .*-1\.0"),
    "softmax y len": (lambda: softmax_loss_grad(_W, _B, _XS, _YS[:3]), r"y has 3 labels"),
    "regularization type": (lambda: regularization(_W, 1.0, "l0"), r"reg_type .*'l0'"),
    "regularization reg": (lambda: regularization(_W, -2.0), r"reg must .*-2\.0"),
    "loss_grad loss": (
        lambda: loss_grad(_W, _B, _XS, _YS, **dict(OBJECTIVE, loss="log")),
        r"loss .*'log'",
    ),
    "sgd rng": (lambda: run_sgd(*blobs(n_per_class=2), rng=0), r"rng must be .*int"),
    "sgd n_classes": (lambda: run_sgd(*blobs(n_per_class=2), n_classes=1), r"n_classes .*1"),
    "sgd label range": (lambda: run_sgd(*blobs(n_per_class=2), n_classes=2), r"y must hold labels"),
    "sgd W0_scale": (lambda: run_sgd(*blobs(n_per_class=2), W0_scale=-1.0), r"W0_scale .*-1\.0"),
    "sgd mean shape": (
        lambda: run_sgd(*blobs(n_per_class=2), mean=np.zeros(3, np.float32)),
        r"mean must be a float array of shape \(8,\)",
    ),
    "sgd mean nan": (
        lambda: run_sgd(*blobs(n_per_class=2), mean=np.full(8, np.nan, np.float32)),
        r"mean contains NaN",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_config_error(case):
    call, pattern = BAD_INPUTS[case]
    with pytest.raises(ConfigError, match=pattern) as info:
        call()
    assert isinstance(info.value, ValueError)  # ConfigError is a ValueError for generic callers
