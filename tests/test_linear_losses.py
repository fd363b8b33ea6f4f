"""Tests of cifarlab.linear.losses: against loop references and finite differences, and the one
clear ConfigError of each bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from linear_reference import (
    assert_config_error,
    hinge_reference,
    loss_grad_reference,
    random_problem,
    regularization_reference,
    softmax_reference,
)

from cifarlab.linear.losses import hinge_loss_grad, loss_grad, regularization, softmax_loss_grad
from cifarlab.params import LOSSES, REGULARIZERS

OBJECTIVE = dict(loss="hinge", reg=1e-3, reg_type="l2", l1_ratio=0.5, delta=1.0)


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


def test_integer_hyperparameters_give_the_same_numbers():
    # The checks convert reg=3 to 3.0; numpy computes the same either way.
    W, b, X, y = random_problem(6)
    as_int = loss_grad(W, b, X, y, **dict(OBJECTIVE, reg=3, delta=2))
    as_float = loss_grad(W, b, X, y, **dict(OBJECTIVE, reg=3.0, delta=2.0))
    for got, want in zip(as_int, as_float, strict=True):
        np.testing.assert_array_equal(got, want)


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


# --------------------------------------------------------------------------- bad input

_W, _B, _X, _Y = random_problem(0)

BAD_INPUTS = {
    "hinge label range": (lambda: hinge_loss_grad(_W, _B, _X, _Y + 4), r"y must hold labels"),
    "hinge negative label": (lambda: hinge_loss_grad(_W, _B, _X, _Y - 4), r"labels >= 0"),
    "hinge W 1-D": (lambda: hinge_loss_grad(_W[0], _B, _X, _Y), r"W must be 2-D"),
    "hinge b shape": (lambda: hinge_loss_grad(_W, _B[:2], _X, _Y), r"b must have shape \(4,\)"),
    "hinge X features": (lambda: hinge_loss_grad(_W, _B, _X[:, :2], _Y), r"X must have shape"),
    "hinge X empty": (lambda: hinge_loss_grad(_W, _B, _X[:0], _Y[:0]), r"at least one sample"),
    "hinge delta": (
        lambda: hinge_loss_grad(_W, _B, _X, _Y, delta=-1.0),
        r"^delta must be a finite number > 0, got -1\.0$",
    ),
    "softmax y len": (lambda: softmax_loss_grad(_W, _B, _X, _Y[:3]), r"y has 3 labels"),
    "softmax y float": (lambda: softmax_loss_grad(_W, _B, _X, _Y * 1.0), r"integer class labels"),
    "regularization type": (
        lambda: regularization(_W, 1.0, "l0"),
        r"^reg_type must be one of \['l2', 'l1', 'elasticnet'\], got 'l0'$",
    ),
    "regularization reg": (lambda: regularization(_W, -2.0), r"^reg must be .* >= 0, got -2\.0$"),
    "regularization l1_ratio": (
        lambda: regularization(_W, 1.0, "elasticnet", 1.5),
        r"^l1_ratio must be a finite number in \[0, 1\], got 1\.5$",
    ),
    "regularization W 1-D": (lambda: regularization(_W[0], 1.0), r"W must be 2-D"),
    "loss_grad loss": (
        lambda: loss_grad(_W, _B, _X, _Y, **dict(OBJECTIVE, loss="log")),
        r"^loss must be one of \['hinge', 'softmax'\], got 'log'$",
    ),
    "loss_grad reg nan": (
        lambda: loss_grad(_W, _B, _X, _Y, **dict(OBJECTIVE, reg=float("nan"))),
        r"^reg must be a finite number >= 0, got nan$",
    ),
    "loss_grad delta str": (
        lambda: loss_grad(_W, _B, _X, _Y, **dict(OBJECTIVE, delta="1")),
        r"^delta must be a finite number > 0, got '1'$",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_config_error(case):
    assert_config_error(*BAD_INPUTS[case])
