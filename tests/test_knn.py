"""cifarlab.knn against slow, loop-based int64 references: exact equality, ties, chunking."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from cifarlab import _knn_kernels, knn
from cifarlab.errors import ConfigError

# Every kernel this machine can run: "simd" needs psadbw (L1) / AVX-512 VNNI (L2).
IMPLS = {
    "l1": ["generic"] + (["simd"] if _knn_kernels.HAS_SAD else []),
    "l2": ["generic", "gemm"] + (["simd"] if _knn_kernels.HAS_VNNI else []),
}
CASES = [(metric, impl) for metric in knn.METRICS for impl in IMPLS[metric]]


# --- slow references ---------------------------------------------------------------------------


def ref_distances(q: np.ndarray, R: np.ndarray, metric: str) -> np.ndarray:
    diff = R.astype(np.int64) - q.astype(np.int64)
    return np.abs(diff).sum(axis=1) if metric == "l1" else (diff * diff).sum(axis=1)


def ref_kneighbors(Q: np.ndarray, R: np.ndarray, k: int, metric: str):
    indices, distances = [], []
    for q in Q:
        dist = ref_distances(q, R, metric)
        order = sorted(range(len(R)), key=lambda j: (int(dist[j]), j))[:k]
        indices.append(order)
        distances.append([int(dist[j]) for j in order])
    shape = (len(Q), k)
    return (
        np.array(indices, dtype=np.int64).reshape(shape),
        np.array(distances, dtype=np.int64).reshape(shape),
    )


def ref_vote(labels: np.ndarray) -> np.ndarray:
    out = []
    for row in labels:
        counts: dict[int, int] = {}
        for label in row:
            counts[int(label)] = counts.get(int(label), 0) + 1
        top = max(counts.values())
        tied = {c for c, n in counts.items() if n == top}
        out.append(next(int(label) for label in row if int(label) in tied))
    return np.array(out, dtype=np.int64)


def check(Q, R, k, metric, impl, **kwargs):
    idx, dist = knn._kneighbors(Q, R, k, metric, impl=impl, **kwargs)
    ref_idx, ref_dist = ref_kneighbors(Q, R, k, metric)
    assert idx.dtype == np.int64 and dist.dtype == np.int64
    assert idx.shape == dist.shape == (len(Q), k)
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)


def images(rng, n, d, low=0, high=256):
    return rng.integers(low, high, size=(n, d), dtype=np.uint8)


# --- exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "impl"), CASES)
@pytest.mark.parametrize(
    ("n_query", "n_ref", "d", "k"),
    [
        (1, 1, 1, 1),
        (3, 9, 5, 4),  # fewer rows than a register tile
        (23, 150, 64, 7),
        (37, 301, 67, 10),  # feature count not a multiple of the SIMD width
        (29, 257, 200, 257),  # k = n_ref
        (13, 90, 3072, 5),  # CIFAR-10 width
        (9, 40, 3075, 3),
    ],
)
def test_matches_reference_on_random_data(metric, impl, n_query, n_ref, d, k):
    rng = np.random.default_rng([n_query, n_ref, d, k])
    check(images(rng, n_query, d), images(rng, n_ref, d), k, metric, impl)


@pytest.mark.parametrize(("metric", "impl"), CASES)
def test_public_function_uses_fastest_exact_path(metric, impl):
    rng = np.random.default_rng(7)
    Q, R = images(rng, 21, 3072), images(rng, 333, 3072)
    idx, dist = knn.kneighbors(Q, R, 6, metric)
    np.testing.assert_array_equal((idx, dist), knn._kneighbors(Q, R, 6, metric, impl=impl))


@pytest.mark.parametrize(("metric", "impl"), CASES)
def test_ties_go_to_smaller_reference_index(metric, impl):
    rng = np.random.default_rng(1)
    d = 96
    R = images(rng, 120, d)
    R[50] = R[7]  # duplicate reference rows
    R[51] = R[7]
    R[100:] = R[3]
    Q = np.vstack([R[7], R[3], R[119], images(rng, 10, d, 0, 2)])  # queries equal to refs
    check(Q, R, 25, metric, impl)
    # Binary images: distances take few values, so most of them tie.
    check(images(rng, 17, d, 0, 2), images(rng, 200, d, 0, 2), 40, metric, impl)
    # All references identical: the answer is 0..k-1 for every query.
    same = np.repeat(images(rng, 1, d), 300, axis=0)
    idx, _ = knn._kneighbors(images(rng, 5, d), same, 12, metric, impl=impl)
    np.testing.assert_array_equal(idx, np.tile(np.arange(12), (5, 1)))


@pytest.mark.parametrize(("metric", "impl"), CASES)
def test_extreme_values(metric, impl):
    d = 3072
    Q = np.array([np.zeros(d), np.full(d, 255), np.tile([0, 255], d // 2)], dtype=np.uint8)
    R = np.array(
        [np.zeros(d), np.full(d, 255), np.tile([255, 0], d // 2), np.tile([0, 255], d // 2)],
        dtype=np.uint8,
    )
    check(Q, R, 4, metric, impl)
    idx, dist = knn._kneighbors(Q[:1], R[1:2], 1, metric, impl=impl)
    assert dist[0, 0] == (255 * d if metric == "l1" else 255 * 255 * d)


@pytest.mark.parametrize(("metric", "impl"), CASES)
def test_near_ties_below_float32_resolution(metric, impl):
    # Distances around 2e8 that differ by 1: float32 cannot tell them apart (its spacing
    # there is 16), so the GEMM path must keep them all as candidates and re-rank exactly.
    d = 3072
    rng = np.random.default_rng(5)
    q = np.zeros((1, d), dtype=np.uint8)
    R = np.full((64, d), 255, dtype=np.uint8)
    R[:, :24] = rng.integers(0, 2, size=(64, 24))  # distance = 255^2 (d - 24) + popcount
    R[:, 24:30] = 254  # all differ from the bulk by the same amount
    check(q, R, 20, metric, impl)
    check(np.vstack([q, R[:3] ^ np.uint8(1)]), R, 64, metric, impl)


@pytest.mark.parametrize(("metric", "impl"), CASES)
@pytest.mark.parametrize("budget", [1, 5_000, 60_000])
def test_chunk_and_block_boundaries(metric, impl, budget):
    # Tiny budgets: one query row per chunk, reference blocks of a few rows (GEMM path),
    # sizes that divide nothing evenly.
    rng = np.random.default_rng(budget)
    Q, R = images(rng, 41, 77), images(rng, 613, 77)
    R[400:410] = R[17]
    check(Q, R, 9, metric, impl, memory_budget_bytes=budget)


def test_many_query_chunks_and_reference_blocks_agree_with_one():
    rng = np.random.default_rng(11)
    Q, R = images(rng, 300, 129), images(rng, 1100, 129)
    for metric in knn.METRICS:
        for impl in IMPLS[metric]:
            whole = knn._kneighbors(Q, R, 15, metric, impl=impl)
            small = knn._kneighbors(Q, R, 15, metric, impl=impl, memory_budget_bytes=20_000)
            np.testing.assert_array_equal(whole, small)
    np.testing.assert_array_equal(
        knn._kneighbors(Q, R, 15, "l2", impl="gemm"),
        knn._kneighbors(Q, R, 15, "l2", impl="generic"),
    )


def test_gemm_path_refuses_an_inaccurate_blas(monkeypatch):
    # A BLAS computing in reduced precision would void the certified filter: it is detected.
    real_matmul = np.matmul

    def sloppy_matmul(a, b, out):
        real_matmul(a, b, out=out)
        out += 1000.0
        return out

    rng = np.random.default_rng(12)
    Q, R = images(rng, 10, 48), images(rng, 50, 48)
    knn._kneighbors(Q, R, 3, "l2", impl="gemm")
    monkeypatch.setattr(np, "matmul", sloppy_matmul)
    with pytest.raises(RuntimeError, match="less accurate than IEEE float32"):
        knn._kneighbors(Q, R, 3, "l2", impl="gemm")


def test_empty_query_set():
    idx, dist = knn.kneighbors(np.zeros((0, 8), np.uint8), np.zeros((3, 8), np.uint8), 2, "l1")
    assert idx.shape == dist.shape == (0, 2)


def test_non_contiguous_input():
    rng = np.random.default_rng(2)
    big = images(rng, 80, 150)
    Q, R = big[::3, ::2], big[1::2, ::2]
    for metric in knn.METRICS:
        np.testing.assert_array_equal(
            knn.kneighbors(Q, R, 5, metric), ref_kneighbors(Q, R, 5, metric)
        )


def peak_traced_bytes(fn) -> int:
    """Peak of numpy and numba (NRT) allocations during fn(), both seen by tracemalloc."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("metric", "impl"), CASES)
@pytest.mark.parametrize("budget", [64 * 1024, 512 * 1024])
def test_memory_budget_respected(metric, impl, budget):
    # Unchunked, the float32 product alone would be 400 x 3000 x 4 = 4.8 MB, 9x the budget.
    rng = np.random.default_rng(3)
    Q, R = images(rng, 400, 48), images(rng, 3000, 48)
    k = 5
    knn._kneighbors(Q[:5], R[:50], k, metric, impl=impl)  # load/compile outside the measurement
    # Outside the budget by design: the output and its sort (n_query x k), O(n) row norms.
    bookkeeping = 6 * 8 * Q.shape[0] * k + 8 * 8 * (R.shape[0] + Q.shape[0])
    peak = peak_traced_bytes(
        lambda: knn._kneighbors(Q, R, k, metric, impl=impl, memory_budget_bytes=budget)
    )
    assert peak <= budget + bookkeeping


def test_memory_budget_is_what_limits_the_gemm_path():
    rng = np.random.default_rng(3)
    Q, R = images(rng, 400, 48), images(rng, 3000, 48)
    peak = peak_traced_bytes(lambda: knn._kneighbors(Q, R, 5, "l2", impl="gemm"))
    assert peak > 400 * 3000 * 4  # with room to spare it holds the whole product


def test_progress_bar(capsys):
    rng = np.random.default_rng(4)
    knn.kneighbors(images(rng, 7, 16), images(rng, 30, 16), 2, "l1", progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err and "7/7" in err
    knn.kneighbors(images(rng, 7, 16), images(rng, 30, 16), 2, "l1")
    assert capsys.readouterr().err == ""


# --- vote --------------------------------------------------------------------------------------


def test_vote_matches_reference():
    rng = np.random.default_rng(6)
    for k in (1, 2, 4, 7, 10):
        labels = rng.integers(0, 3, size=(500, k))  # few classes: many ties
        np.testing.assert_array_equal(knn.vote(labels, 3), ref_vote(labels))


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([2, 1, 1, 2], 2),  # 2-2 tie: class 2 has the nearest member
        ([1, 2, 2, 1], 1),
        ([0, 1, 2], 0),  # three-way tie
        ([3, 1, 2, 2, 1], 1),  # 3 is nearest but not tied for the majority
        ([4, 4, 0, 0, 0], 0),  # plain majority
    ],
)
def test_vote_tie_rule(row, expected):
    assert knn.vote(np.array([row]), 5).tolist() == [expected]
    assert knn.vote(np.array([row]), 5).dtype == np.int64


# --- cross-validation and model selection ------------------------------------------------------


def clustered(rng, n, d, n_classes, noise=150):
    # Noisy enough that accuracy depends on k and the metric (about 0.5 to 0.75).
    centers = rng.integers(40, 216, size=(n_classes, d))
    y = rng.integers(0, n_classes, size=n)
    X = np.clip(centers[y] + rng.integers(-noise, noise + 1, size=(n, d)), 0, 255)
    return X.astype(np.uint8), y


def test_cross_validate_reuse_equals_separate_fits():
    rng = np.random.default_rng(8)
    X, y = clustered(rng, 150, 16, 4)
    fold_ids = np.arange(150) % 3
    ks = [5, 1, 3, 8]
    table = knn.cross_validate(X, y, fold_ids, ks, ["l2", "l1"])
    assert list(table.columns) == ["metric", "k", "fold", "accuracy"]
    expected = []
    for metric in ["l2", "l1"]:
        for k in sorted(ks):
            for fold in range(3):
                train, test = fold_ids != fold, fold_ids == fold
                model = knn.KNearestNeighbor(k=k, metric=metric).fit(X[train], y[train])
                expected.append((metric, k, fold, model.score(X[test], y[test])))
    assert list(table.itertuples(index=False, name=None)) == expected
    assert table["k"].dtype == np.int64 and table["fold"].dtype == np.int64
    assert table["accuracy"].dtype == np.float64
    assert table["accuracy"].nunique() > 1  # the data discriminates between settings


def test_select_best_tie_rules():
    def table(rows):
        return pd.DataFrame(rows, columns=["metric", "k", "fold", "accuracy"])

    # Highest mean wins, even with a larger k and a later metric; std is over folds, ddof=0.
    best = knn.select_best(
        table([("l1", 1, 0, 0.5), ("l1", 1, 1, 0.7), ("l2", 5, 0, 0.8), ("l2", 5, 1, 0.6)])
    )
    assert best == {
        "metric": "l2",
        "k": 5,
        "mean_accuracy": pytest.approx(0.7),
        "std_accuracy": pytest.approx(0.1),
    }
    best = knn.select_best(table([("l2", 3, 0, 0.5), ("l1", 1, 0, 0.4), ("l1", 5, 0, 0.6)]))
    assert (best["metric"], best["k"], best["mean_accuracy"]) == ("l1", 5, 0.6)
    # Equal means: the smaller k, then the metric first in METRICS.
    rows = [("l2", 3, 0, 0.5), ("l2", 3, 1, 0.7), ("l1", 7, 0, 0.7), ("l1", 7, 1, 0.5)]
    assert knn.select_best(table(rows))["k"] == 3
    rows = [("l2", 3, 0, 0.1 + 0.2), ("l2", 3, 1, 0.3), ("l1", 3, 0, 0.3), ("l1", 3, 1, 0.3)]
    best = knn.select_best(table(rows))
    assert (best["metric"], best["k"]) == ("l1", 3)
    assert best["std_accuracy"] == 0.0 and isinstance(best["k"], int)


def test_select_best_on_cross_validate_output():
    rng = np.random.default_rng(9)
    X, y = clustered(rng, 90, 30, 3)
    table = knn.cross_validate(X, y, np.arange(90) % 3, [1, 3], ["l1", "l2"])
    best = knn.select_best(table)
    means = table.groupby(["metric", "k"])["accuracy"].mean()
    assert best["mean_accuracy"] == pytest.approx(means.max())
    assert set(best) == {"metric", "k", "mean_accuracy", "std_accuracy"}


# --- estimator ---------------------------------------------------------------------------------


def test_estimator_contract():
    rng = np.random.default_rng(10)
    X, y = clustered(rng, 120, 24, 3)
    labels = np.array([-1, 7, 3])[y]  # arbitrary label values
    model = knn.KNearestNeighbor(k=3, metric="l1")
    assert model.fit(X[:100], labels[:100]) is model
    assert model.n_classes_ == 3 and model.classes_.tolist() == [-1, 3, 7]
    assert model.n_features_in_ == 24 and model.X_.dtype == np.uint8
    idx, dist = model.kneighbors(X[100:])
    np.testing.assert_array_equal((idx, dist), ref_kneighbors(X[100:], X[:100], 3, "l1"))
    pred = model.predict(X[100:])
    encoded = np.searchsorted(model.classes_, labels[:100])
    np.testing.assert_array_equal(pred, model.classes_[ref_vote(encoded[idx])])
    assert model.score(X[100:], labels[100:]) == pytest.approx(np.mean(pred == labels[100:]))
    assert model.get_params() == {
        "k": 3,
        "metric": "l1",
        "memory_budget_bytes": 1 << 30,
        "progress": False,
    }
    assert model.set_params(k=1).k == 1
    assert "KNearestNeighbor(k=1" in repr(model)


# --- invalid input -----------------------------------------------------------------------------

_X = np.zeros((6, 4), np.uint8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "cosine"}, "metric must be one of"),
        ({"metric": None}, "metric must be one of"),
        ({"k": 0}, "k must be >= 1, got 0"),
        ({"k": 7}, "k must be <= the number of reference images (6), got 7"),
        ({"k": 2.0}, "k must be an integer, got 2.0"),
        ({"k": True}, "k must be an integer, got True"),
        ({"X_query": np.zeros(4, np.uint8)}, "X_query must be 2-D"),
        ({"X_ref": np.zeros((6, 4, 1), np.uint8)}, "X_ref must be 2-D"),
        ({"X_query": np.zeros((2, 4), np.float32)}, "X_query must have dtype uint8"),
        ({"X_ref": np.zeros((6, 4), np.int64)}, "X_ref must have dtype uint8"),
        ({"X_query": np.zeros((2, 5), np.uint8)}, "X_query has 5 features but the reference"),
        ({"X_query": np.zeros((2, 0), np.uint8), "X_ref": np.zeros((6, 0), np.uint8)}, "feature"),
        ({"memory_budget_bytes": 0}, "memory_budget_bytes must be >= 1, got 0"),
        ({"memory_budget_bytes": 1e9}, "memory_budget_bytes must be an integer"),
    ],
)
def test_kneighbors_rejects_bad_input(kwargs, message):
    args = {"X_query": _X[:2], "X_ref": _X, "k": 2, "metric": "l2", **kwargs}
    with pytest.raises(ConfigError) as info:
        knn.kneighbors(
            args.pop("X_query"), args.pop("X_ref"), args.pop("k"), args.pop("metric"), **args
        )
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("labels", "n_classes", "message"),
    [
        (np.array([0, 1]), 2, "neighbor_labels must be 2-D"),
        (np.zeros((2, 0), int), 2, "at least one column"),
        (np.array([[0.0, 1.0]]), 2, "neighbor_labels must hold integers"),
        (np.array([[0, 2]]), 2, "neighbor_labels must lie in [0, 2), got 2"),
        (np.array([[0, -1]]), 2, "got -1"),
        (np.array([[0]]), 0, "n_classes must be >= 1, got 0"),
    ],
)
def test_vote_rejects_bad_input(labels, n_classes, message):
    with pytest.raises(ConfigError) as info:
        knn.vote(labels, n_classes)
    assert message in str(info.value)


_Y = np.array([0, 1, 0, 1, 0, 1])
_F = np.array([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"X": _X.astype(np.int16)}, "X must have dtype uint8"),
        ({"y": _Y[:5]}, "y has 5 entries but X has 6 rows"),
        ({"y": _Y.astype(float)}, "y must hold integers"),
        ({"y": _Y - 1}, "y must be >= 0"),
        ({"fold_ids": np.array([0, 0, 2, 2, 2, 2])}, "fold 1 is empty"),
        ({"fold_ids": _F.reshape(2, 3)}, "fold_ids must be 1-D"),
        ({"k_choices": [5]}, "k=5 exceeds the 4 reference images"),
        ({"k_choices": []}, "k_choices must not be empty"),
        ({"k_choices": [0, 1]}, "k_choices entry must be >= 1, got 0"),
        ({"metrics": ["l2", "hamming"]}, "metrics entry must be one of"),
        ({"metrics": []}, "metrics must not be empty"),
    ],
)
def test_cross_validate_rejects_bad_input(kwargs, message):
    args = {"X": _X, "y": _Y, "fold_ids": _F, "k_choices": [1], "metrics": ["l2"], **kwargs}
    with pytest.raises(ConfigError) as info:
        knn.cross_validate(**args)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"metric": ["l1"], "k": [1]}), "cv_table must be a DataFrame with columns"),
        ([("l1", 1, 0, 0.5)], "cv_table must be a DataFrame"),
        (pd.DataFrame(columns=["metric", "k", "fold", "accuracy"]), "cv_table is empty"),
        (
            pd.DataFrame({"metric": ["l3"], "k": [1], "fold": [0], "accuracy": [0.5]}),
            "cv_table metric must be one of",
        ),
    ],
)
def test_select_best_rejects_bad_input(table, message):
    with pytest.raises(ConfigError) as info:
        knn.select_best(table)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("params", "fit_args", "message"),
    [
        ({"k": 0}, (_X, _Y), "k must be >= 1, got 0"),
        ({"k": 7}, (_X, _Y), "k must be <= the number of training images (6), got 7"),
        ({"metric": "L2"}, (_X, _Y), "metric must be one of"),
        ({"memory_budget_bytes": -1}, (_X, _Y), "memory_budget_bytes must be >= 1"),
        ({}, (_X.astype(float), _Y), "X must have dtype uint8"),
        ({}, (_X, _Y[:3]), "y has 3 entries but X has 6 rows"),
    ],
)
def test_estimator_fit_rejects_bad_input(params, fit_args, message):
    with pytest.raises(ConfigError) as info:
        knn.KNearestNeighbor(**params).fit(*fit_args)
    assert message in str(info.value)


def test_estimator_rejects_misuse():
    with pytest.raises(ConfigError, match="not fitted yet"):
        knn.KNearestNeighbor().predict(_X)
    model = knn.KNearestNeighbor(k=1).fit(_X, _Y)
    with pytest.raises(ConfigError, match="X has 3 features but the reference images have 4"):
        model.predict(np.zeros((2, 3), np.uint8))
    with pytest.raises(ConfigError, match="y has 1 entries but X has 2 rows"):
        model.score(_X[:2], _Y[:1])
    with pytest.raises(ConfigError, match="invalid parameter 'n_neighbors'"):
        model.set_params(n_neighbors=3)


def test_private_impl_choice_is_validated():
    with pytest.raises(ConfigError, match="impl must be one of"):
        knn._kneighbors(_X, _X, 1, "l1", impl="fast")
    with pytest.raises(ConfigError, match="impl='gemm' is for 'l2'"):
        knn._kneighbors(_X, _X, 1, "l1", impl="gemm")
