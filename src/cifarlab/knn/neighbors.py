"""The k nearest neighbours of raw uint8 images, exact, fast and memory-bounded; the vote.

Distances are exact integers computed from the uint8 pixels: ``"l1"`` is sum |q - r| and
``"l2"`` is the SQUARED Euclidean distance sum (q - r)^2, both int64. Neighbours are ordered by
(distance, reference index), so ties go to the smaller reference index, and results are
identical to a plain int64 reference implementation whatever the chunking.

How the distance matrix (the whole cost of k-NN) is computed, see :mod:`cifarlab.knn._kernels`:

* ``"l1"``: a cache-blocked, register-tiled numba kernel around the ``psadbw`` instruction
  (64 absolute byte differences per instruction with AVX-512BW; AVX2/SSE2 widths otherwise;
  plain loops off x86), parallel over query blocks, fused with the top-k selection.
* ``"l2"``: the same kernel shape around integer dot products of the references with the
  queries shifted by 128 to signed values, whose every product and partial sum is an exact
  integer: no bound, no re-ranking. By the instructions the CPU has, fastest first:
  ``"vnni512"`` (AVX-512 VNNI ``vpdpbusd``), ``"vnni256"`` (the same on 256-bit vectors, from
  AVX-VNNI or AVX-512 VL), ``"avx2"`` (``vpmaddwd`` on 16-bit values, every AVX2 CPU). Each does
  more multiply-adds per instruction than the float32 FMA of a BLAS GEMM on the same vectors
  (4x, 4x and 2x, the last at the cost of a separate add).
* Both, on the SIMD paths: exact lower bounds from "coarse images" (one byte per 4 x 4 pixel
  square) skip the pairs that cannot be among the k nearest, before their distance is
  computed (``prune``; on CIFAR-10 the final k-th distance alone rules out 97% of the pairs
  for k = 10 and 93% for k = 100; dropped by itself on data where it does not pay).
* ``"l2"`` on a CPU without AVX2 (or ``impl="gemm"``): one float32 BLAS GEMM on the data
  shifted by 128 (exact small integers), then a rigorous rounding-error bound
  (|fl(q'.r') - q'.r'| <= gamma_d |q'| |r'|, gamma_d = d u / (1 - d u), u = 2^-24, valid for
  any summation order, blocking or FMA use) keeps every reference whose approximate distance
  is within the bound window of the k-th; only those, typically k plus a handful, are
  re-ranked with exact int64 distances (numba, parallel, fused with the threshold; |q'|^2 is
  constant per row and left out of the ranking). A spot check of the bound on the first GEMM
  block refuses a BLAS running in reduced precision. ``d >= 2^23`` features without AVX2:
  plain loops.

Memory: the SIMD paths never store a distance matrix, only per-thread int64 buffers
(<= 2 x 128 x 256) and a shifted copy of the query chunk (int16 on the AVX2 path), plus the
coarse images (1/16 of the images' bytes; the references' on top of the budget); the GEMM
path holds a float32 copy of (a block of) the references, a float32 query chunk and their
float32 product. All are sized to ``memory_budget_bytes``: references are blocked when a full
float32 copy would not fit, and per-block candidates merge exactly in the per-query heaps.
The budget is honoured down to one query row and one reference row (a tile on the SIMD
paths) at a time; the output (2 x n_query x k int64) and O(n_query + n_ref) row norms come
on top.

:func:`kneighbors` and :func:`vote` check their arguments; :func:`_kneighbors` and
:func:`_vote`, which the estimator and the cross-validation call with checked ones, do not.
"""

from __future__ import annotations

import numba
import numpy as np
from tqdm import tqdm

from cifarlab.checks import check_images, check_labels
from cifarlab.errors import ConfigError
from cifarlab.knn import _kernels as _kern
from cifarlab.params import KNN, Param, check_values

__all__ = ["kneighbors", "vote"]

_IMPLS = ("auto", "simd", "generic", "gemm", *_kern.L2_SIMD_NAMES)
# Query rows per kernel call on the SIMD paths: about 2^38 feature-pairs (~1 s), so the
# progress bar moves often while each call still has many blocks for the threads to share.
_WORK_PER_CHUNK = 1 << 38
_U = 2.0**-24  # unit roundoff of float32
_INFLATE = 1.0 + 2.0**-20  # covers the float64 rounding of norms and products in the bound
# Not a parameter but an array size; checked in the same words as the parameters.
_N_CLASSES = Param("int", low=1)


def kneighbors(
    X_query: np.ndarray,
    X_ref: np.ndarray,
    k: int,
    distance: str,
    *,
    memory_budget_bytes: int = 1 << 30,
    progress: bool = False,
    desc: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest reference images of every query image, exactly.

    X_query : ndarray of shape (n_query, n_features), uint8
    X_ref : ndarray of shape (n_ref, n_features), uint8
    k : int, 1 <= k <= n_ref
    distance : "l1" (sum of absolute differences) or "l2" (SQUARED Euclidean distance)
    memory_budget_bytes : working memory to aim for (see the module docstring)
    progress : show a tqdm bar over query rows (rate, time left); desc labels it.

    Returns (indices, distances), both int64 of shape (n_query, k); each row sorted by
    (distance, reference index) ascending. Raises ConfigError on invalid input.
    """
    values = {
        "k": k,
        "distance": distance,
        "memory_budget_bytes": memory_budget_bytes,
        "progress": progress,
    }
    checked = check_values(KNN, values)
    X_ref = check_images("X_ref", X_ref)
    X_query = check_images("X_query", X_query, X_ref.shape[1])
    if checked["k"] > X_ref.shape[0]:
        raise ConfigError(
            f"k must be <= the number of reference images ({X_ref.shape[0]}), got {checked['k']}"
        )
    return _kneighbors(X_query, X_ref, **checked, desc=desc)


def _kneighbors(
    X_query: np.ndarray,
    X_ref: np.ndarray,
    k: int,
    distance: str,
    *,
    memory_budget_bytes: int = 1 << 30,
    progress: bool = False,
    desc: str | None = None,
    impl: str = "auto",
    prune: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`kneighbors` on checked arguments (C-contiguous uint8 arrays, 1 <= k <= n_ref),
    with the kernel choice exposed (tests, benchmark).

    impl : "auto" (fastest available), "simd" (the fastest SIMD tile kernel: psadbw for L1,
    else as below), "generic" (same tiling, plain integer loops), "gemm" (L2 only: float32 GEMM
    + certified filter + exact re-rank), or for L2 one SIMD tile kernel by name: "vnni512",
    "vnni256" or "avx2" (see :func:`kernel_paths`).
    prune : skip the pairs that exact lower bounds rule out (the SIMD tile paths; see the
    module docstring). Results are the same either way.
    """
    impl = _choose_impl(impl, distance, X_ref.shape[1])
    budget = memory_budget_bytes
    n_query = X_query.shape[0]
    heap_d = np.full((n_query, k), _kern.INT64_MAX, np.int64)
    heap_i = np.full((n_query, k), _kern.INT64_MAX, np.int64)
    with tqdm(
        total=n_query,
        desc=desc if desc is not None else f"k-NN {distance}",
        unit="query",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        if n_query:
            if impl == "gemm":
                _run_gemm(X_query, X_ref, heap_d, heap_i, budget, bar)
            else:
                path = _PATHS[impl]
                prune = prune and _kern.HAS_PRUNE and path != _kern.PATH_GENERIC
                _run_tiles(X_query, X_ref, distance, heap_d, heap_i, budget, path, prune, bar)
    order = np.lexsort((heap_i, heap_d), axis=1)
    return np.take_along_axis(heap_i, order, 1), np.take_along_axis(heap_d, order, 1)


def kernel_paths(distance: str, n_features: int = 3072) -> list[str]:
    """The kernel paths this CPU (or the target forced by NUMBA_CPU_NAME/NUMBA_CPU_FEATURES)
    runs for ``distance``, the one ``impl="auto"`` takes first."""
    if distance == "l1":
        paths = ["simd"] if _kern.HAS_SAD else []
    else:
        paths = list(_kern.L2_SIMD_PATHS)
        if n_features * _U < 0.5:
            paths.append("gemm")
    return [*paths, "generic"]


# impl name -> the path argument of the tile kernels.
_PATHS = {
    "generic": _kern.PATH_GENERIC,
    "simd": _kern.PATH_SAD,
    "avx2": _kern.PATH_AVX2,
    "vnni256": _kern.PATH_VNNI256,
    "vnni512": _kern.PATH_VNNI512,
}


def _choose_impl(impl: str, distance: str, d: int) -> str:
    """The kernel path for ``impl`` ("auto": the fastest this CPU runs exactly for d features;
    "simd" for L2: its fastest SIMD tile kernel); ConfigError for a path this CPU or problem
    cannot take."""
    if impl not in _IMPLS:
        raise ConfigError(f"impl must be one of {_IMPLS}, got {impl!r}")
    if impl == "auto":
        return kernel_paths(distance, d)[0]
    if impl in _kern.L2_SIMD_NAMES and distance != "l2":
        raise ConfigError(f"impl={impl!r} is an 'l2' kernel, got distance {distance!r}")
    if impl == "simd" and distance == "l2":
        if not _kern.L2_SIMD_PATHS:
            raise ConfigError("impl='simd' for 'l2' needs AVX2, which this machine lacks")
        return next(iter(_kern.L2_SIMD_PATHS))
    if impl not in kernel_paths(distance, d) and impl != "gemm":
        raise ConfigError(f"impl={impl!r} for {distance!r} needs CPU support this machine lacks")
    if impl == "gemm" and (distance != "l2" or d * _U >= 0.5):
        raise ConfigError(f"impl='gemm' is for 'l2' with < 2**23 features, got {distance!r}, {d}")
    return impl


def _n_qblocks(m: int, tq: int, max_rows: int) -> int:
    """Query blocks for one kernel call: at most max_rows rows each, at least one per thread
    when there are enough rows, and never fewer rows than the tile height tq (if m >= tq)."""
    n = max(-(-m // max_rows), min(numba.get_num_threads(), m // tq))
    return max(1, min(n, m // tq))


def _run_tiles(Xq, Xr, distance, heap_d, heap_i, budget, path, prune, bar) -> None:
    n_query, d = Xq.shape
    n_ref = Xr.shape[0]
    l2 = distance == "l2"
    tq = _kern.tile_shape(path)[0]
    n_groups = -(-d // _kern.GROUP) if prune else 0
    a_bytes = 2 if path == _kern.PATH_AVX2 else 1
    # Bytes per query row of the chunk's copies: the shifted queries (L2: int16 on the AVX2
    # path, int8 otherwise), row sums, and the coarse images (and their shifted copy) to prune.
    copy_bytes = (a_bytes * d if l2 else 0) + 16 + (1 + a_bytes) * n_groups
    # Half the budget for the per-thread int64 buffers (block rows x RB; two when pruning),
    # half for the query chunk's copies.
    threads = numba.get_num_threads()
    per_row = threads * _kern.RB * 8 * (2 if prune else 1)
    max_rows = min(_kern.QB, max(tq, budget // 2 // per_row))
    rows = min(n_query, max(1, _WORK_PER_CHUNK // (n_ref * d)), max(1, budget // 2 // copy_bytes))
    none = np.zeros(0, np.int64)
    PR = np.zeros((0, 0), np.uint8)
    p_const = none
    if prune:
        groups = _kern.pool_groups(d)
        PR = np.empty((n_ref, n_groups), np.uint8)
        _kern.pool(Xr, groups, PR)
        if l2:
            s, s2 = _kern.row_sums(PR)
            p_const = s2 - 256 * s
    if l2:
        r_sum, r_sq = _kern.row_sums(Xr)
        r_const = r_sq - 256 * r_sum
        del r_sum, r_sq
    for a in range(0, n_query, rows):
        b = min(a + rows, n_query)
        Qc = Xq[a:b]
        n_qblocks = _n_qblocks(b - a, tq, max_rows)
        PQ, p_sq = PR, none
        if prune:
            PQ = np.empty((b - a, n_groups), np.uint8)
            _kern.pool(Qc, groups, PQ)
        if not l2:
            lb = (PQ, PQ, PR, none, none)
            _kern.l1_topk(Qc, Xr, 0, heap_d[a:b], heap_i[a:b], n_qblocks, path, lb)
            bar.update(b - a)
            continue
        A = _shifted(Qc, path)
        _, q_sq = _kern.row_sums(Qc)
        if prune:
            _, p_sq = _kern.row_sums(PQ)
        lb = (_shifted(PQ, path), PQ, PR, p_sq, p_const)
        _kern.l2_topk(A, Xr, q_sq, r_const, 0, heap_d[a:b], heap_i[a:b], n_qblocks, path, lb)
        bar.update(b - a)


def _shifted(X: np.ndarray, path: int) -> np.ndarray:
    """uint8 X minus 128, as the L2 kernels of ``path`` read it: int16 for PATH_AVX2, else
    int8 (q - 128 as a signed byte is q with its top bit flipped: exact and cheap)."""
    if path == _kern.PATH_AVX2:
        A = X.astype(np.int16)
        A -= 128
        return A
    return (X ^ np.uint8(0x80)).view(np.int8)


def _run_gemm(Xq, Xr, heap_d, heap_i, budget, bar) -> None:
    n_query, d = Xq.shape
    n_ref = Xr.shape[0]
    gamma = d * _U / (1.0 - d * _U)
    shift_sq = 128 * 128 * d
    # References take up to 3/4 of the budget as one float32 copy (converted once); beyond
    # that they are processed in blocks of half the budget, reconverted per query chunk.
    nb = n_ref if 4 * n_ref * d <= budget * 3 // 4 else max(1, budget // 2 // (4 * d))
    rows = max(1, (budget - 4 * nb * d) // (4 * (d + nb) + 64))
    rows = min(rows, n_query)
    r_sum, r_sq = _kern.row_sums(Xr)
    r_sq_s = r_sq - 256 * r_sum + shift_sq  # |r - 128|^2, exact
    r_norm = np.sqrt(r_sq_s.astype(np.float64)) * _INFLATE
    Rf = np.empty((nb, d), np.float32)
    Qf = np.empty((rows, d), np.float32)
    G_buf = np.empty(rows * nb, np.float32)
    cached = -1  # start of the reference block held in Rf
    for a in range(0, n_query, rows):
        b = min(a + rows, n_query)
        Qc = Xq[a:b]
        q_sum, q_sq = _kern.row_sums(Qc)
        q_sq_s = q_sq - 256 * q_sum + shift_sq
        q_bound = (2.0 * gamma * _INFLATE) * np.sqrt(q_sq_s.astype(np.float64))
        Qfc = Qf[: b - a]
        np.subtract(Qc, np.float32(128), out=Qfc)
        for r0 in range(0, n_ref, nb):
            r1 = min(r0 + nb, n_ref)
            Rfc = Rf[: r1 - r0]
            if cached != r0:
                np.subtract(Xr[r0:r1], np.float32(128), out=Rfc)
                cached = r0
            G = G_buf[: (b - a) * (r1 - r0)].reshape(b - a, r1 - r0)
            np.matmul(Qfc, Rfc.T, out=G)
            if a == 0 and r0 == 0:  # a reduced-precision BLAS shows on any block: check one
                _spot_check_gemm(G, Qc, Xr[r0:r1], gamma)
            _kern.l2_gemm_select(
                G,
                Qc,
                Xr[r0:r1],
                q_sq_s,
                q_bound,
                r_sq_s[r0:r1],
                r_norm[r0:r1],
                r0,
                heap_d[a:b],
                heap_i[a:b],
            )
        bar.update(b - a)


def _spot_check_gemm(G: np.ndarray, Q: np.ndarray, R: np.ndarray, gamma: float) -> None:
    """Verify the rounding bound on a few entries of the BLAS product.

    G : float32 (m, n), the product of Q - 128 and (R - 128)^T; Q : uint8 (m, d); R : uint8
    (n, d). The filter is rigorous for any IEEE float32 GEMM; this guards against a BLAS
    configured to compute in lower precision (e.g. MKL_BLAS_COMPUTE_MODE=FLOAT_TO_BF16), which
    would void it silently.
    """
    m, n = G.shape
    i = np.linspace(0, m - 1, min(m, 16)).astype(np.intp)
    j = np.linspace(0, n - 1, min(n, 16)).astype(np.intp)
    q = Q[i].astype(np.int64) - 128
    r = R[j].astype(np.int64) - 128
    exact = q @ r.T
    bound = gamma * np.sqrt((q * q).sum(1))[:, None] * np.sqrt((r * r).sum(1))[None, :]
    if np.any(np.abs(G[np.ix_(i, j)].astype(np.float64) - exact) > bound * _INFLATE + 1.0):
        raise RuntimeError(
            "the BLAS float32 GEMM is less accurate than IEEE float32 arithmetic allows; "
            "exact L2 neighbours need a standard float32 GEMM"
        )


# --- classification ----------------------------------------------------------------------------


def vote(neighbor_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority vote over each row of neighbour labels.

    neighbor_labels : ndarray of shape (n_query, k), integers in [0, n_classes), columns
        ordered nearest first
    n_classes : int >= 1

    Returns int64 of shape (n_query,). A tie between classes goes to the tied class whose
    nearest member comes first in the row (the class of the closest neighbour among them).
    """
    n_classes = _N_CLASSES.check("n_classes", n_classes)
    labels = np.asarray(neighbor_labels)
    if labels.ndim != 2 or labels.shape[1] == 0:
        raise ConfigError(
            f"neighbor_labels must be 2-D (n_query, k) with k >= 1, got shape {labels.shape}"
        )
    check_labels("neighbor_labels", labels.reshape(-1), n_classes=n_classes, allow_empty=True)
    return _vote(labels, n_classes)


def _vote(neighbor_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """:func:`vote` on checked arguments."""
    return _kern.vote_rows(np.ascontiguousarray(neighbor_labels, dtype=np.int64), n_classes)
