"""cifarlab.knn.neighbors against slow int64 references: every kernel path, ties, chunking,
memory, the vote, and one clear error per bad input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from knn_reference import images, ref_kneighbors, ref_vote

from cifarlab.errors import ConfigError
from cifarlab.knn import _kernels, neighbors
from cifarlab.params import DISTANCES

# Every kernel this machine can run natively: "simd" needs psadbw (L1); the L2 SIMD paths
# (vnni512, vnni256, avx2) their instructions. Older CPUs' paths: test_knn_kernels_paths.py.
IMPLS = {distance: neighbors.kernel_paths(distance) for distance in DISTANCES}
CASES = [(distance, impl) for distance in DISTANCES for impl in IMPLS[distance]]


def check(Q, R, k, distance, impl, **kwargs):
    idx, dist = neighbors._kneighbors(Q, R, k, distance, impl=impl, **kwargs)
    ref_idx, ref_dist = ref_kneighbors(Q, R, k, distance)
    assert idx.dtype == np.int64 and dist.dtype == np.int64
    assert idx.shape == dist.shape == (len(Q), k)
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)


# --- exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prune", [True, False])
@pytest.mark.parametrize(("distance", "impl"), CASES)
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
def test_matches_reference_on_random_data(distance, impl, n_query, n_ref, d, k, prune):
    rng = np.random.default_rng([n_query, n_ref, d, k])
    check(images(rng, n_query, d), images(rng, n_ref, d), k, distance, impl, prune=prune)


@pytest.mark.parametrize(("distance", "impl"), CASES)
def test_public_function_uses_fastest_exact_path(distance, impl):
    rng = np.random.default_rng(7)
    Q, R = images(rng, 21, 3072), images(rng, 333, 3072)
    idx, dist = neighbors.kneighbors(Q, R, 6, distance)
    np.testing.assert_array_equal((idx, dist), neighbors._kneighbors(Q, R, 6, distance, impl=impl))


@pytest.mark.parametrize(("distance", "impl"), CASES)
def test_ties_go_to_smaller_reference_index(distance, impl):
    rng = np.random.default_rng(1)
    d = 96
    R = images(rng, 120, d)
    R[50] = R[7]  # duplicate reference rows
    R[51] = R[7]
    R[100:] = R[3]
    Q = np.vstack([R[7], R[3], R[119], images(rng, 10, d, 0, 2)])  # queries equal to refs
    check(Q, R, 25, distance, impl)
    # Binary images: distances take few values, so most of them tie.
    check(images(rng, 17, d, 0, 2), images(rng, 200, d, 0, 2), 40, distance, impl)
    # All references identical: the answer is 0..k-1 for every query.
    same = np.repeat(images(rng, 1, d), 300, axis=0)
    idx, _ = neighbors._kneighbors(images(rng, 5, d), same, 12, distance, impl=impl)
    np.testing.assert_array_equal(idx, np.tile(np.arange(12), (5, 1)))


@pytest.mark.parametrize(("distance", "impl"), CASES)
def test_extreme_values(distance, impl):
    d = 3072
    Q = np.array([np.zeros(d), np.full(d, 255), np.tile([0, 255], d // 2)], dtype=np.uint8)
    R = np.array(
        [np.zeros(d), np.full(d, 255), np.tile([255, 0], d // 2), np.tile([0, 255], d // 2)],
        dtype=np.uint8,
    )
    check(Q, R, 4, distance, impl)
    idx, dist = neighbors._kneighbors(Q[:1], R[1:2], 1, distance, impl=impl)
    assert dist[0, 0] == (255 * d if distance == "l1" else 255 * 255 * d)


@pytest.mark.parametrize(("distance", "impl"), CASES)
def test_near_ties_below_float32_resolution(distance, impl):
    # Distances around 2e8 that differ by 1: float32 cannot tell them apart (its spacing
    # there is 16), so the GEMM path must keep them all as candidates and re-rank exactly.
    d = 3072
    rng = np.random.default_rng(5)
    q = np.zeros((1, d), dtype=np.uint8)
    R = np.full((64, d), 255, dtype=np.uint8)
    R[:, :24] = rng.integers(0, 2, size=(64, 24))  # distance = 255^2 (d - 24) + popcount
    R[:, 24:30] = 254  # all differ from the bulk by the same amount
    check(q, R, 20, distance, impl)
    check(np.vstack([q, R[:3] ^ np.uint8(1)]), R, 64, distance, impl)


@pytest.mark.parametrize(("distance", "impl"), CASES)
@pytest.mark.parametrize("budget", [1, 5_000, 60_000])
def test_chunk_and_block_boundaries(distance, impl, budget):
    # Tiny budgets: one query row per chunk, reference blocks of a few rows (GEMM path),
    # sizes that divide nothing evenly.
    rng = np.random.default_rng(budget)
    Q, R = images(rng, 41, 77), images(rng, 613, 77)
    R[400:410] = R[17]
    check(Q, R, 9, distance, impl, memory_budget_bytes=budget)


def test_many_query_chunks_and_reference_blocks_agree_with_one():
    rng = np.random.default_rng(11)
    Q, R = images(rng, 300, 129), images(rng, 1100, 129)
    for distance, impl in CASES:
        whole = neighbors._kneighbors(Q, R, 15, distance, impl=impl)
        small = neighbors._kneighbors(Q, R, 15, distance, impl=impl, memory_budget_bytes=20_000)
        np.testing.assert_array_equal(whole, small)
    np.testing.assert_array_equal(
        neighbors._kneighbors(Q, R, 15, "l2", impl="gemm"),
        neighbors._kneighbors(Q, R, 15, "l2", impl="generic"),
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
    neighbors._kneighbors(Q, R, 3, "l2", impl="gemm")
    monkeypatch.setattr(np, "matmul", sloppy_matmul)
    with pytest.raises(RuntimeError, match="less accurate than IEEE float32"):
        neighbors._kneighbors(Q, R, 3, "l2", impl="gemm")


def test_empty_query_set():
    Q, R = np.zeros((0, 8), np.uint8), np.zeros((3, 8), np.uint8)
    idx, dist = neighbors.kneighbors(Q, R, 2, "l1")
    assert idx.shape == dist.shape == (0, 2)


def test_non_contiguous_input():
    rng = np.random.default_rng(2)
    big = images(rng, 80, 150)
    Q, R = big[::3, ::2], big[1::2, ::2]
    for distance in DISTANCES:
        np.testing.assert_array_equal(
            neighbors.kneighbors(Q, R, 5, distance), ref_kneighbors(Q, R, 5, distance)
        )


def test_integral_values_of_any_type_are_accepted():
    # The shared declaration takes a whole float for a count (1e6 in a config), as params.yaml.
    rng = np.random.default_rng(13)
    Q, R = images(rng, 6, 20), images(rng, 30, 20)
    expected = neighbors.kneighbors(Q, R, 2, "l2", memory_budget_bytes=1 << 20)
    for k, budget in [(np.int64(2), np.int32(1 << 20)), (2.0, float(1 << 20))]:
        got = neighbors.kneighbors(Q, R, k, "l2", memory_budget_bytes=budget)
        np.testing.assert_array_equal(got, expected)


def peak_traced_bytes(fn) -> int:
    """Peak of numpy and numba (NRT) allocations during fn(), both seen by tracemalloc."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("distance", "impl"), CASES)
@pytest.mark.parametrize("budget", [64 * 1024, 512 * 1024])
def test_memory_budget_respected(distance, impl, budget):
    # Unchunked, the float32 product alone would be 400 x 3000 x 4 = 4.8 MB, 9x the budget.
    rng = np.random.default_rng(3)
    Q, R = images(rng, 400, 48), images(rng, 3000, 48)
    k = 5
    neighbors._kneighbors(Q[:5], R[:50], k, distance, impl=impl)  # load/compile beforehand
    # Outside the budget by design: the output and its sort (n_query x k), O(n) row norms.
    bookkeeping = 6 * 8 * Q.shape[0] * k + 8 * 8 * (R.shape[0] + Q.shape[0])
    peak = peak_traced_bytes(
        lambda: neighbors._kneighbors(Q, R, k, distance, impl=impl, memory_budget_bytes=budget)
    )
    assert peak <= budget + bookkeeping


def test_memory_budget_is_what_limits_the_gemm_path():
    rng = np.random.default_rng(3)
    Q, R = images(rng, 400, 48), images(rng, 3000, 48)
    peak = peak_traced_bytes(lambda: neighbors._kneighbors(Q, R, 5, "l2", impl="gemm"))
    assert peak > 400 * 3000 * 4  # with room to spare it holds the whole product


def test_progress_bar(capsys):
    rng = np.random.default_rng(4)
    Q, R = images(rng, 7, 16), images(rng, 30, 16)
    neighbors.kneighbors(Q, R, 2, "l1", progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err and "7/7" in err
    neighbors.kneighbors(Q, R, 2, "l1")
    assert capsys.readouterr().err == ""


# --- vote --------------------------------------------------------------------------------------


def test_vote_matches_reference():
    rng = np.random.default_rng(6)
    for k in (1, 2, 4, 7, 10):
        labels = rng.integers(0, 3, size=(500, k))  # few classes: many ties
        np.testing.assert_array_equal(neighbors.vote(labels, 3), ref_vote(labels))


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
    assert neighbors.vote(np.array([row]), 5).tolist() == [expected]
    assert neighbors.vote(np.array([row]), 5).dtype == np.int64


def test_vote_on_no_rows():
    assert neighbors.vote(np.zeros((0, 3), np.int64), 2).shape == (0,)


# --- invalid input -----------------------------------------------------------------------------

_X = np.zeros((6, 4), np.uint8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distance": "cosine"}, "distance must be one of ['l1', 'l2'], got 'cosine'"),
        ({"distance": None}, "distance must be one of ['l1', 'l2'], got None"),
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"k": 7}, "k must be <= the number of reference images (6), got 7"),
        ({"k": 2.5}, "k must be an integer >= 1, got 2.5"),
        ({"k": True}, "k must be an integer >= 1, got True"),
        ({"X_query": np.zeros(4, np.uint8)}, "X_query must be 2-D"),
        ({"X_ref": np.zeros((6, 4, 1), np.uint8)}, "X_ref must be 2-D"),
        ({"X_query": np.zeros((2, 4), np.float32)}, "X_query must have dtype uint8"),
        ({"X_ref": np.zeros((6, 4), np.int64)}, "X_ref must have dtype uint8"),
        ({"X_query": np.zeros((2, 5), np.uint8)}, "X_query has 5 features but the reference"),
        ({"X_query": np.zeros((2, 0), np.uint8), "X_ref": np.zeros((6, 0), np.uint8)}, "feature"),
        ({"memory_budget_bytes": 0}, "memory_budget_bytes must be an integer >= 1, got 0"),
        ({"memory_budget_bytes": 1e9 + 0.5}, "memory_budget_bytes must be an integer >= 1"),
        ({"progress": "yes"}, "progress must be true or false, got 'yes'"),
    ],
)
def test_kneighbors_rejects_bad_input(kwargs, message):
    args = {"X_query": _X[:2], "X_ref": _X, "k": 2, "distance": "l2", **kwargs}
    with pytest.raises(ConfigError) as info:
        neighbors.kneighbors(
            args.pop("X_query"), args.pop("X_ref"), args.pop("k"), args.pop("distance"), **args
        )
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("labels", "n_classes", "message"),
    [
        (np.array([0, 1]), 2, "neighbor_labels must be 2-D (n_query, k) with k >= 1"),
        (np.zeros((2, 0), int), 2, "with k >= 1, got shape (2, 0)"),
        (np.array([[0.0, 1.0]]), 2, "neighbor_labels must hold integer class labels"),
        (np.array([[0, 2]]), 2, "neighbor_labels must hold labels in [0, 1], got values in [0, 2]"),
        (np.array([[0, -1]]), 2, "neighbor_labels must hold labels >= 0, got -1"),
        (np.array([[0]]), 0, "n_classes must be an integer >= 1, got 0"),
        (np.array([[0]]), 2.5, "n_classes must be an integer >= 1, got 2.5"),
        (np.array([[0]]), True, "n_classes must be an integer >= 1, got True"),
    ],
)
def test_vote_rejects_bad_input(labels, n_classes, message):
    with pytest.raises(ConfigError) as info:
        neighbors.vote(labels, n_classes)
    assert message in str(info.value)


def test_private_impl_choice_is_validated():
    with pytest.raises(ConfigError, match="impl must be one of"):
        neighbors._kneighbors(_X, _X, 1, "l1", impl="fast")
    with pytest.raises(ConfigError, match="impl='gemm' is for 'l2'"):
        neighbors._kneighbors(_X, _X, 1, "l1", impl="gemm")
    with pytest.raises(ConfigError, match="impl='avx2' is an 'l2' kernel"):
        neighbors._kneighbors(_X, _X, 1, "l1", impl="avx2")
    for name in _kernels.L2_SIMD_NAMES:
        if name not in _kernels.L2_SIMD_PATHS:
            with pytest.raises(ConfigError, match="needs CPU support this machine lacks"):
                neighbors._kneighbors(_X, _X, 1, "l2", impl=name)


def test_auto_takes_the_fastest_path_and_simd_the_fastest_tile_kernel():
    assert neighbors._choose_impl("auto", "l1", 3072) == ("simd" if _kernels.HAS_SAD else "generic")
    l2 = list(_kernels.L2_SIMD_PATHS)
    assert neighbors._choose_impl("auto", "l2", 3072) == (l2[0] if l2 else "gemm")
    if l2:
        assert neighbors._choose_impl("simd", "l2", 3072) == l2[0]
    assert neighbors.kernel_paths("l2", 2**23)[-2:] != ["gemm", "generic"]  # no GEMM bound
