"""Numba kernels behind :mod:`cifarlab.linear.sgd`: one minibatch step of SGD, fused.

A step reads each of its rows of ``X`` (raw ``uint8`` images in the pipeline) once from memory:
a tile of ``TILE`` rows is converted and centred into a small float buffer (``x - mean``, the
same numbers as ``X[idx].astype(float32) - mean``), which stays in cache while it serves both
products, the scores ``x . W + b`` and the gradient ``G += x^T dscores``; the per-sample loss and
``dscores`` are computed in between, from the tile's scores. Both products are blocked over
``FB`` features so that a block of the weights, of the gradient and of the tile stay in L1, and
register-tiled (2 samples x 2 classes for the scores, 4 samples for the gradient) so that every
vector load feeds at least one FMA. There is no float copy of the minibatch and no BLAS call
on a skinny matrix.

Weights are held class-major, ``Wt`` of shape (n_classes, n_features) (the transpose of the
public ``W``), so that both products run along contiguous feature rows.

Floating point: sums are reassociated (vectorised) and multiply-adds contracted to FMAs, so
results equal the numpy loop's to float tolerance, not bit for bit; they are deterministic
(one thread, fixed order). NaN and infinity are propagated as IEEE arithmetic does (no
``fastmath`` assumption about them), so a diverging run is still seen.

The kernels share this one file on purpose: numba's on-disk cache (``cache=True``) is
invalidated by the timestamp of the function's own file only.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

# Reassociate sums (vectorisation) and contract multiply-adds; keep NaN/inf semantics.
_FM = {"reassoc", "contract", "nsz", "arcp"}
TILE = 8  # rows per tile of the minibatch (the float buffer: TILE x n_features)
FB_SCORES = 1024  # features per block of the scores (4 rows x 2 classes of it stay in L1)
FB_GRAD = 256  # features per block of the gradient (8 rows + a gradient row in L1)
# Row stride padding of the float buffer (elements): with 3,072 float32 features a row is
# exactly 3 pages, and loads from the buffer would alias (4K aliasing) with the stores into
# the gradient rows; see :func:`scratch`.
PAD = 48
LINE = 64  # cache line bytes, for the prefetch of the next tile's rows

HINGE, SOFTMAX = 0, 1
L2, L1, ELASTICNET = 0, 1, 2


@intrinsic
def _prefetch(typingctx, arr, row, col):
    """Prefetch the cache line of ``arr[row, col]`` (a hint: no fault, no result)."""
    sig = types.void(arr, row, col)

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [args[1], args[2]])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read, high locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _prefetch_rows(X, idx, t0, nt):
    """Prefetch rows idx[t0 : t0 + nt] of X: the next tile's, read from memory while the
    current tile computes (the rows are random, so the hardware cannot guess them)."""
    step = max(1, LINE // X.itemsize)
    for t in range(t0, t0 + nt):
        for f in range(0, X.shape[1], step):
            _prefetch(X, idx[t], f)


@njit(cache=True, fastmath=_FM)
def _load_tile(X, idx, t0, nt, mean, xbuf):
    """xbuf[t, :d] = X[idx[t0 + t]] - mean for t < nt (converted to the dtype of ``mean``)."""
    d = X.shape[1]
    for t in range(nt):
        row = idx[t0 + t]
        for f in range(uint64(d)):
            xbuf[t, f] = X[row, f] - mean[f]


@njit(cache=True, fastmath=_FM)
def _tile_scores(xbuf, nt, Wt, S):
    """S[t, c] = sum_f xbuf[t, f] * Wt[c, f] for t < nt, every class c.

    Register tile of 4 rows x 2 classes (8 accumulators: 6 loads feed 8 FMAs). Rows and
    classes past the end are stood in for by the last one (computed, not stored). Loops
    index with unsigned integers: with a signed start numba keeps a negative-index check in
    the loop, which stops LLVM from vectorising it.
    """
    C, d = Wt.shape
    for t in range(nt):
        for c in range(C):
            S[t, c] = 0
    for f0 in range(0, d, FB_SCORES):
        f1 = min(f0 + FB_SCORES, d)
        for t in range(0, nt, 4):
            t1, t2, t3 = min(t + 1, nt - 1), min(t + 2, nt - 1), min(t + 3, nt - 1)
            for c in range(0, C, 2):
                c1 = min(c + 1, C - 1)
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = S.dtype.type(0)
                for f in range(uint64(f0), uint64(f1)):
                    w0 = Wt[c, f]
                    w1 = Wt[c1, f]
                    x0 = xbuf[t, f]
                    x1 = xbuf[t1, f]
                    x2 = xbuf[t2, f]
                    x3 = xbuf[t3, f]
                    a0 += x0 * w0
                    a1 += x1 * w0
                    a2 += x2 * w0
                    a3 += x3 * w0
                    b0 += x0 * w1
                    b1 += x1 * w1
                    b2 += x2 * w1
                    b3 += x3 * w1
                _add_pair(S, t, c, c1, a0, b0)
                if t + 1 < nt:
                    _add_pair(S, t + 1, c, c1, a1, b1)
                if t + 2 < nt:
                    _add_pair(S, t + 2, c, c1, a2, b2)
                if t + 3 < nt:
                    _add_pair(S, t + 3, c, c1, a3, b3)


@njit(cache=True)
def _add_pair(S, t, c, c1, a, b):
    S[t, c] += a
    if c1 != c:
        S[t, c1] += b


@njit(cache=True, fastmath=_FM)
def _tile_grad(xbuf, nt, S, G):
    """G[c, f] += sum_t S[t, c] * xbuf[t, f] for t < nt (S holds the tile's dscores).

    All eight rows of a tile at once: each vector of G is loaded and stored once per eight
    multiply-adds. Missing rows (nt < 8) count with a zero coefficient.
    """
    C, d = G.shape
    zero = S.dtype.type(0)
    last = nt - 1
    r0, r1, r2, r3 = 0, min(1, last), min(2, last), min(3, last)
    r4, r5, r6, r7 = min(4, last), min(5, last), min(6, last), min(7, last)
    for f0 in range(0, d, FB_GRAD):
        f1 = min(f0 + FB_GRAD, d)
        for c in range(C):
            a0 = S[0, c]
            a1 = S[1, c] if nt > 1 else zero
            a2 = S[2, c] if nt > 2 else zero
            a3 = S[3, c] if nt > 3 else zero
            a4 = S[4, c] if nt > 4 else zero
            a5 = S[5, c] if nt > 5 else zero
            a6 = S[6, c] if nt > 6 else zero
            a7 = S[7, c] if nt > 7 else zero
            for f in range(uint64(f0), uint64(f1)):
                G[c, f] += (
                    a0 * xbuf[r0, f] + a1 * xbuf[r1, f] + a2 * xbuf[r2, f] + a3 * xbuf[r3, f]
                ) + (a4 * xbuf[r4, f] + a5 * xbuf[r5, f] + a6 * xbuf[r6, f] + a7 * xbuf[r7, f])


@njit(cache=True)
def _tile_dscores(S, nt, b, y, idx, t0, loss, delta, n, gb):
    """Turn the tile's scores S[t] (without b) into d(loss)/d(scores) / n; returns the tile's
    summed loss (float64) and adds the dscores to gb. Same arithmetic as ``losses._hinge`` /
    ``losses._softmax`` row by row."""
    C = S.shape[1]
    total = 0.0
    for t in range(nt):
        yt = y[idx[t0 + t]]
        for c in range(C):
            S[t, c] += b[c]
        if loss == HINGE:
            correct = S[t, yt]
            count = 0
            for c in range(C):
                if c == yt:
                    continue
                margin = S[t, c] - correct + delta
                if margin > 0:
                    total += margin
                    count += 1
                    S[t, c] = 1
                else:
                    if margin != margin:  # NaN: the loss must show it, as np.maximum does
                        total += margin
                    S[t, c] = 0
            S[t, yt] = -count
        else:
            top = S[t, 0]
            for c in range(1, C):
                top = max(top, S[t, c])
            shifted_y = S[t, yt] - top
            sum_exp = S.dtype.type(0)
            for c in range(C):
                S[t, c] = np.exp(S[t, c] - top)
                sum_exp += S[t, c]
            # -log p_y = log(sum exp(s - top)) - (s_y - top): no log(0).
            total += np.log(sum_exp) - shifted_y
            for c in range(C):
                S[t, c] /= sum_exp
            S[t, yt] -= 1
        for c in range(C):
            S[t, c] /= n
            gb[c] += S[t, c]
    return total


@njit(cache=True)
def _scored_tile(X, idx, t0, mean, Wt, xbuf, S):
    """Load the tile of rows idx[t0 : t0 + TILE] into xbuf and its scores (without b) into S,
    the next tile's rows prefetched meanwhile; returns the tile's row count."""
    n = idx.shape[0]
    nt = min(TILE, n - t0)
    _prefetch_rows(X, idx, t0 + nt, min(TILE, n - t0 - nt))
    _load_tile(X, idx, t0, nt, mean, xbuf)
    _tile_scores(xbuf, nt, Wt, S)
    return nt


@njit(cache=True)
def loss_grad(X, idx, mean, Wt, b, y, loss, delta, G, gb, xbuf, S):
    """Data loss and gradient of one minibatch, the rows ``idx`` of ``X``.

    X : (n_samples, n_features), any real dtype (uint8 in the pipeline); idx : int64 (n,);
    mean : (n_features,), the working dtype (float32 or float64; zeros for no centring);
    Wt : (n_classes, n_features), b : (n_classes,), working dtype; y : int64 (n_samples,);
    loss : HINGE or SOFTMAX; delta : hinge margin. Outputs, overwritten: G (like Wt), gb (like
    b): the gradient of the mean loss. Scratch: xbuf (TILE, n_features), S (TILE, n_classes),
    working dtype. Returns the mean loss (float64).
    """
    n = idx.shape[0]
    G[:] = 0
    gb[:] = 0
    dt = G.dtype.type  # the working dtype: constants in it, as numpy uses them with arrays
    nf = dt(n)
    dl = dt(delta)
    total = 0.0
    _prefetch_rows(X, idx, 0, min(TILE, n))
    for t0 in range(0, n, TILE):
        nt = _scored_tile(X, idx, t0, mean, Wt, xbuf, S)
        total += _tile_dscores(S, nt, b, y, idx, t0, loss, dl, nf, gb)
        _tile_grad(xbuf, nt, S, G)
    return total / n


@njit(cache=True)
def scores(X, mean, Wt, b, out, xbuf, S):
    """out[i] = (X[i] - mean) . Wt^T + b for every row of X, tile by tile (arguments as in
    :func:`loss_grad`; out : (n_samples, n_classes), working dtype)."""
    n = X.shape[0]
    C = Wt.shape[0]
    idx = np.arange(n)
    _prefetch_rows(X, idx, 0, min(TILE, n))
    for t0 in range(0, n, TILE):
        nt = _scored_tile(X, idx, t0, mean, Wt, xbuf, S)
        for t in range(nt):
            for c in range(C):
                out[t0 + t, c] = S[t, c] + b[c]


@njit(cache=True)
def penalty_step(Wt, G, reg, reg_type, l1_ratio):
    """Add the penalty's (sub)gradient at Wt to G; returns the penalty (float64).

    ``reg * (l1 * sum |W| + l2 * sum W^2)`` with (l1, l2) = (0, 1) for L2, (1, 0) for L1,
    (l1_ratio, 1 - l1_ratio) for ELASTICNET; its gradient ``reg * (l1 sign(W) + 2 l2 W)``.
    """
    if reg_type == L2:
        l1w, l2w = 0.0, 1.0
    elif reg_type == L1:
        l1w, l2w = 1.0, 0.0
    else:
        l1w, l2w = l1_ratio, 1.0 - l1_ratio
    C, d = Wt.shape
    k1 = Wt.dtype.type(reg * l1w)
    k2 = Wt.dtype.type(reg * 2.0 * l2w)
    s1 = 0.0
    s2 = 0.0
    for c in range(C):
        for f in range(d):
            w = Wt[c, f]
            s1 += abs(w)
            s2 += w * w
            G[c, f] += k1 * np.sign(w) + k2 * w
    return reg * (l1w * s1 + l2w * s2)


@njit(cache=True)
def update(Wt, b, G, gb, vW, vb, lr, momentum):
    """W -= lr * G (plain SGD), or v = momentum * v - lr * G; W += v (classical momentum)."""
    C, d = Wt.shape
    lr_ = Wt.dtype.type(lr)
    m = Wt.dtype.type(momentum)
    if momentum == 0:
        for c in range(C):
            for f in range(d):
                Wt[c, f] -= lr_ * G[c, f]
            b[c] -= lr_ * gb[c]
    else:
        for c in range(C):
            for f in range(d):
                vW[c, f] = m * vW[c, f] - lr_ * G[c, f]
                Wt[c, f] += vW[c, f]
            vb[c] = m * vb[c] - lr_ * gb[c]
            b[c] += vb[c]


def scratch(n_classes: int, n_features: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The buffers of :func:`loss_grad`: (G, xbuf, S), carved from one allocation so that the
    float buffer starts half a page away from the gradient: rows of 3,072 float32 are 3 pages
    long, and a load of xbuf[t, f] would otherwise often share its page offset with the store
    to G[c, f] of the same loop (4K aliasing, a stall on every vector). xbuf rows are padded
    by PAD elements for the same reason."""
    itemsize = np.dtype(dtype).itemsize
    ld = n_features + PAD
    g_size = n_classes * n_features
    page = 4096 // itemsize
    # Smallest offset >= g_size that is congruent to half a page, modulo a page.
    off = g_size + ((page // 2 - g_size) % page)
    work = np.empty(off + TILE * ld + page, dtype)
    base = (-work.ctypes.data // itemsize) % page  # G at a page boundary
    G = work[base : base + g_size].reshape(n_classes, n_features)
    xbuf = work[base + off : base + off + TILE * ld].reshape(TILE, ld)
    return G, xbuf, np.empty((TILE, n_classes), dtype)
