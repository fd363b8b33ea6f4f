"""Slow, loop-based references, small problems and a ConfigError check for the cifarlab.linear
tests.

Also the platform the bit-for-bit digests of the SGD results were recorded on: float32 results
depend on the OpenBLAS kernels and numpy's SIMD loops, so elsewhere those tests are skipped.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from cifarlab.errors import ConfigError


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


def assert_config_error(call, pattern):
    """``call()`` raises the ConfigError whose message matches ``pattern``."""
    with pytest.raises(ConfigError, match=pattern) as info:
        call()
    assert isinstance(info.value, ValueError)  # ConfigError is a ValueError for generic callers


# --------------------------------------------------------------------------- problems


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


def blobs(seed=0, n_per_class=40, d=8, n_classes=3, spread=0.5):
    """Float32 Gaussian blobs, (n_per_class * n_classes, d): class c is centred at 3 * e_c
    (linearly separable with the default spread)."""
    rng = np.random.default_rng(seed)
    centers = 3.0 * np.eye(n_classes, d)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + spread * rng.standard_normal((y.size, d))
    return X.astype(np.float32), y


# --------------------------------------------------------------------------- bit for bit

# Where the digests in the tests were recorded, with the code before cifarlab.linear was split
# into modules (commit 9a9677e), computing with one BLAS thread.
RECORDED_ON = "numpy 2.4.6, openblas 0.3.31.188.0 SkylakeX"


def platform() -> str:
    """numpy's version and its BLAS library, version and kernels, as in ``RECORDED_ON``."""
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    # scipy may have loaded a BLAS library of its own; numpy's wheel ships one in numpy.libs.
    blas = [i for i in blas if "numpy" in i["filepath"]] or blas
    kernels = [f"{i['internal_api']} {i['version']} {i.get('architecture')}" for i in blas]
    return f"numpy {np.__version__}, {', '.join(kernels)}"


def skip_unless_recording_platform() -> None:
    if platform() != RECORDED_ON:
        pytest.skip(f"digests recorded on {RECORDED_ON}; this is {platform()}")


def digest(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' bytes, in order: equal for bit-identical values."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
