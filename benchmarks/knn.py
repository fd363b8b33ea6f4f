"""Benchmark cifarlab.knn against faiss-cpu and scikit-learn on the same arrays, in one process.

Data: CIFAR-10 (50,000 training x 10,000 test images of 3,072 uint8 values) from ``--data DIR``
holding the official binary batches, else from the mirror tarball
``../shared/data/cifar-10-mirror/cifar-10-binary.tar.gz`` (relative to the repository root),
else a generated uint8 array of the same shape. ``--n-query`` / ``--n-ref`` run smaller.

Reports: wall time of each method (ours: the median of ``--repeats`` runs; peers once), our
speed-up over each peer, the peak memory of our calls (tracemalloc: numpy and numba buffers)
and of the process (max RSS), and whether our neighbours equal an exact integer reference on
a subset of queries. The L1 peers (and, with ``--peer-queries``, any peer) run on a query
subset and are extrapolated linearly to the full query count; the output says so. faiss's
bundled OpenBLAS is pointed at this CPU's AVX-512 kernels (see :func:`prepare_peer_blas`), so
the peers run at their best.

Example (the full problem, about 8 minutes on 2 cores, mostly the peers)::

    .venv/bin/python benchmarks/knn.py
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

from cifarlab.data.archive import parse_batch, read_cifar10_archive
from cifarlab.knn import _kernels, neighbors
from cifarlab.params import DISTANCES

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "cifar-10-mirror" / "cifar-10-binary.tar.gz"
TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST = "test_batch.bin"


# --- data --------------------------------------------------------------------------------------


def load_cifar(data_dir: Path | None) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(X_train, X_test, source) as C-contiguous uint8 arrays, or None if nothing is found.

    ``data_dir`` holds the official binary batches (the archive's folder, extracted); else the
    mirror tarball is read (in memory, validated) like the pipeline's prepare stage reads it.
    """
    if data_dir is not None:
        train = [parse_batch((data_dir / n).read_bytes(), n)[0] for n in TRAIN]
        test = parse_batch((data_dir / TEST).read_bytes(), TEST)[0]
        return np.ascontiguousarray(np.vstack(train)), np.ascontiguousarray(test), str(data_dir)
    if not MIRROR.exists():
        return None
    archive = read_cifar10_archive(MIRROR)
    X_train, _ = archive.train
    return np.ascontiguousarray(X_train), np.ascontiguousarray(archive.test[0]), str(MIRROR)


# --- exact reference ---------------------------------------------------------------------------


def exact_reference(Q: np.ndarray, R: np.ndarray, k: int, distance: str) -> tuple[np.ndarray, ...]:
    """Brute-force int64 k-NN of each row of Q, ordered by (distance, index).

    L2 uses float64 products of the integer pixels: every product and partial sum is an
    integer below 2^53 (3072 * 255^2 ~ 2e8), so it is exact whatever the summation order.
    """
    n = R.shape[0]
    out_i, out_d = [], []
    if distance == "l2":
        R64 = R.astype(np.float64)
        r_sq = np.einsum("ij,ij->i", R64, R64)
        dists = [(q @ q + r_sq - 2.0 * (R64 @ q)).astype(np.int64) for q in Q.astype(np.float64)]
        del R64
    else:
        R16 = R.astype(np.int16)
        dists = [np.abs(R16 - q).sum(axis=1, dtype=np.int64) for q in Q.astype(np.int16)]
    for dist in dists:
        order = np.lexsort((np.arange(n), dist))[:k]
        out_i.append(order)
        out_d.append(dist[order])
    return np.array(out_i), np.array(out_d)


# --- timing ------------------------------------------------------------------------------------


def timed(fn, repeats: int = 1) -> tuple[float, object, int]:
    """(median seconds, last result, tracemalloc peak bytes over the runs)."""
    times, peak, result = [], 0, None
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(times), result, peak


def prepare_peer_blas(keep_default: bool) -> str:
    """Let faiss's bundled OpenBLAS use the AVX-512 kernels of this CPU; returns a note.

    faiss-cpu wheels bundle OpenBLAS 0.3.15, too old to recognise recent Xeons: it falls back
    to its SSE3 "Prescott" kernels, 2-3x slower than it can be. OPENBLAS_CORETYPE is read
    when that library loads (at ``import faiss``), so it must be set before. numpy's and
    scipy's newer OpenBLAS pick the same SkylakeX kernels by themselves.
    """
    if keep_default:
        return "peers' BLAS left as detected (--peer-blas-default)"
    if "OPENBLAS_CORETYPE" in os.environ:
        return f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} (set by the caller)"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "peers' BLAS left as detected (no /proc/cpuinfo)"
    if " avx512f " not in flags.replace("\n", " "):
        return "peers' BLAS left as detected (no AVX-512)"
    os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    return "OPENBLAS_CORETYPE=SkylakeX, so faiss's bundled OpenBLAS uses AVX-512 kernels"


def blas_kernels() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (no threadpoolctl)"
    return ", ".join(
        f"{Path(i['filepath']).name.split('-')[0]} {i.get('version')} {i.get('architecture')}"
        for i in threadpool_info()
        if i.get("internal_api") == "openblas"
    )


def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="directory with the official binary batches")
    parser.add_argument("--n-query", type=int, default=10_000)
    parser.add_argument("--n-ref", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours (median reported)")
    parser.add_argument(
        "--l1-query-subset",
        type=int,
        default=None,
        help="run our L1 on this many queries only (extrapolated)",
    )
    parser.add_argument(
        "--check-queries",
        type=int,
        default=50,
        help="queries checked against the brute int64 reference",
    )
    parser.add_argument("--faiss-l1-queries", type=int, default=500)
    parser.add_argument("--sklearn-l1-queries", type=int, default=1_000)
    parser.add_argument(
        "--peer-queries",
        type=int,
        default=None,
        help="cap every peer at this many queries (extrapolated)",
    )
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--peer-blas-default",
        action="store_true",
        help="do not set OPENBLAS_CORETYPE for faiss's bundled OpenBLAS (see prepare_peer_blas)",
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="skip timing our portable L2 path (float32 GEMM + certified filter)",
    )
    args = parser.parse_args()

    loaded = load_cifar(args.data)
    if loaded is None:
        rng = np.random.default_rng(0)
        X_ref_all = rng.integers(0, 256, size=(50_000, 3072), dtype=np.uint8)
        X_query_all = rng.integers(0, 256, size=(10_000, 3072), dtype=np.uint8)
        source = "generated uniform uint8 (CIFAR-10 not found)"
    else:
        X_ref_all, X_query_all, source = loaded
    X_ref = np.ascontiguousarray(X_ref_all[: args.n_ref])
    X_query = np.ascontiguousarray(X_query_all[: args.n_query])
    del X_ref_all, X_query_all
    n_query, n_ref, d, k = X_query.shape[0], X_ref.shape[0], X_ref.shape[1], args.k
    print(f"data: {source}")
    print(f"problem: {n_query} queries x {n_ref} references x {d} features, k={k}")
    print(f"process max RSS after loading the data: {max_rss_mib():.0f} MiB")
    import numba

    print(
        f"ours: numba {numba.__version__}, {numba.get_num_threads()} threads; "
        f"L1 psadbw width {_kernels.SAD_WIDTH} bytes, L2 VNNI {_kernels.HAS_VNNI}"
    )

    # Load the cached kernels (or compile them once) outside the timings.
    start = time.perf_counter()
    for distance in DISTANCES:
        neighbors.kneighbors(X_query[:8], X_ref[:64], 2, distance)
    neighbors._kneighbors(X_query[:8], X_ref[:64], 2, "l2", impl="gemm")
    print(f"kernel load/compile: {time.perf_counter() - start:.2f} s\n")

    check_rows = np.unique(
        np.linspace(0, n_query - 1, min(args.check_queries, n_query)).astype(int)
    )
    results: dict[str, float] = {}
    found: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

    def ours(label: str, distance: str, impl: str, subset: int | None = None) -> None:
        m = n_query if subset is None else min(subset, n_query)
        seconds, (idx, dist), peak = timed(
            lambda: neighbors._kneighbors(X_query[:m], X_ref, k, distance, impl=impl),
            args.repeats,
        )
        results[label] = seconds * n_query / m
        found[label] = idx, dist, m
        note = f"median of {args.repeats}" + (f", {m} queries extrapolated" if m < n_query else "")
        note += f"; peak traced {peak / 2**20:.0f} MiB; process max RSS {max_rss_mib():.0f} MiB"
        print(f"{label:<34} {results[label]:8.2f} s  ({note})", flush=True)

    ours("ours l2", "l2", "auto")
    if not args.no_fallback:
        ours("ours l2, portable gemm path", "l2", "gemm")
    ours("ours l1", "l1", "auto", args.l1_query_subset)

    # The exact reference, once per distance, after our timings (its float64 copy of the
    # references would otherwise show in the RSS figures above).
    reference = {
        distance: exact_reference(X_query[check_rows], X_ref, k, distance) for distance in DISTANCES
    }
    print(f"\nexactness vs brute-force int64 on {len(check_rows)} queries spread over the set:")
    for label, (idx, dist, m) in found.items():
        ref_idx, ref_dist = reference["l1" if label.startswith("ours l1") else "l2"]
        sel = check_rows < m
        ok = np.array_equal(idx[check_rows[sel]], ref_idx[sel])
        ok = ok and np.array_equal(dist[check_rows[sel]], ref_dist[sel])
        verdict = "identical indices and distances" if ok else "MISMATCH"
        print(f"  {label:<32} {verdict} ({int(sel.sum())} queries)")
    print()

    if not args.no_peers:
        blas_note = prepare_peer_blas(args.peer_blas_default)
        import faiss
        from sklearn.neighbors import KNeighborsClassifier

        print(f"peers: faiss {faiss.__version__}, scikit-learn {sklearn_version()}; {blas_note}")
        print(f"BLAS kernels loaded: {blas_kernels()}")

        Xr32 = X_ref.astype(np.float32)
        Xq32 = X_query.astype(np.float32)
        y_dummy = np.zeros(n_ref, dtype=np.int64)

        def cap(m: int) -> int:
            return min(n_query, m, args.peer_queries or m)

        def peer(label: str, m: int, run, distance: str) -> None:
            seconds, idx, _ = timed(lambda: run(Xq32[:m]), 1)
            results[label] = seconds * n_query / m
            note = f"{m} queries, extrapolated" if m < n_query else "full"
            sel = check_rows < m
            agree = np.mean(np.all(idx[check_rows[sel]] == reference[distance][0][sel], axis=1))
            note += f"; rows identical to exact: {agree:.0%} of {int(sel.sum())} checked"
            print(f"{label:<34} {results[label]:8.2f} s  ({note})", flush=True)

        def faiss_search(metric_type):
            def run(Q):
                index = faiss.IndexFlat(d, metric_type)
                index.add(Xr32)
                return index.search(Q, k)[1]

            return run

        def sklearn_search(metric):
            def run(Q):
                model = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=metric)
                return model.fit(Xr32, y_dummy).kneighbors(Q, return_distance=False)

            return run

        peer("faiss IndexFlatL2", cap(n_query), faiss_search(faiss.METRIC_L2), "l2")
        peer("sklearn brute L2", cap(n_query), sklearn_search("euclidean"), "l2")
        peer(
            "faiss IndexFlat(METRIC_L1)",
            cap(args.faiss_l1_queries),
            faiss_search(faiss.METRIC_L1),
            "l1",
        )
        peer("sklearn brute L1", cap(args.sklearn_l1_queries), sklearn_search("manhattan"), "l1")

        print("\nspeed-up of ours (peer time / our time, same arrays, same process):")
        for ours_label, peers in [
            ("ours l2", ["faiss IndexFlatL2", "sklearn brute L2"]),
            ("ours l1", ["faiss IndexFlat(METRIC_L1)", "sklearn brute L1"]),
        ]:
            for p in peers:
                print(f"  {ours_label} vs {p:<28} {results[p] / results[ours_label]:6.1f}x")
        print("(peers get float32 copies made outside their timings; ours reads the uint8)")
    print(f"\nprocess max RSS: {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
