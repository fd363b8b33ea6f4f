"""Numba kernels behind :mod:`cifarlab.knn.neighbors`: exact integer distances, top-k selection.

Everything here works on the raw ``uint8`` pixels and returns exact ``int64`` results;
``neighbors`` chooses the path, chunks the work and validates the input.

Ways to the k nearest references of a block of queries:

* **Tile kernels** (:func:`l1_topk`, :func:`l2_topk`): distances computed by register-tiled
  SIMD intrinsics emitted straight into the LLVM IR, cache-blocked over queries x references
  (and, for L2, over features) and fused with the top-k selection (no distance matrix is ever
  stored). Each tile sums whole vectors of lanes and reduces them once per call with a
  shuffle tree (``log2(lanes)`` levels for all the tile's accumulators together).

  - L1 (``PATH_SAD``) uses ``psadbw`` (sum of absolute byte differences, 8 bytes -> one 64-bit
    lane): 64 |a - b| per instruction with AVX-512BW, 32 with AVX2, 16 with SSE2. LLVM does not
    turn ``acc += abs(int(a[i]) - int(b[i]))`` into ``psadbw`` inside a loop (the SAD pattern is
    only matched in a final horizontal reduction; what it emits is byte min/max/sub +
    zero-extension to 32-bit lanes, about 5x slower), so the intrinsic is called explicitly.
  - L2 computes the dot products ``r . q'`` of the reference row ``r`` (unsigned bytes) with
    the query shifted to signed values, ``q' = q - 128`` in [-128, 127]; then
    ``r . q' = r . q - 128 sum(r)`` and ``|q - r|^2 = |q|^2 + (|r|^2 - 256 sum(r)) - 2 r . q'``,
    all integers. Three instructions, by what the CPU has:

    ``PATH_VNNI512``: AVX-512 VNNI ``vpdpbusd`` on 512-bit vectors (u8 x s8 products, four
    summed into an int32 lane, 64 multiply-adds per instruction);
    ``PATH_VNNI256``: the same instruction on 256-bit vectors, from AVX-VNNI (Intel 12th gen
    and later, Zen 5) or AVX-512 VL + VNNI;
    ``PATH_AVX2``: ``vpmaddwd`` (16-bit products, pairs summed into int32 lanes, 16
    multiply-adds per instruction) on the references zero-extended from bytes as they are
    loaded and queries stored as int16 ``q - 128`` (a copy per query chunk). With no fused
    accumulate it needs a ``vpaddd`` per ``vpmaddwd``; a pair still does twice the
    multiply-adds of one 256-bit float32 FMA. (benchmarks/knn.py, AVX2 code on a 2-core
    Zen 4 against faiss held to AVX2: this kernel alone 0.57-0.66x faiss IndexFlatL2's time,
    with the lower bounds below 0.17-0.22x.)

    Exact by construction: a product is at most 255 * 128 = 32640 in magnitude, and each tile
    call covers at most ``KB <= 4096`` features, so every int32 lane, and the int32 sum of a
    tile's lanes, stays below 4096 * 32640 < 2^31; the calls are summed in int64 (so any
    number of features is exact).

* **GEMM + certified filter** (:func:`l2_gemm_select`, the L2 path for CPUs with none of the
  above): one float32 BLAS GEMM on the data shifted by 128, a rigorous bound on its rounding
  error to keep every reference that could be among the k nearest, and exact int64
  re-ranking of those candidates only. See the function's docstring for the bound.

* **Generic loops** (``PATH_GENERIC``): plain integer loops, same results; used where no SIMD
  instruction is available (other CPUs, ``NUMBA_DISABLE_JIT``) and by the tests.

* **Exact lower bounds** (the tile paths): each image also gets a "coarse image" of one byte
  per 16 features (the floor of the mean of a 4 x 4 pixel square, for CIFAR's layout), and a
  pair whose coarse distance proves it farther than its query's current k-th neighbour is
  skipped, without rounding (see :func:`l2_topk`). On natural images most pairs are: on
  CIFAR-10 with k = 10, the final k-th distance leaves 3% of them (the running one, a few
  more). The bound costs a sixteenth of the features' work; a block that the bounds do not
  thin is computed whole, and data they do not suit (uniform noise) stops using them after
  three blocks.

The paths are fixed when this module is imported, from the features LLVM compiles for: the
host's, or those forced with ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` (a newer CPU runs the
AVX2 and SSE2 code of an older one; the tests use this to run every path a machine can). A
path the target lacks compiles as a stub returning zeros that is never called.

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


def _target_cpu() -> str:
    """The CPU name LLVM compiles numba code for (``NUMBA_CPU_NAME`` or the host's)."""
    try:
        from numba.core.registry import cpu_target

        return str(cpu_target.target_context.codegen()._get_host_cpu_name())
    except Exception:
        return "unknown"


def target_env(isa: str) -> dict[str, str]:
    """Environment variables that make numba compile for an older x86 CPU than this one, so
    that its kernel paths run here (a newer CPU executes an older one's instructions):
    ``"avx2"`` (x86-64-v3: every AVX-512 and AVX-VNNI feature off), ``"avxvnni"`` (the same
    plus AVX-VNNI: runs only where the host has AVX-VNNI) or ``"sse2"`` (x86-64 baseline).
    Set them before numba is imported (in a child process)."""
    if isa == "sse2":
        return {
            "NUMBA_CPU_NAME": "x86-64",
            "NUMBA_CPU_FEATURES": "+64bit,+cmov,+cx8,+fxsr,+mmx,+sse,+sse2",
        }
    from llvmlite import binding

    newer = ("avx512", "avxvnni", "avx10", "amx")
    feats = []
    for f in binding.get_host_cpu_features().flatten().split(","):
        name = f[1:]
        if name.startswith(newer) and not (isa == "avxvnni" and name == "avxvnni"):
            f = "-" + name
        feats.append(f)
    if isa == "avxvnni" and "+avxvnni" not in feats:
        feats.append("+avxvnni")
    return {"NUMBA_CPU_NAME": "x86-64-v3", "NUMBA_CPU_FEATURES": ",".join(feats)}


_FEATURES = _target_features()
TARGET_CPU = _target_cpu()
if "avx512bw" in _FEATURES:
    SAD_WIDTH = 64
elif "avx2" in _FEATURES:
    SAD_WIDTH = 32
elif "sse2" in _FEATURES:
    SAD_WIDTH = 16
else:
    SAD_WIDTH = 0
HAS_SAD = SAD_WIDTH > 0
HAS_VNNI512 = {"avx512f", "avx512bw", "avx512vnni"} <= _FEATURES
HAS_VNNI256 = "avxvnni" in _FEATURES or {"avx512vl", "avx512vnni"} <= _FEATURES
HAS_AVX2 = "avx2" in _FEATURES
HAS_VNNI = HAS_VNNI512  # the name of earlier versions

# Kernel paths (the ``path`` argument of l1_topk / l2_topk).
PATH_GENERIC, PATH_SAD, PATH_AVX2, PATH_VNNI256, PATH_VNNI512 = 0, 1, 2, 3, 4
# The L2 SIMD paths, fastest first, by the name ``neighbors`` uses for each; those this
# target runs.
L2_SIMD_NAMES = ("vnni512", "vnni256", "avx2")
L2_SIMD_PATHS = {
    name: path
    for name, path, ok in zip(
        L2_SIMD_NAMES,
        (PATH_VNNI512, PATH_VNNI256, PATH_AVX2),
        (HAS_VNNI512, HAS_VNNI256, HAS_AVX2),
        strict=True,
    )
    if ok
}

# Register tiles (queries x references), features per chunk (one vector), and features per
# tile call (the cache block over features; also what keeps int32 lanes exact, see above).
# A query tile stays in L1 while the references of a block (RB rows) stream from L2; each
# thread owns a block of up to QB queries, so each reference row is read from memory once per
# QB queries. AVX2 has 16 vector registers: 6 x 2 accumulators, 2 widened references and a
# product, the query words straight from memory (L1); AVX-VNNI's 4 x 3 also fits in 16.
SAD_TQ, SAD_TR = 4, 2
AVX2_TQ, AVX2_TR, AVX2_KB = 6, 2, 1024
VNNI256_TQ, VNNI256_TR, VNNI256_KB = 4, 3, 4096
VNNI512_TQ, VNNI512_TR, VNNI512_KB = 4, 4, 4096
QB, RB = 128, 256
# Lower bounds (see :func:`l2_topk`): features per group, and the share of a block's pairs
# above which the block is computed whole, by its tile kernel, rather than pair by pair (a
# lone pair costs 2-3x its share of a tile: it loads both rows for every instruction).
GROUP = 16
HAS_PRUNE = HAS_SAD
DENSE_SHARE = 0.5
PAIR_UNROLL = 4
_NO_KB = 1 << 40  # L1 tiles run over all features: int64 lanes cannot overflow

_I8 = ir.IntType(8)
_I16 = ir.IntType(16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _lane_sums(builder, vecs, lanes):
    """Sum the lanes of each vector in ``vecs``; returns one scalar per vector.

    A shuffle tree: pairing vectors x, y into (even lanes of x:y) + (odd lanes of x:y) halves
    the lanes per source vector at each level, so ``lanes`` vectors become one vector of their
    ``lanes`` totals after log2(lanes) levels (instead of one extract and add per lane).
    """
    vec_t = vecs[0].type
    zero = ir.Constant(vec_t, None)
    mask_t = ir.VectorType(_I32, lanes)
    half = lanes // 2
    evens, odds = (
        ir.Constant(
            mask_t, [2 * i + o for i in range(half)] + [lanes + 2 * i + o for i in range(half)]
        )
        for o in (0, 1)
    )
    sums = []
    for g in range(0, len(vecs), lanes):
        group = vecs[g : g + lanes]
        n = len(group)
        group = group + [zero] * (lanes - n)
        while len(group) > 1:
            group = [
                builder.add(builder.shuffle_vector(x, y, evens), builder.shuffle_vector(x, y, odds))
                for x, y in zip(group[0::2], group[1::2], strict=True)
            ]
        sums += [builder.extract_element(group[0], ir.Constant(_I32, i)) for i in range(n)]
    return sums


def _make_tile(kind: str, tq: int, tr: int, enabled: bool, unroll: int = 1):
    """An intrinsic ``tile(A, ia, B, ib, f0, nchunks) -> UniTuple(int64, tq * tr)``.

    Entry ``a * tr + b`` is, over features ``f0 .. f0 + nchunks * width`` of rows ``ia + a`` of A
    and ``ib + b`` of B, the sum of |A - B| (``kind="sad"``, both uint8) or of B * A with B
    uint8 and A int8 (``"vnni512"``, ``"vnni256"``) or int16 (``"avx2"``). Rows must be
    C-contiguous. ``unroll`` chunks go
    through separate accumulators (to hide an instruction's latency when the tile is small);
    ``nchunks`` must then be a multiple of it. With ``enabled=False`` it returns zeros (a stub
    that compiles on any CPU; callers never reach it). Returns the intrinsic and its width
    (features per chunk).
    """
    a_bytes = 1
    if kind == "sad":
        width = SAD_WIDTH or 16
        lanes = width // 8
        a_vec = b_vec = ir.VectorType(_I8, width)
        acc_t = ir.VectorType(_I64, lanes)
        name = {
            64: "llvm.x86.avx512.psad.bw.512",
            32: "llvm.x86.avx2.psad.bw",
            16: "llvm.x86.sse2.psad.bw",
        }[width]
        fnty = ir.FunctionType(acc_t, [a_vec, b_vec])
    elif kind == "avx2":
        width, lanes, a_bytes = 16, 8, 2
        acc_t = ir.VectorType(_I32, lanes)
        a_vec = ir.VectorType(_I16, width)
        b_vec = ir.VectorType(_I8, width)
        name = "llvm.x86.avx2.pmadd.wd"
        fnty = ir.FunctionType(acc_t, [a_vec, a_vec])
    else:
        lanes = 16 if kind == "vnni512" else 8
        width = 4 * lanes
        acc_t = a_vec = b_vec = ir.VectorType(_I32, lanes)
        name = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"
        fnty = ir.FunctionType(acc_t, [acc_t, acc_t, acc_t])

    @intrinsic
    def tile(typingctx, a_arr, ia, b_arr, ib, f0, nchunks):
        sig = types.UniTuple(types.int64, tq * tr)(a_arr, ia, b_arr, ib, f0, nchunks)

        def codegen(context, builder, signature, args):
            if not enabled:
                zero = ir.Constant(_I64, 0)
                return context.make_tuple(builder, signature.return_type, [zero] * (tq * tr))
            aty, _, bty, _, _, _ = signature.args
            arr_a = context.make_array(aty)(context, builder, args[0])
            arr_b = context.make_array(bty)(context, builder, args[2])

            def row_starts(arr, row0, n, itemsize):
                stride = cgutils.unpack_tuple(builder, arr.strides)[0]
                base = builder.add(
                    builder.ptrtoint(arr.data, _I64),
                    builder.mul(args[4], ir.Constant(_I64, itemsize)),
                )
                return [
                    builder.add(base, builder.mul(stride, builder.add(row0, ir.Constant(_I64, t))))
                    for t in range(n)
                ]

            rows_a = row_starts(arr_a, args[1], tq, a_bytes)
            rows_b = row_starts(arr_b, args[3], tr, 1)
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            accs = [
                [
                    cgutils.alloca_once_value(builder, ir.Constant(acc_t, None))
                    for _ in range(tq * tr)
                ]
                for _ in range(unroll)
            ]
            n_iter = builder.udiv(args[5], ir.Constant(_I64, unroll))

            def load(p, off, vec_t):
                ptr = builder.inttoptr(builder.add(p, off), vec_t.as_pointer())
                return builder.load(ptr, align=1)

            with cgutils.for_range(builder, n_iter) as loop:
                for u in range(unroll):
                    chunk = builder.add(
                        builder.mul(loop.index, ir.Constant(_I64, unroll)), ir.Constant(_I64, u)
                    )
                    off_a = builder.mul(chunk, ir.Constant(_I64, width * a_bytes))
                    off_b = builder.mul(chunk, ir.Constant(_I64, width))
                    va = [load(p, off_a, a_vec) for p in rows_a]
                    vb = [load(p, off_b, b_vec) for p in rows_b]
                    if kind == "avx2":  # references widened as loaded: vpmovzxbw
                        vb = [builder.zext(v, a_vec) for v in vb]
                    for a in range(tq):
                        for b in range(tr):
                            ptr = accs[u][a * tr + b]
                            acc = builder.load(ptr)
                            if kind in ("sad", "avx2"):
                                new = builder.add(acc, builder.call(fn, [va[a], vb[b]]))
                            else:  # vpdpbusd(acc, unsigned bytes, signed bytes)
                                new = builder.call(fn, [acc, vb[b], va[a]])
                            builder.store(new, ptr)
            vecs = []
            for j in range(tq * tr):
                v = builder.load(accs[0][j])
                for u in range(1, unroll):
                    v = builder.add(v, builder.load(accs[u][j]))
                vecs.append(v)
            outs = _lane_sums(builder, vecs, lanes)
            if kind != "sad":  # exact in int32 (see the module docstring), then widened
                outs = [builder.sext(x, _I64) for x in outs]
            return context.make_tuple(builder, signature.return_type, outs)

        return sig, codegen

    return tile, width


_sad_tile, SAD_W = _make_tile("sad", SAD_TQ, SAD_TR, HAS_SAD)
_avx2_tile, AVX2_W = _make_tile("avx2", AVX2_TQ, AVX2_TR, HAS_AVX2)
_vnni256_tile, VNNI256_W = _make_tile("vnni256", VNNI256_TQ, VNNI256_TR, HAS_VNNI256)
_vnni512_tile, VNNI512_W = _make_tile("vnni512", VNNI512_TQ, VNNI512_TR, HAS_VNNI512)
# One pair at a time, for the pairs the lower bounds leave (four accumulators per pair).
_sad_pair1, _ = _make_tile("sad", 1, 1, HAS_SAD, PAIR_UNROLL)
_avx2_pair1, _ = _make_tile("avx2", 1, 1, HAS_AVX2, PAIR_UNROLL)
_vnni256_pair1, _ = _make_tile("vnni256", 1, 1, HAS_VNNI256, PAIR_UNROLL)
_vnni512_pair1, _ = _make_tile("vnni512", 1, 1, HAS_VNNI512, PAIR_UNROLL)


@njit(cache=True)
def tile_shape(path):
    """(query rows, reference rows, features per chunk, features per call) of a path's tile."""
    if path == PATH_SAD:
        return SAD_TQ, SAD_TR, SAD_W, _NO_KB
    if path == PATH_AVX2:
        return AVX2_TQ, AVX2_TR, AVX2_W, AVX2_KB
    if path == PATH_VNNI256:
        return VNNI256_TQ, VNNI256_TR, VNNI256_W, VNNI256_KB
    if path == PATH_VNNI512:
        return VNNI512_TQ, VNNI512_TR, VNNI512_W, VNNI512_KB
    return 1, 1, 1, _NO_KB


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
def _put_tile(buf, res, i0, j0, a0, b0, tq, tr, first):
    """Store (``first``) or add tile ``res`` at buf[i0:, j0:], skipping its first a0 rows and b0
    columns: those overlap the previous tile and were done by it."""
    for a in range(a0, tq):
        for b in range(b0, tr):
            if first:
                buf[i0 + a, j0 + b] = res[a * tr + b]
            else:
                buf[i0 + a, j0 + b] += res[a * tr + b]


@njit(cache=True)
def _block(A, q0, q1, B, r0, r1, buf, path, l2):
    """buf[i - q0, j - r0] = the sum over features of B[j] * A[i] (``l2``) or of |A[i] - B[j]|,
    for i in [q0, q1), j in [r0, r1), by the tiles of ``path`` (plain loops for PATH_GENERIC,
    for blocks smaller than a tile, and for the features after the last whole chunk)."""
    d = A.shape[1]
    tq, tr, width, kb = tile_shape(path)
    f_tail = 0
    if path != PATH_GENERIC and q1 - q0 >= tq and r1 - r0 >= tr:
        nch_all = d // width
        f_tail = nch_all * width
        step = max(1, kb // width)
        for c0 in range(0, nch_all, step):
            nch = min(step, nch_all - c0)
            f0 = c0 * width
            qi = q0
            while True:
                # The last tile overlaps the previous one instead of running short (the
                # overlap is computed twice, stored once): no remainder code is needed.
                qs = min(qi, q1 - tq)
                rj = r0
                while True:
                    rs = min(rj, r1 - tr)
                    i0, j0, a0, b0 = qs - q0, rs - r0, qi - qs, rj - rs
                    if path == PATH_SAD:
                        res = _sad_tile(A, qs, B, rs, f0, nch)
                        _put_tile(buf, res, i0, j0, a0, b0, tq, tr, c0 == 0)
                    elif path == PATH_AVX2:
                        res = _avx2_tile(A, qs, B, rs, f0, nch)
                        _put_tile(buf, res, i0, j0, a0, b0, tq, tr, c0 == 0)
                    elif path == PATH_VNNI256:
                        res = _vnni256_tile(A, qs, B, rs, f0, nch)
                        _put_tile(buf, res, i0, j0, a0, b0, tq, tr, c0 == 0)
                    else:
                        res = _vnni512_tile(A, qs, B, rs, f0, nch)
                        _put_tile(buf, res, i0, j0, a0, b0, tq, tr, c0 == 0)
                    if rs == r1 - tr:
                        break
                    rj += tr
                if qs == q1 - tq:
                    break
                qi += tq
    if f_tail < d:
        for i in range(q0, q1):
            for j in range(r0, r1):
                if l2:
                    s = _dot_pair(A, i, B, j, f_tail, d)
                else:
                    s = _sad_pair(A, i, B, j, f_tail, d)
                if f_tail == 0:
                    buf[i - q0, j - r0] = s
                else:
                    buf[i - q0, j - r0] += s


@njit(cache=True)
def _offer_block(buf, q0, q1, r0, r1, q_sq, r_const, ref_offset, heap_d, heap_i, l2):
    """Offer the distances of buf (a block from :func:`_block`) to the heaps of rows q0..q1."""
    for i in range(q0, q1):
        qs = q_sq[i] if l2 else 0
        # The worst kept key, in registers: nearly every distance fails this test, so the
        # heap itself (an out-of-line call) is rarely touched.
        top_d = heap_d[i, 0]
        top_i = heap_i[i, 0]
        for j in range(r0, r1):
            if l2:
                dist = qs + r_const[j] - 2 * buf[i - q0, j - r0]
            else:
                dist = buf[i - q0, j - r0]
            if dist < top_d or (dist == top_d and j + ref_offset < top_i):
                _heap_offer(heap_d, heap_i, i, dist, j + ref_offset)
                top_d = heap_d[i, 0]
                top_i = heap_i[i, 0]


@njit(cache=True)
def _pair(A, i, B, j, path, l2):
    """The exact sum over features of B[j] * A[i] (``l2``) or |A[i] - B[j]| for one pair, by
    the SIMD instruction of ``path`` (one row each, four accumulators)."""
    d = A.shape[1]
    _, _, width, kb = tile_shape(path)
    step = width * PAIR_UNROLL
    s = 0
    f = 0
    while f + step <= d:
        nch = min((d - f) // step, max(1, kb // step)) * PAIR_UNROLL
        if path == PATH_SAD:
            s += _sad_pair1(A, i, B, j, f, nch)[0]
        elif path == PATH_AVX2:
            s += _avx2_pair1(A, i, B, j, f, nch)[0]
        elif path == PATH_VNNI256:
            s += _vnni256_pair1(A, i, B, j, f, nch)[0]
        else:
            s += _vnni512_pair1(A, i, B, j, f, nch)[0]
        f += nch * width
    if f < d:
        s += _dot_pair(A, i, B, j, f, d) if l2 else _sad_pair(A, i, B, j, f, d)
    return s


@njit(cache=True)
def _prune_limit(top, l2, n_groups):
    """The largest lower-bound statistic (SAD of the coarse images for L1, their SSD for L2)
    that does not prove a distance > ``top``; INT64_MAX (prove nothing) while top is.

    L1: distance >= 16 SAD - 15 G, so SAD > (top + 15 G) // 16 proves distance > top.
    L2: 16 distance >= 256 SSD - 480 SAD >= 256 SSD - 480 sqrt(G SSD) =: h(SSD) (Cauchy-Schwarz
    on the SAD), increasing for SSD > G; h(SSD) > 16 top once sqrt(SSD) exceeds the positive
    root x of 256 x^2 - 480 sqrt(G) x - 16 top. The float root is rounded up with a margin far
    above float64 error, so a pair is only ever pruned when the integers prove it.
    """
    if top == INT64_MAX:
        return INT64_MAX
    if not l2:
        return (top + 15 * n_groups) // 16
    b = 480.0 * np.sqrt(np.float64(n_groups))
    x = (b + np.sqrt(b * b + 4.0 * 256.0 * 16.0 * np.float64(top))) / 512.0
    return max(np.int64(x * x * (1.0 + 1e-9)) + 2, np.int64(n_groups) + 1)


@njit(cache=True)
def _topk_qblock(A, R, q0, q1, q_sq, r_const, ref_offset, heap_d, heap_i, path, l2, lb):
    """Offer every distance of queries q0..q1 to their heaps, reference block by block.

    With the coarse images ``lb`` (see :func:`l2_topk`; empty arrays: none), each block first
    gets, for every pair, a statistic whose excess over :func:`_prune_limit` of its query's
    current k-th distance proves that the pair cannot enter the heap; those pairs are
    skipped. A block where more than DENSE_SHARE of the pairs remain (estimated on every
    fourth query) is computed whole by the tile kernel, otherwise the remaining pairs one by
    one. After three blocks in a row where nearly nothing was proven, the bounds are dropped
    for the rest of the queries' blocks (data the bounds do not suit).
    """
    PA, PQ, PR, p_sq, p_const = lb
    n = R.shape[0]
    n_rblocks = (n + RB - 1) // RB
    width = (n + n_rblocks - 1) // n_rblocks
    buf = np.empty((q1 - q0, width), np.int64)
    prune = PR.shape[0] > 0
    n_groups = PR.shape[1]
    stat = np.empty((q1 - q0, width) if prune else (0, 0), np.int64)
    useless = 0
    for rb in range(n_rblocks):
        r0 = rb * n // n_rblocks
        r1 = (rb + 1) * n // n_rblocks
        if prune and useless < 3:
            if l2:
                _block(PA, q0, q1, PR, r0, r1, stat, path, True)
                for i in range(q0, q1):
                    for j in range(r0, r1):
                        stat[i - q0, j - r0] = p_sq[i] + p_const[j] - 2 * stat[i - q0, j - r0]
            else:
                _block(PQ, q0, q1, PR, r0, r1, stat, PATH_SAD, False)
            alive = 0
            full = True
            for i in range(q0, q1, 4):
                limit = _prune_limit(heap_d[i, 0], l2, n_groups)
                full = full and limit != INT64_MAX
                for j in range(r0, r1):
                    alive += stat[i - q0, j - r0] <= limit
            share = alive / (((q1 - q0 + 3) // 4) * (r1 - r0))
            useless = useless + 1 if full and share > 0.9 else 0
            if share <= DENSE_SHARE:
                for i in range(q0, q1):
                    qs = q_sq[i] if l2 else 0
                    top_d = heap_d[i, 0]
                    top_i = heap_i[i, 0]
                    limit = _prune_limit(top_d, l2, n_groups)
                    for j in range(r0, r1):
                        if stat[i - q0, j - r0] > limit:
                            continue
                        dist = _pair(A, i, R, j, path, l2)
                        if l2:
                            dist = qs + r_const[j] - 2 * dist
                        if dist < top_d or (dist == top_d and j + ref_offset < top_i):
                            _heap_offer(heap_d, heap_i, i, dist, j + ref_offset)
                            top_d = heap_d[i, 0]
                            top_i = heap_i[i, 0]
                            limit = _prune_limit(top_d, l2, n_groups)
                continue
        _block(A, q0, q1, R, r0, r1, buf, path, l2)
        _offer_block(buf, q0, q1, r0, r1, q_sq, r_const, ref_offset, heap_d, heap_i, l2)


@njit(parallel=True, cache=True)
def l1_topk(Q, R, ref_offset, heap_d, heap_i, n_qblocks, path, lb):
    """Offer every (query, reference) L1 distance to the per-query heaps.

    Q : uint8 (m, d) C-contiguous; R : uint8 (n, d) C-contiguous; reference j is reported as
    ``j + ref_offset``. heap_d, heap_i : int64 (m, k), updated in place.
    n_qblocks : query blocks run in parallel; each is at least a tile high (``tile_shape``)
    when m allows. path : PATH_SAD or PATH_GENERIC. lb : the lower bounds' arrays, as in
    :func:`l2_topk` (PA, p_sq and p_const unused).
    """
    m = Q.shape[0]
    none = np.zeros(0, np.int64)
    for b in prange(n_qblocks):
        q0 = b * m // n_qblocks
        q1 = (b + 1) * m // n_qblocks
        _topk_qblock(Q, R, q0, q1, none, none, ref_offset, heap_d, heap_i, path, False, lb)


@njit(parallel=True, cache=True)
def l2_topk(A, R, q_sq, r_const, ref_offset, heap_d, heap_i, n_qblocks, path, lb):
    """Offer every (query, reference) squared L2 distance to the per-query heaps.

    A : the queries minus 128, int16 (m, d) for PATH_AVX2, int8 otherwise; R : uint8 (n, d);
    q_sq : int64 (m,) |q|^2; r_const : int64 (n,) |r|^2 - 256 sum(r). Then
    |q - r|^2 = q_sq + r_const - 2 R[j] . A[i]. path : PATH_AVX2, PATH_VNNI256, PATH_VNNI512
    or PATH_GENERIC. Other arguments as :func:`l1_topk`.

    lb = (PA, PQ, PR, p_sq, p_const): for pruning, uint8 "coarse images" u = floor(S / 16),
    S the sum of a group of at most GROUP features (``pool``), of the queries (PQ) and of the
    references (PR); PA is PQ shifted like A; p_sq = |u_q|^2 and p_const = |u_r|^2 - 256
    sum(u_r), int64 (so that SSD(u_q, u_r) comes from the same dot product as the distance).
    Empty arrays: no pruning. With S = 16 u + rho, 0 <= rho <= 15, a group has
    |S_q - S_r| >= 16 |du| - 15, and by Cauchy-Schwarz sum_g (q - r)^2 >= (S_q - S_r)^2 / 16;
    so, exactly, in integers,

        16 |q - r|^2 >= 256 SSD(u_q, u_r) - 480 SAD(u_q, u_r)   and
        |q - r|_1 >= 16 SAD(u_q, u_r) - 15 n_groups,

    cheap to compute (one byte per 16 features, by the same SIMD tiles) and tight on natural
    images, whose pixels vary little within a small square. (For L2 the SAD is bounded by
    sqrt(n_groups SSD), so that one product serves: see :func:`_prune_limit`.)
    """
    m = A.shape[0]
    for b in prange(n_qblocks):
        q0 = b * m // n_qblocks
        q1 = (b + 1) * m // n_qblocks
        _topk_qblock(A, R, q0, q1, q_sq, r_const, ref_offset, heap_d, heap_i, path, True, lb)


@njit(parallel=True, cache=True)
def pool(X, groups, out):
    """out[i, g] = floor(sum of X[i, groups[g, :]] / 16) (entries -1 skipped): uint8 "coarse
    images" (uint8 X, at most GROUP features a group)."""
    for i in prange(X.shape[0]):
        for g in range(groups.shape[0]):
            s = 0
            for k in range(groups.shape[1]):
                f = groups[g, k]
                if f >= 0:
                    s += np.int64(X[i, f])
            out[i, g] = s >> 4


def pool_groups(n_features: int) -> np.ndarray:
    """The feature groups of the lower bounds, int64 (n_groups, GROUP), -1 padded: 4 x 4 pixel
    squares of each colour plane for CIFAR-10's row layout (3,072 = 3 planes of 32 x 32,
    row-major), else runs of GROUP consecutive features. Any grouping gives an exact bound;
    squares of neighbouring pixels make it tight on natural images (their pixels vary little
    within a square), so that most pairs are pruned."""
    if n_features == 3 * 32 * 32:
        f = np.arange(n_features).reshape(3, 8, 4, 8, 4).transpose(0, 1, 3, 2, 4)
        return np.ascontiguousarray(f.reshape(-1, GROUP))
    n_groups = -(-n_features // GROUP)
    groups = np.full(n_groups * GROUP, -1, np.int64)
    groups[:n_features] = np.arange(n_features)
    return groups.reshape(n_groups, GROUP)


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
