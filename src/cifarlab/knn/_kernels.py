"""Numba kernels behind :mod:`cifarlab.knn.neighbors`: exact integer distances, top-k selection.

Everything here works on the raw ``uint8`` pixels and returns exact ``int64`` results;
``neighbors`` chooses the path, chunks the work and validates the input.

Three ways to the k nearest references of a block of queries:

* **Tile kernels** (:func:`l1_topk`, :func:`l2_topk`): distances computed by register-tiled
  SIMD intrinsics emitted straight into the LLVM IR, cache-blocked over queries x references
  and fused with the top-k selection (no distance matrix is ever stored).

  - L1 uses ``psadbw`` (sum of absolute byte differences, 8 bytes -> one 64-bit lane):
    64 |a - b| per instruction with AVX-512BW, 32 with AVX2, 16 with SSE2. LLVM does not
    turn ``acc += abs(int(a[i]) - int(b[i]))`` into ``psadbw`` inside a loop (the SAD
    pattern is only matched in a final horizontal reduction; what it emits is byte
    min/max/sub + zero-extension to 32-bit lanes, about 5x slower), so the intrinsic is
    called explicitly.
  - L2 uses AVX-512 VNNI ``vpdpbusd`` (u8 x s8 products, four summed into an int32 lane).
    The reference row is the unsigned operand and the query is shifted to signed bytes,
    ``q' = q - 128`` in [-128, 127]; then ``r . q' = r . q - 128 sum(r)`` and
    ``|q - r|^2 = |q|^2 + (|r|^2 - 256 sum(r)) - 2 r . q'``, all integers. A lane adds
    ``n_features / 16`` groups of four products of magnitude <= 255 * 128, so it cannot
    overflow int32 below ~1,050,000 features; lanes are summed in int64. Exact by
    construction: no rounding anywhere.

* **GEMM + certified filter** (:func:`l2_gemm_select`, the L2 path where VNNI is missing):
  one float32 BLAS GEMM on the data shifted by 128, a rigorous bound on its rounding error
  to keep every reference that could be among the k nearest, and exact int64 re-ranking of
  those candidates only. See the function's docstring for the bound.

* **Generic loops** (``use_simd=False``): plain integer loops, same results; used where no
  SIMD instruction is available (other CPUs, ``NUMBA_DISABLE_JIT``) and by the tests.

Top-k state is a max-heap per query row on the key (distance, reference index), so the
selection is exact and ties go to the smaller reference index whatever order blocks arrive
in; ``neighbors`` sorts it at the end.

The kernels share this one file, longer than the others, on purpose: numba's on-disk cache
(``cache=True``) is invalidated by the timestamp of the function's own file only, so a kernel
calling a changed function of another file would go on loading its stale machine code.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import config, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

INT64_MAX = np.iinfo(np.int64).max

# --- CPU capabilities --------------------------------------------------------------------------


def _target_features() -> frozenset[str]:
    """The features LLVM compiles numba code for (honours NUMBA_CPU_NAME/NUMBA_CPU_FEATURES)."""
    if config.DISABLE_JIT or platform.machine().lower() not in ("x86_64", "amd64"):
        return frozenset()
    try:
        from numba.core.registry import cpu_target

        feats = cpu_target.target_context.codegen()._tm_features
    except Exception:  # a numba without this private attribute: be conservative
        return frozenset()
    return frozenset(f[1:] for f in feats.split(",") if f.startswith("+"))


_FEATURES = _target_features()
if "avx512bw" in _FEATURES:
    SAD_WIDTH = 64
elif "avx2" in _FEATURES:
    SAD_WIDTH = 32
elif "sse2" in _FEATURES:
    SAD_WIDTH = 16
else:
    SAD_WIDTH = 0
HAS_SAD = SAD_WIDTH > 0
HAS_VNNI = {"avx512f", "avx512bw", "avx512vnni"} <= _FEATURES
# int32 lanes of vpdpbusd: (n_features / 16) * 4 * 255 * 128 < 2**31 (see the module docstring).
VNNI_MAX_FEATURES = 1_000_000

# Register tile (queries x references) and cache blocks. A query tile stays in L1 while a
# block of references (RB rows, ~0.75 MiB at 3072 features) streams from L2; each thread owns
# a block of up to QB queries, so each reference row is read from memory once per QB queries.
L1_TQ, L1_TR = 4, 2
L2_TQ, L2_TR = 4, 4
QB, RB = 128, 256

_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _make_tile(kind: str, tq: int, tr: int, enabled: bool):
    """An intrinsic ``tile(A, ia, B, ib, nchunks) -> UniTuple(int64, tq * tr)``.

    Entry ``a * tr + b`` is, over the first ``nchunks * width`` features of rows ``ia + a`` of A
    and ``ib + b`` of B, the sum of |A - B| (``kind="sad"``) or of B * A with B unsigned and A
    signed bytes (``kind="dot"``). Rows must be C-contiguous. With ``enabled=False`` it returns
    zeros (a stub that compiles on any CPU; callers never reach it).
    """
    if kind == "sad":
        width = SAD_WIDTH or 16
        lanes = width // 8
        vec = ir.VectorType(_I8, width)
        acc_t = ir.VectorType(_I64, lanes)
        name = {
            64: "llvm.x86.avx512.psad.bw.512",
            32: "llvm.x86.avx2.psad.bw",
            16: "llvm.x86.sse2.psad.bw",
        }[width]
        fnty = ir.FunctionType(acc_t, [vec, vec])
    else:
        width = 64
        lanes = 16
        vec = ir.VectorType(_I32, 16)
        acc_t = vec
        name = "llvm.x86.avx512.vpdpbusd.512"
        fnty = ir.FunctionType(acc_t, [vec, vec, vec])

    @intrinsic
    def tile(typingctx, a_arr, ia, b_arr, ib, nchunks):
        sig = types.UniTuple(types.int64, tq * tr)(a_arr, ia, b_arr, ib, nchunks)

        def codegen(context, builder, signature, args):
            if not enabled:
                zero = ir.Constant(_I64, 0)
                return context.make_tuple(builder, signature.return_type, [zero] * (tq * tr))
            aty, _, bty, _, _ = signature.args
            arr_a = context.make_array(aty)(context, builder, args[0])
            arr_b = context.make_array(bty)(context, builder, args[2])
            stride_a = cgutils.unpack_tuple(builder, arr_a.strides)[0]
            stride_b = cgutils.unpack_tuple(builder, arr_b.strides)[0]
            base_a = builder.ptrtoint(arr_a.data, _I64)
            base_b = builder.ptrtoint(arr_b.data, _I64)
            rows_a = [
                builder.add(
                    base_a, builder.mul(stride_a, builder.add(args[1], ir.Constant(_I64, t)))
                )
                for t in range(tq)
            ]
            rows_b = [
                builder.add(
                    base_b, builder.mul(stride_b, builder.add(args[3], ir.Constant(_I64, t)))
                )
                for t in range(tr)
            ]
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            accs = [
                cgutils.alloca_once_value(builder, ir.Constant(acc_t, None)) for _ in range(tq * tr)
            ]
            with cgutils.for_range(builder, args[4]) as loop:
                off = builder.mul(loop.index, ir.Constant(_I64, width))
                va = [
                    builder.load(builder.inttoptr(builder.add(p, off), vec.as_pointer()), align=1)
                    for p in rows_a
                ]
                vb = [
                    builder.load(builder.inttoptr(builder.add(p, off), vec.as_pointer()), align=1)
                    for p in rows_b
                ]
                for a in range(tq):
                    for b in range(tr):
                        ptr = accs[a * tr + b]
                        if kind == "sad":
                            new = builder.add(builder.load(ptr), builder.call(fn, [va[a], vb[b]]))
                        else:  # vpdpbusd(acc, unsigned bytes, signed bytes)
                            new = builder.call(fn, [builder.load(ptr), vb[b], va[a]])
                        builder.store(new, ptr)
            outs = []
            for ptr in accs:
                v = builder.load(ptr)
                total = None
                for lane in range(lanes):
                    x = builder.extract_element(v, ir.Constant(_I32, lane))
                    if kind == "dot":
                        x = builder.sext(x, _I64)
                    total = x if total is None else builder.add(total, x)
                outs.append(total)
            return context.make_tuple(builder, signature.return_type, outs)

        return sig, codegen

    return tile, width


_sad_tile, _SAD_W = _make_tile("sad", L1_TQ, L1_TR, HAS_SAD)
_dot_tile, _DOT_W = _make_tile("dot", L2_TQ, L2_TR, HAS_VNNI)


# --- scalar pieces -----------------------------------------------------------------------------


@njit(cache=True)
def _sad_pair(A, i, B, j, f0, f1):
    s = 0
    for f in range(f0, f1):
        s += abs(np.int64(A[i, f]) - np.int64(B[j, f]))
    return s


@njit(cache=True)
def _dot_pair(A, i, B, j, f0, f1):
    s = 0
    for f in range(f0, f1):
        s += np.int64(A[i, f]) * np.int64(B[j, f])
    return s


@njit(cache=True)
def _sqdist_pair(A, i, B, j):
    s = 0
    for f in range(A.shape[1]):
        t = np.int64(A[i, f]) - np.int64(B[j, f])
        s += t * t
    return s


@njit(cache=True)
def _heap_offer(hd, hi, row, dist, idx):
    """Offer (dist, idx) to the max-heap ``hd[row], hi[row]`` holding the k best so far.

    The root is the worst kept entry; slots not yet filled hold (INT64_MAX, INT64_MAX).
    Keys compare lexicographically, so equal distances keep the smaller index.
    """
    top = hd[row, 0]
    if dist > top or (dist == top and idx >= hi[row, 0]):
        return
    k = hd.shape[1]
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= k:
            break
        c2 = c + 1
        if c2 < k and (
            hd[row, c2] > hd[row, c] or (hd[row, c2] == hd[row, c] and hi[row, c2] > hi[row, c])
        ):
            c = c2
        if hd[row, c] > dist or (hd[row, c] == dist and hi[row, c] > idx):
            hd[row, pos] = hd[row, c]
            hi[row, pos] = hi[row, c]
            pos = c
        else:
            break
    hd[row, pos] = dist
    hi[row, pos] = idx


# --- tile kernels ------------------------------------------------------------------------------


@njit(cache=True)
def _l1_block(A, q0, q1, B, r0, r1, buf, use_simd):
    """buf[i - q0, j - r0] = sum |A[i] - B[j]| for i in [q0, q1), j in [r0, r1)."""
    d = A.shape[1]
    f_tail = 0
    if use_simd and q1 - q0 >= L1_TQ and r1 - r0 >= L1_TR:
        nch = d // _SAD_W
        f_tail = nch * _SAD_W
        qi = q0
        while True:
            # The last tile overlaps the previous one instead of running short: it rewrites
            # a few identical values, and no remainder code is needed.
            qs = min(qi, q1 - L1_TQ)
            rj = r0
            while True:
                rs = min(rj, r1 - L1_TR)
                res = _sad_tile(A, qs, B, rs, nch)
                for a in range(L1_TQ):
                    for b in range(L1_TR):
                        buf[qs - q0 + a, rs - r0 + b] = res[a * L1_TR + b]
                if rs == r1 - L1_TR:
                    break
                rj += L1_TR
            if qs == q1 - L1_TQ:
                break
            qi += L1_TQ
    if f_tail < d:
        for i in range(q0, q1):
            for j in range(r0, r1):
                s = _sad_pair(A, i, B, j, f_tail, d)
                if f_tail == 0:
                    buf[i - q0, j - r0] = s
                else:
                    buf[i - q0, j - r0] += s


@njit(cache=True)
def _l2_block(A, q0, q1, B, r0, r1, buf, use_simd):
    """buf[i - q0, j - r0] = B[j] . A[i] (B uint8, A int8) for i in [q0, q1), j in [r0, r1)."""
    d = A.shape[1]
    f_tail = 0
    if use_simd and q1 - q0 >= L2_TQ and r1 - r0 >= L2_TR:
        nch = d // _DOT_W
        f_tail = nch * _DOT_W
        qi = q0
        while True:
            qs = min(qi, q1 - L2_TQ)
            rj = r0
            while True:
                rs = min(rj, r1 - L2_TR)
                res = _dot_tile(A, qs, B, rs, nch)
                for a in range(L2_TQ):
                    for b in range(L2_TR):
                        buf[qs - q0 + a, rs - r0 + b] = res[a * L2_TR + b]
                if rs == r1 - L2_TR:
                    break
                rj += L2_TR
            if qs == q1 - L2_TQ:
                break
            qi += L2_TQ
    if f_tail < d:
        for i in range(q0, q1):
            for j in range(r0, r1):
                s = _dot_pair(A, i, B, j, f_tail, d)
                if f_tail == 0:
                    buf[i - q0, j - r0] = s
                else:
                    buf[i - q0, j - r0] += s


@njit(parallel=True, cache=True)
def l1_topk(Q, R, ref_offset, heap_d, heap_i, n_qblocks, use_simd):
    """Offer every (query, reference) L1 distance to the per-query heaps.

    Q : uint8 (m, d) C-contiguous; R : uint8 (n, d) C-contiguous; reference j is reported as
    ``j + ref_offset``. heap_d, heap_i : int64 (m, k), updated in place.
    n_qblocks : query blocks run in parallel; each is at least L1_TQ rows when m >= L1_TQ.
    """
    m = Q.shape[0]
    n = R.shape[0]
    n_rblocks = (n + RB - 1) // RB
    rb_max = (n + n_rblocks - 1) // n_rblocks
    for b in prange(n_qblocks):
        q0 = b * m // n_qblocks
        q1 = (b + 1) * m // n_qblocks
        buf = np.empty((q1 - q0, rb_max), np.int64)
        for rb in range(n_rblocks):
            r0 = rb * n // n_rblocks
            r1 = (rb + 1) * n // n_rblocks
            _l1_block(Q, q0, q1, R, r0, r1, buf, use_simd)
            for i in range(q0, q1):
                # The worst kept key, in registers: nearly every distance fails this test,
                # so the heap itself (an out-of-line call) is rarely touched.
                top_d = heap_d[i, 0]
                top_i = heap_i[i, 0]
                for j in range(r0, r1):
                    dist = buf[i - q0, j - r0]
                    if dist < top_d or (dist == top_d and j + ref_offset < top_i):
                        _heap_offer(heap_d, heap_i, i, dist, j + ref_offset)
                        top_d = heap_d[i, 0]
                        top_i = heap_i[i, 0]


@njit(parallel=True, cache=True)
def l2_topk(Q8, R, q_sq, r_const, ref_offset, heap_d, heap_i, n_qblocks, use_simd):
    """Offer every (query, reference) squared L2 distance to the per-query heaps.

    Q8 : int8 (m, d), the queries minus 128; R : uint8 (n, d); q_sq : int64 (m,) |q|^2;
    r_const : int64 (n,) |r|^2 - 256 sum(r). Then |q - r|^2 = q_sq + r_const - 2 R[j] . Q8[i].
    Other arguments as :func:`l1_topk`.
    """
    m = Q8.shape[0]
    n = R.shape[0]
    n_rblocks = (n + RB - 1) // RB
    rb_max = (n + n_rblocks - 1) // n_rblocks
    for b in prange(n_qblocks):
        q0 = b * m // n_qblocks
        q1 = (b + 1) * m // n_qblocks
        buf = np.empty((q1 - q0, rb_max), np.int64)
        for rb in range(n_rblocks):
            r0 = rb * n // n_rblocks
            r1 = (rb + 1) * n // n_rblocks
            _l2_block(Q8, q0, q1, R, r0, r1, buf, use_simd)
            for i in range(q0, q1):
                qs = q_sq[i]
                top_d = heap_d[i, 0]
                top_i = heap_i[i, 0]
                for j in range(r0, r1):
                    dist = qs + r_const[j] - 2 * buf[i - q0, j - r0]
                    if dist < top_d or (dist == top_d and j + ref_offset < top_i):
                        _heap_offer(heap_d, heap_i, i, dist, j + ref_offset)
                        top_d = heap_d[i, 0]
                        top_i = heap_i[i, 0]


# --- GEMM path ---------------------------------------------------------------------------------


@njit(cache=True)
def _fheap_offer(h, x):
    """Max-heap of floats: keep the len(h) smallest values offered; h[0] is the largest."""
    if x >= h[0]:
        return
    k = h.shape[0]
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= k:
            break
        if c + 1 < k and h[c + 1] > h[c]:
            c += 1
        if h[c] > x:
            h[pos] = h[c]
            pos = c
        else:
            break
    h[pos] = x


@njit(parallel=True, cache=True)
def l2_gemm_select(G, Q, R, q_sq_s, q_bound, r_sq_s, r_norm, ref_offset, heap_d, heap_i):
    """Exact top-k update from an approximate float32 Gram block.

    G : float32 (m, n), the BLAS product fl((Q - 128) (R - 128)^T); Q : uint8 (m, d);
    R : uint8 (n, d); q_sq_s, r_sq_s : int64, exact |q - 128|^2 and |r - 128|^2;
    q_bound : float64 (m,), 2 * gamma_d * |q - 128| (inflated, see below); r_norm : float64 (n,),
    |r - 128| (inflated). heap_d, heap_i : int64 (m, k), the exact running top-k, updated.

    With q' = q - 128, r' = r - 128 (exact small integers in float32), the ranking key
    a(r) = |r'|^2 - 2 q'.r' = |q - r|^2 - |q'|^2 differs from its computed value
    |r'|^2 - 2 G by at most 2 |G - q'.r'| <= 2 gamma_d sum_i |q'_i r'_i| <= 2 gamma_d |q'| |r'|,
    where gamma_d = d u / (1 - d u), u = 2^-24: the standard bound for an inner product of
    length d in float32, valid for any summation order, blocking or FMA use. (The products are
    exact and all values are integers, so there is no underflow; the float64 arithmetic here
    is exact for the key and the bound's own rounding is covered by the caller's inflation
    plus 1.) Per row, T = the k-th smallest upper bound key + e in this block (and, once k
    exact neighbours are known, their worst exact key); a reference whose lower bound key - e
    exceeds T has at least k references strictly nearer, so it cannot be in the top k. The
    others, typically k plus a handful, get an exact int64 distance and go to the heap.
    """
    m, n = G.shape
    k = heap_d.shape[1]
    for i in prange(m):
        c = q_bound[i]
        t = np.inf
        if n >= k:
            h = np.full(k, np.inf)
            for j in range(n):
                upper = r_sq_s[j] - 2.0 * np.float64(G[i, j]) + c * r_norm[j] + 1.0
                if upper < t:  # t mirrors h[0]: the heap is touched only on improvement
                    _fheap_offer(h, upper)
                    t = h[0]
        qs = q_sq_s[i]
        if heap_d[i, 0] != INT64_MAX:
            t = min(t, np.float64(heap_d[i, 0] - qs))
        for j in range(n):
            key = r_sq_s[j] - 2.0 * np.float64(G[i, j])
            if key - c * r_norm[j] - 1.0 <= t:
                _heap_offer(heap_d, heap_i, i, _sqdist_pair(Q, i, R, j), j + ref_offset)
                if heap_d[i, 0] != INT64_MAX:
                    t = min(t, np.float64(heap_d[i, 0] - qs))


# --- helpers -----------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def row_sums(X):
    """X : uint8 (n, d). Returns (sum, sum of squares), each int64 (n,)."""
    n, d = X.shape
    s = np.empty(n, np.int64)
    s2 = np.empty(n, np.int64)
    for i in prange(n):
        a = 0
        a2 = 0
        for f in range(d):
            v = np.int64(X[i, f])
            a += v
            a2 += v * v
        s[i] = a
        s2[i] = a2
    return s, s2


@njit(cache=True)
def vote_rows(labels, n_classes):
    """labels : int64 (n, k), values in [0, n_classes). Returns int64 (n,).

    Majority label per row; among tied classes the one met first scanning the row from the
    nearest neighbour (only a strictly larger count replaces the current winner).
    """
    n, k = labels.shape
    out = np.empty(n, np.int64)
    counts = np.zeros(n_classes, np.int64)
    for i in range(n):
        for j in range(k):
            counts[labels[i, j]] += 1
        best = labels[i, 0]
        best_count = 0
        for j in range(k):
            c = counts[labels[i, j]]
            if c > best_count:
                best_count = c
                best = labels[i, j]
        for j in range(k):
            counts[labels[i, j]] = 0
        out[i] = best
    return out
