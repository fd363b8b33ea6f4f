"""cifarlab.knn.estimator.KNearestNeighbor: the estimator against the slow references, on
uint8 (the integer kernels) and on any other numeric input (the float64 path); parameters
checked once, by fit (scikit-learn's own checks and tools: tests/test_sklearn_compat.py)."""

from __future__ import annotations

import numpy as np
import pytest
from knn_reference import clustered, ref_kneighbors, ref_vote
from sklearn.exceptions import NotFittedError

from cifarlab.errors import ConfigError
from cifarlab.knn.estimator import KNearestNeighbor
from cifarlab.params import DISTANCES

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
    assert repr(model) == "KNearestNeighbor(distance='l1')"  # scikit-learn's: what differs


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


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int16])
def test_other_numeric_input_gets_the_same_neighbours_in_float64(dtype, distance):
    rng = np.random.default_rng(3)
    X, y = clustered(rng, 90, 16, 3)
    labels = np.array(["a", "b", "c"])[y]
    exact = KNearestNeighbor(k=5, distance=distance).fit(X[:70], labels[:70])
    model = KNearestNeighbor(k=5, distance=distance).fit(X[:70].astype(dtype), labels[:70])
    assert model.X_.dtype == np.float64
    ref_idx, ref_dist = ref_kneighbors(X[70:], X[:70], 5, distance)
    for query in (X[70:].astype(dtype), X[70:]):  # a uint8 query against float references too
        idx, dist = model.kneighbors(query)
        assert idx.dtype == np.int64 and dist.dtype == np.float64
        np.testing.assert_array_equal(idx, ref_idx)  # integer values: exact in float64
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(model.predict(query), exact.predict(X[70:]))
    # uint8 references with a float query take the float path as well.
    np.testing.assert_array_equal(exact.kneighbors(X[70:].astype(dtype)), (ref_idx, ref_dist))


def test_float_path_orders_ties_by_index_and_honours_the_memory_budget(capsys):
    rng = np.random.default_rng(5)
    R = rng.normal(size=(40, 6))
    R[25] = R[3]  # an exact tie, and one reference repeated at a later index
    Q = np.vstack([R[3] + 1e-3, rng.normal(size=(9, 6))])
    y = np.arange(40) % 4
    for distance in DISTANCES:
        # 16 bytes per query row and reference: one query row per block, then all at once.
        small = KNearestNeighbor(k=4, distance=distance, memory_budget_bytes=16 * 40,
                                 progress=True).fit(R, y)  # fmt: skip
        big = KNearestNeighbor(k=4, distance=distance).fit(R, y)
        idx, dist = small.kneighbors(Q)
        np.testing.assert_array_equal((idx, dist), big.kneighbors(Q))
        assert idx[0, :2].tolist() == [3, 25] and dist[0, 0] == dist[0, 1]
        diff = Q[:, None, :] - R[None, :, :]
        full = np.abs(diff).sum(-1) if distance == "l1" else (diff**2).sum(-1)
        np.testing.assert_allclose(dist, np.take_along_axis(full, idx, 1), rtol=1e-12)
        assert np.all(np.diff(dist, axis=1) >= 0)
    assert "k-NN predict (k=4, l2)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("params", "fit_args", "message"),
    [
        ({"k": 0}, (_X, _Y), "k must be an integer >= 1, got 0"),
        ({"k": 7}, (_X, _Y), "k must be <= the number of training samples: got k=7, n_samples=6"),
        ({"distance": "L2"}, (_X, _Y), "distance must be one of ['l1', 'l2'], got 'L2'"),
        ({"memory_budget_bytes": -1}, (_X, _Y), "memory_budget_bytes must be an integer >= 1"),
        ({"progress": None}, (_X, _Y), "progress must be true or false, got None"),
    ],
)
def test_fit_rejects_bad_parameters(params, fit_args, message):
    with pytest.raises(ConfigError) as info:
        KNearestNeighbor(**params).fit(*fit_args)
    assert message in str(info.value)


# Bad arrays get scikit-learn's own ValueError (validate_data, check_classification_targets).
@pytest.mark.parametrize(
    ("fit_args", "message"),
    [
        ((_X.astype(str), _Y), "dtype='numeric' is not compatible with arrays of bytes/strings"),
        ((np.full((6, 4), np.nan), _Y), "Input X contains NaN"),
        ((_X[0], _Y), "Expected 2D array, got 1D array instead"),
        ((_X, _Y[:3]), "inconsistent numbers of samples: [6, 3]"),
        ((_X, _Y + 0.5), "Unknown label type: continuous"),
        ((_X[:0], _Y[:0]), "Found array with 0 sample(s)"),
        ((_X, None), "requires y to be passed, but the target y is None"),
    ],
)
def test_fit_rejects_bad_arrays(fit_args, message):
    with pytest.raises(ValueError) as info:
        KNearestNeighbor().fit(*fit_args)
    assert message in str(info.value)


def test_rejects_misuse():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        KNearestNeighbor().predict(_X)
    refused = KNearestNeighbor(k=7)
    with pytest.raises(ConfigError, match="k must be <="):
        refused.fit(_X, _Y)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        refused.predict(_X)  # though fit had checked X and set n_features_in_
    model = KNearestNeighbor(k=1).fit(_X, _Y)
    with pytest.raises(ValueError, match="X has 3 features, but KNearestNeighbor is expecting 4"):
        model.predict(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="Complex data not supported"):
        model.kneighbors(_X + 1j)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.score(_X[:2], _Y[:1])
    with pytest.raises(ValueError, match="Found array with 0 sample"):
        model.score(_X[:0], _Y[:0])
    with pytest.raises(
        ConfigError, match="^unknown parameter 'n_neighbors' for KNearestNeighbor; valid ones are"
    ):
        model.set_params(n_neighbors=3)
