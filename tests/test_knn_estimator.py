"""cifarlab.knn.estimator.KNearestNeighbor: the scikit-learn contract, against the slow
references; parameters checked once, by fit."""

from __future__ import annotations

import numpy as np
import pytest
from knn_reference import clustered, ref_kneighbors, ref_vote

from cifarlab.errors import ConfigError
from cifarlab.knn.estimator import KNearestNeighbor

_X = np.zeros((6, 4), np.uint8)
_Y = np.array([0, 1, 0, 1, 0, 1])


def test_estimator_contract():
    rng = np.random.default_rng(10)
    X, y = clustered(rng, 120, 24, 3)
    labels = np.array([9, 2, 5])[y]  # label values other than 0..n_classes-1
    model = KNearestNeighbor(k=3, distance="l1")
    assert model.fit(X[:100], labels[:100]) is model
    assert model.n_classes_ == 3 and model.classes_.tolist() == [2, 5, 9]
    assert model.n_features_in_ == 24 and model.X_.dtype == np.uint8
    idx, dist = model.kneighbors(X[100:])
    np.testing.assert_array_equal((idx, dist), ref_kneighbors(X[100:], X[:100], 3, "l1"))
    pred = model.predict(X[100:])
    encoded = np.searchsorted(model.classes_, labels[:100])
    np.testing.assert_array_equal(pred, model.classes_[ref_vote(encoded[idx])])
    assert model.score(X[100:], labels[100:]) == pytest.approx(np.mean(pred == labels[100:]))
    assert model.get_params() == {
        "k": 3,
        "distance": "l1",
        "memory_budget_bytes": 1 << 30,
        "progress": False,
    }
    assert model.set_params(k=1).k == 1
    assert "KNearestNeighbor(k=1, distance='l1'" in repr(model)


def test_parameters_take_effect_at_fit():
    rng = np.random.default_rng(14)
    X, y = clustered(rng, 60, 12, 3)
    model = KNearestNeighbor(k=4, distance="l2").fit(X[:50], y[:50])
    model.set_params(k=0, distance="cosine")  # not checked, and not used, until the next fit
    assert model.kneighbors(X[50:])[0].shape == (10, 4)
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        model.fit(X[:50], y[:50])
    model.set_params(k=2, distance="l1").fit(X[:50], y[:50])
    np.testing.assert_array_equal(model.kneighbors(X[50:]), ref_kneighbors(X[50:], X[:50], 2, "l1"))


def test_progress_bar_names_the_setting(capsys):
    KNearestNeighbor(k=1, distance="l1", progress=True).fit(_X, _Y).predict(_X[:2])
    assert "k-NN predict (k=1, l1)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("params", "fit_args", "message"),
    [
        ({"k": 0}, (_X, _Y), "k must be an integer >= 1, got 0"),
        ({"k": 7}, (_X, _Y), "k must be <= the number of training images (6), got 7"),
        ({"distance": "L2"}, (_X, _Y), "distance must be one of ['l1', 'l2'], got 'L2'"),
        ({"memory_budget_bytes": -1}, (_X, _Y), "memory_budget_bytes must be an integer >= 1"),
        ({"progress": None}, (_X, _Y), "progress must be true or false, got None"),
        ({}, (_X.astype(float), _Y), "X must have dtype uint8"),
        ({}, (_X, _Y[:3]), "y has 3 labels but X has 6 samples"),
        ({}, (_X, _Y - 1), "y must hold labels >= 0, got -1"),
        ({}, (_X, _Y.astype(float)), "y must hold integer class labels"),
        ({}, (_X[:0], _Y[:0]), "y is empty"),
    ],
)
def test_fit_rejects_bad_input(params, fit_args, message):
    with pytest.raises(ConfigError) as info:
        KNearestNeighbor(**params).fit(*fit_args)
    assert message in str(info.value)


def test_rejects_misuse():
    with pytest.raises(ConfigError, match="not fitted yet"):
        KNearestNeighbor().predict(_X)
    model = KNearestNeighbor(k=1).fit(_X, _Y)
    with pytest.raises(ConfigError, match="X has 3 features but the reference images have 4"):
        model.predict(np.zeros((2, 3), np.uint8))
    with pytest.raises(ConfigError, match="X must have dtype uint8"):
        model.kneighbors(_X.astype(np.int16))
    with pytest.raises(ConfigError, match="y has 1 labels but X has 2 samples"):
        model.score(_X[:2], _Y[:1])
    with pytest.raises(ConfigError, match="y is empty"):
        model.score(_X[:0], _Y[:0])
    with pytest.raises(ConfigError, match="invalid parameter 'n_neighbors'.*known: k, distance"):
        model.set_params(n_neighbors=3)
