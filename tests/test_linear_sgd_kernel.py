"""The fused SGD step kernel (cifarlab.linear._sgd_kernels) against the numpy loop it replaced:
same seeds, same draws, results equal to float tolerance, on small problems; and its pieces
(tiles, padding, partial tiles, the prefetch) against plain numpy."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from conftest import learnable_images
from forced_target import run_children

from cifarlab.linear import _sgd_kernels as kern
from cifarlab.linear.losses import _loss_grad
from cifarlab.linear.sgd import SGDConfig, _scores, sgd, single_blas_thread

# --------------------------------------------------------------------------- today's loop


def _numpy_scores(X, W, b, mean):
    X = X.astype(W.dtype)
    return (X if mean is None else X - mean) @ W + b


def numpy_sgd(X, y, n_classes, config, *, rng, mean=None, X_val=None, y_val=None):
    """The minibatch loop of cifarlab.linear.sgd before the step kernel (commit e16a0d3): each
    minibatch converted to the working dtype and centred with numpy, then losses._loss_grad
    (two BLAS products) and the update in numpy. Returns (W, b, losses, train_acc, val_acc,
    best_epoch)."""
    dtype = np.float64 if (X if mean is None else mean).dtype == np.float64 else np.float32
    if mean is None:
        X = X.astype(dtype, copy=False)
        if X_val is not None:
            X_val = X_val.astype(dtype, copy=False)
    n, d = X.shape
    W = (config.W0_scale * rng.standard_normal((d, n_classes))).astype(dtype)
    b = np.zeros(n_classes, dtype=dtype)
    X_eval, y_eval = X, y
    if config.train_eval_size is not None and config.train_eval_size < n:
        rows = np.sort(rng.spawn(1)[0].choice(n, size=config.train_eval_size, replace=False))
        X_eval, y_eval = X[rows], y[rows]
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    losses, train_acc, val_acc = [], [], []
    best = (-1, -math.inf, W, b)
    lr, m = config.learning_rate, config.momentum
    objective = (config.loss, config.reg, config.reg_type, config.l1_ratio, config.delta)
    for epoch in range(config.epochs):
        order = rng.permutation(n)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            Xb = X[idx]
            if mean is not None:
                Xb = Xb.astype(dtype, copy=False)
                Xb -= mean
            at_W, at_b = (W + m * vW, b + m * vb) if config.nesterov else (W, b)
            value, dW, db = _loss_grad(at_W, at_b, Xb, y[idx], *objective)
            losses.append(value)
            if m:
                vW *= m
                vW -= lr * dW
                vb *= m
                vb -= lr * db
                W += vW
                b += vb
            else:
                W -= lr * dW
                b -= lr * db
        train_acc.append(np.mean(_numpy_scores(X_eval, W, b, mean).argmax(1) == y_eval))
        if X_val is not None:
            val_acc.append(np.mean(_numpy_scores(X_val, W, b, mean).argmax(1) == y_val))
        if config.patience is not None:
            if val_acc[-1] > best[1]:
                best = (epoch, val_acc[-1], W.copy(), b.copy())
            elif epoch - best[0] >= config.patience:
                break
        lr *= config.lr_decay
    if config.patience is None:
        best = (epoch, None, W, b)
    return best[2], best[3], np.array(losses), np.array(train_acc), np.array(val_acc), best[0]


# --------------------------------------------------------------------------- whole runs

BASE = dict(
    loss="hinge", reg=1e-2, reg_type="l2", l1_ratio=0.5, delta=1.0, learning_rate=1e-4,
    batch_size=16, epochs=4,
)  # fmt: skip
CASES = {
    "hinge": {},
    "softmax": dict(loss="softmax"),
    "hinge-momentum-decay": dict(momentum=0.9, lr_decay=0.8),
    "softmax-nesterov-elasticnet": dict(
        loss="softmax", momentum=0.9, nesterov=True, reg_type="elasticnet", l1_ratio=0.3
    ),
    "hinge-l1-patience-subset": dict(
        reg_type="l1", delta=2.0, epochs=8, patience=2, train_eval_size=30
    ),
    "softmax-no-reg-partial-tiles": dict(loss="softmax", reg=0.0, batch_size=13),
}


def images(seed, n, d=37, n_classes=4):
    # d = 37: a feature count that is no multiple of any vector width or block.
    return learnable_images(seed, n, d, n_classes, high=150, boost=60)


def compare(result, reference, rtol):
    W, b, losses, train_acc, val_acc, best_epoch = reference
    np.testing.assert_allclose(result.loss_history, losses, rtol=rtol)
    scale = float(np.abs(W).max())
    np.testing.assert_allclose(result.W, W, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(result.b, b, rtol=rtol, atol=rtol * float(np.abs(b).max()))
    np.testing.assert_array_equal(result.train_accuracy, train_acc)
    np.testing.assert_array_equal(result.val_accuracy, val_acc)
    assert result.best_epoch == best_epoch


@pytest.mark.parametrize("case", list(CASES))
def test_raw_images_train_as_the_numpy_loop_did(case):
    (X, y), (X_val, y_val) = images(0, 90), images(1, 40)
    config = SGDConfig(**{**BASE, **CASES[case]})
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    kw = dict(mean=mean, X_val=X_val, y_val=y_val)
    with single_blas_thread():
        result = sgd(X, y, 4, config, rng=np.random.default_rng(5), **kw)
        reference = numpy_sgd(X, y, 4, config, rng=np.random.default_rng(5), **kw)
    assert result.W.dtype == np.float32 and result.loss_history.dtype == np.float64
    compare(result, reference, rtol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["hinge", "softmax"])
def test_float_input_without_mean_trains_as_the_numpy_loop_did(dtype, loss):
    X, y = images(2, 70)
    X = (X.astype(np.float64) / 255).astype(dtype)
    config = SGDConfig(**{**BASE, "loss": loss, "learning_rate": 0.5, "momentum": 0.5,
                          "nesterov": True, "W0_scale": 0.01})  # fmt: skip
    result = sgd(X, y, 4, config, rng=np.random.default_rng(2))
    reference = numpy_sgd(X, y, 4, config, rng=np.random.default_rng(2))
    assert result.W.dtype == dtype
    compare(result, reference, rtol=1e-12 if dtype == np.float64 else 2e-5)


def test_cifar_sized_rows():
    # 3,072 features: every block size, the padded buffer and the prefetch at full width.
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, size=(45, 3072), dtype=np.uint8)
    y = rng.integers(0, 10, size=45)
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    config = SGDConfig(**{**BASE, "learning_rate": 1e-7, "batch_size": 20, "epochs": 2})
    result = sgd(X, y, 10, config, rng=np.random.default_rng(0), mean=mean)
    reference = numpy_sgd(X, y, 10, config, rng=np.random.default_rng(0), mean=mean)
    compare(result, reference, rtol=5e-5)


# --------------------------------------------------------------------------- older CPUs


def check_whole_runs() -> dict:
    """The whole-run tests above, in this process's numba target; returns the target and the
    failures (the child process of :func:`test_older_cpus_train_as_the_numpy_loop_did`)."""
    from cifarlab.knn._kernels import TARGET_CPU

    raw = test_raw_images_train_as_the_numpy_loop_did
    floats = test_float_input_without_mean_trains_as_the_numpy_loop_did
    checks = [(f"raw {case}", raw, (case,)) for case in CASES]
    checks += [
        (f"float {loss} {dtype.__name__}", floats, (dtype, loss))
        for dtype in (np.float32, np.float64)
        for loss in ("hinge", "softmax")
    ]
    checks.append(("cifar-sized rows", test_cifar_sized_rows, ()))
    failures = []
    for name, check, args in checks:
        try:
            check(*args)
        except AssertionError as error:
            failures.append(f"{name}: {str(error)[:500]}")
    return {"cpu": TARGET_CPU, "checked": len(checks), "failures": failures}


@pytest.mark.parametrize("isa", ["avx2", "sse2"])
def test_older_cpus_train_as_the_numpy_loop_did(isa):
    # The step kernel has one path, but LLVM vectorises it for the target's widest vectors
    # (and FMA or not): AVX2 and SSE2 code, run in child processes (tests/forced_target.py).
    runs = _forced_runs()
    if isa not in runs:
        pytest.skip(f"this machine cannot execute {isa} code (or is not x86)")
    assert runs[isa]["checked"] == len(CASES) + 5
    assert runs[isa]["failures"] == []


@functools.cache
def _forced_runs() -> dict:
    return run_children("test_linear_sgd_kernel", "check_whole_runs", ["avx2", "sse2"])


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("n", [1, 3, 8, 11, 29])
@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_scores_match_numpy_for_any_tile_fill(n, n_classes):
    rng = np.random.default_rng(n * n_classes)
    X = rng.integers(0, 256, size=(n, 1100), dtype=np.uint8)
    W = rng.standard_normal((1100, n_classes)).astype(np.float32)
    b = rng.standard_normal(n_classes).astype(np.float32)
    mean = rng.uniform(0, 255, 1100).astype(np.float32)
    expected = (X.astype(np.float64) - mean) @ W.astype(np.float64) + b
    np.testing.assert_allclose(_scores(X, W, b, mean), expected, rtol=1e-4, atol=1e-2)
    # Float input and no mean: the same kernel, another specialisation.
    Xf = X.astype(np.float32)
    np.testing.assert_allclose(
        _scores(Xf, W, b), Xf.astype(np.float64) @ W + b, rtol=1e-4, atol=1e-2
    )


@pytest.mark.parametrize("loss", ["hinge", "softmax"])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 21])
def test_step_gradient_matches_losses_module(loss, n):
    rng = np.random.default_rng(n)
    d, n_classes = 300, 5
    X = rng.integers(0, 256, size=(40, d), dtype=np.uint8)
    y = rng.integers(0, n_classes, size=40)
    idx = rng.permutation(40)[:n]
    mean = X.mean(axis=0).astype(np.float32)
    W = (0.01 * rng.standard_normal((d, n_classes))).astype(np.float32)
    b = (0.1 * rng.standard_normal(n_classes)).astype(np.float32)
    G, xbuf, S = kern.scratch(n_classes, d, np.float32)
    gb = np.empty(n_classes, np.float32)
    Wt = np.ascontiguousarray(W.T)
    code = kern.HINGE if loss == "hinge" else kern.SOFTMAX
    value = kern.loss_grad(X, idx, mean, Wt, b, y, code, 1.0, G, gb, xbuf, S)
    Xb = X[idx].astype(np.float64) - mean
    ref_value, dW, db = _loss_grad(W.astype(np.float64), b.astype(np.float64), Xb, y[idx],
                                   loss, 0.0, "l2", 0.5, 1.0)  # fmt: skip
    assert value == pytest.approx(ref_value, rel=1e-5)
    np.testing.assert_allclose(G, dW.T, rtol=1e-4, atol=1e-4 * np.abs(dW).max())
    np.testing.assert_allclose(gb, db, rtol=1e-4, atol=1e-6)


def test_scratch_buffers_are_laid_out_against_4k_aliasing():
    G, xbuf, S = kern.scratch(10, 3072, np.float32)
    assert G.shape == (10, 3072) and G.flags.c_contiguous
    assert xbuf.shape == (kern.TILE, 3072 + kern.PAD) and S.shape == (kern.TILE, 10)
    assert G.ctypes.data % 4096 == 0
    assert (xbuf.ctypes.data - G.ctypes.data) % 4096 == 2048


def test_nan_scores_are_a_nan_loss():
    # np.maximum propagates NaN; the kernel must too, or divergence would go unseen.
    X = np.ones((4, 5), np.float32)
    G, xbuf, S = kern.scratch(3, 5, np.float32)
    Wt = np.full((3, 5), np.nan, np.float32)
    for code in (kern.HINGE, kern.SOFTMAX):
        value = kern.loss_grad(X, np.arange(4), np.zeros(5, np.float32), Wt,
                               np.zeros(3, np.float32), np.zeros(4, np.int64), code, 1.0, G,
                               np.empty(3, np.float32), xbuf, S)  # fmt: skip
        assert math.isnan(value)
