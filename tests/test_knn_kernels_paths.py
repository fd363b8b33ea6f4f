"""Every k-NN kernel path this machine can execute, against the exact int64 reference.

The paths are fixed when cifarlab.knn._kernels is imported, from the features numba compiles
for, so the older CPUs' paths run in child processes with numba's target forced to them
(NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, from ``_kernels.target_env``; tests/forced_target.py):
a newer CPU executes the AVX2 and SSE2 code of an older one. This process checks the host's
own paths, the lower bounds that prune pairs, and overflow at sizes no image has."""

from __future__ import annotations

import numpy as np
import pytest
from forced_target import run_children
from knn_reference import images, ref_kneighbors

from cifarlab.knn import _kernels, neighbors


def smooth_images(rng: np.random.Generator, n: int, shape=(3, 32, 32), noise: int = 12):
    """uint8 images (n, prod(shape)) in CIFAR-10's row layout: a random 4 x 4 image per
    channel, upsampled, plus a little noise; like natural images, they vary little within a
    small square, which is what makes the lower bounds prune."""
    c, h, w = shape
    coarse = rng.integers(30, 226, size=(n, c, 4, 4))
    up = np.repeat(np.repeat(coarse, -(-h // 4), axis=2), -(-w // 4), axis=3)[:, :, :h, :w]
    x = up + rng.integers(-noise, noise + 1, size=up.shape)
    return np.clip(x, 0, 255).astype(np.uint8).reshape(n, -1)


def problems():
    """(name, Q, R, k): random, natural-like (several reference blocks, so that pairs are
    pruned and blocks are computed both whole and pair by pair), ties and extremes."""
    rng = np.random.default_rng(0)
    Q, R = smooth_images(rng, 14, noise=40), smooth_images(rng, 700, noise=40)
    R[500:520] = R[3]  # duplicates: ties broken by index, whichever way blocks are computed
    d = 3072
    extremes = np.array(
        [np.zeros(d), np.full(d, 255), np.tile([0, 255], d // 2), np.tile([255, 0], d // 2)],
        dtype=np.uint8,
    )
    return [
        ("random", images(rng, 13, 200), images(rng, 90, 200), 5),
        ("odd sizes", images(rng, 7, 3075), images(rng, 41, 3075), 3),
        ("natural", Q, R, 10),
        ("natural k=n", Q[:3], R[:40], 40),
        ("extremes", extremes, np.vstack([extremes, extremes[::-1]]), 8),
    ]


def check_paths() -> dict:
    """Run every kernel path of this process's target on :func:`problems`, with and without
    pruning; returns what the target is and which (distance, path, prune) match."""
    result = {
        "cpu": _kernels.TARGET_CPU,
        "sad_width": _kernels.SAD_WIDTH,
        "l2_simd": list(_kernels.L2_SIMD_PATHS),
        "mismatches": [],
        "checked": 0,
    }
    for name, Q, R, k in problems():
        for distance in ("l1", "l2"):
            ref_idx, ref_dist = ref_kneighbors(Q, R, k, distance)
            for impl in neighbors.kernel_paths(distance, Q.shape[1]):
                for prune in (True, False):
                    idx, dist = neighbors._kneighbors(Q, R, k, distance, impl=impl, prune=prune)
                    result["checked"] += 1
                    if not (np.array_equal(idx, ref_idx) and np.array_equal(dist, ref_dist)):
                        result["mismatches"].append(f"{name} {distance} {impl} prune={prune}")
    return result


# --------------------------------------------------------------------------- older CPUs

# isa -> (the L2 SIMD paths and psadbw width its forced target must take).
TARGETS = {"avx2": (["avx2"], 32), "avxvnni": (["vnni256", "avx2"], 32), "sse2": ([], 16)}


@pytest.fixture(scope="module")
def forced_runs():
    """check_paths() in one child process per older target this CPU executes, all at once."""
    return run_children("test_knn_kernels_paths", "check_paths", TARGETS)


@pytest.mark.parametrize("isa", list(TARGETS))
def test_forced_older_cpu_runs_its_own_paths_exactly(forced_runs, isa):
    if isa not in forced_runs:
        pytest.skip(f"this machine cannot execute {isa} code (or is not x86)")
    run = forced_runs[isa]
    l2_simd, sad_width = TARGETS[isa]
    assert run["l2_simd"] == l2_simd and run["sad_width"] == sad_width
    # l1: simd, generic; l2: the SIMD paths, gemm, generic; each with and without pruning.
    n_paths = 2 + len(l2_simd) + 2
    assert run["checked"] == 2 * n_paths * len(problems())
    assert run["mismatches"] == []


# --------------------------------------------------------------------------- this CPU


def test_this_cpu_runs_its_paths_exactly():
    run = check_paths()
    assert run["checked"] > 0
    assert run["mismatches"] == []


@pytest.mark.skipif(not _kernels.L2_SIMD_PATHS, reason="no L2 SIMD path on this CPU")
@pytest.mark.parametrize("impl", list(_kernels.L2_SIMD_PATHS))
def test_l2_sums_stay_exact_beyond_int32(impl):
    # 600,000 features of 0 against 255: every product is -255 * 128 and a row's dot product
    # is -1.96e10, far beyond int32; tile calls of at most KB (<= 4,096) features keep each int32
    # lane exact, and the calls are summed in int64.
    d = 600_000
    Q = np.zeros((8, d), np.uint8)
    Q[1::2] = 255
    R = np.full((6, d), 255, np.uint8)
    R[::2] = 7
    idx, dist = neighbors._kneighbors(Q, R, 6, "l2", impl=impl, prune=False)
    expected = ref_kneighbors(Q, R, 6, "l2")
    np.testing.assert_array_equal(dist, expected[1])
    np.testing.assert_array_equal(idx, expected[0])


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_prune_limit_never_rules_out_a_closer_pair(distance):
    # For many pairs and thresholds around their true distance: whenever the coarse
    # statistic exceeds the limit of a threshold, the distance exceeds that threshold.
    rng = np.random.default_rng(4)
    l2 = distance == "l2"
    X = np.vstack([smooth_images(rng, 60, noise=n) for n in (0, 5, 60)] + [images(rng, 40, 3072)])
    groups = _kernels.pool_groups(3072)
    U = np.empty((len(X), len(groups)), np.uint8)
    _kernels.pool(X, groups, U)
    x, u = X.astype(np.int64), U.astype(np.int64)
    i, j = np.triu_indices(len(X), 1)
    diff, du = x[i] - x[j], u[i] - u[j]
    dist = (diff * diff).sum(1) if l2 else np.abs(diff).sum(1)
    stat = (du * du).sum(1) if l2 else np.abs(du).sum(1)
    pruned = 0
    tops = np.concatenate([dist, dist - 1, dist // 2, dist * 2])
    for top in rng.choice(tops, 400, replace=False):
        limit = _kernels._prune_limit(top, l2, len(groups))
        proven = stat > limit
        assert np.all(dist[proven] > top)
        pruned += proven.sum()
    assert pruned > 0  # the bound does prove something
