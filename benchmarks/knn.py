"""Benchmark cifarlab.knn against faiss-cpu and scikit-learn on the same arrays, in one process.

Data: CIFAR-10 (50,000 training x 10,000 test images of 3,072 uint8 values) from ``--data DIR``
holding the official binary batches, else from the mirror tarball
``../shared/data/cifar-10-mirror/cifar-10-binary.tar.gz`` (relative to the repository root),
else a generated uint8 array of the same shape. ``--n-query`` / ``--n-ref`` run smaller.

Reports: the CPU, the kernel paths it runs and the one each distance takes; the wall time of
each of our paths on the same arrays (the median of ``--repeats`` runs; the SIMD paths with
and without the exact lower bounds that prune pairs) and of the peers (once); our speed-up
over each peer; the peak memory of our calls (tracemalloc: numpy and numba buffers) and of
the process (max RSS); and whether each path's neighbours equal an exact integer reference
on a subset of queries. The L1 peers (and, with ``--peer-queries``, any peer) run on a query
subset and are extrapolated linearly to the full query count; the output says so. faiss's
bundled OpenBLAS is pointed at this CPU's best kernels (see :func:`prepare_peer_blas`), so
the peers run at their best.

``--target avx2`` (or ``avxvnni``, ``sse2``) reruns the benchmark in a child process whose
numba code is compiled for that older CPU (``cifarlab.knn._kernels.target_env``), and the
peers are held to that CPU's code too: faiss's bundled OpenBLAS to its kernels
(``OPENBLAS_CORETYPE=Haswell`` for AVX2) and faiss's own SIMD dispatch to the same level
(``FAISS_SIMD_LEVEL=AVX2``): older-CPU code on this CPU, not the older CPU itself.

Example (the full problem, about 10 minutes on 2 cores, mostly the peers)::

    .venv/bin/python benchmarks/knn.py
    .venv/bin/python benchmarks/knn.py --target avx2
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from cifarlab.data.archive import parse_batch, read_cifar10_archive
from cifarlab.params import DISTANCES

# Set in main(): numba's target may be forced first (--target), so the kernels are imported
# only then.
_kernels = neighbors = None

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
    scipy's newer OpenBLAS pick the same SkylakeX kernels by themselves. (With ``--target``
    the parent has set it to the older CPU's kernels already.)
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


def faiss_simd_level(faiss) -> str:
    try:
        return str(faiss.SIMDConfig.get_level_name())
    except AttributeError:  # a faiss without run-time dispatch
        return "compiled in (" + faiss.get_compile_options().strip() + ")"


def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --target: the peers' code for that older CPU: OpenBLAS's kernels and faiss's SIMD level
# (faiss-cpu wheels dispatch at run time; FAISS_SIMD_LEVEL is read when it loads).
PEER_ENV = {
    "avx2": {"OPENBLAS_CORETYPE": "Haswell", "FAISS_SIMD_LEVEL": "AVX2"},
    "avxvnni": {"OPENBLAS_CORETYPE": "Haswell", "FAISS_SIMD_LEVEL": "AVX2"},
    "sse2": {"OPENBLAS_CORETYPE": "Prescott", "FAISS_SIMD_LEVEL": "NONE"},
}


def run_for_target(target: str) -> None:
    """Rerun this benchmark in a child process compiled for an older CPU (see the module
    docstring); its output is this run's."""
    from cifarlab.knn._kernels import target_env

    env = {**os.environ, **target_env(target), **PEER_ENV[target]}
    argv = [a for a in sys.argv[1:] if a != f"--target={target}"]
    if "--target" in argv:
        i = argv.index("--target")
        del argv[i : i + 2]
    print(f"--target {target}: {target_env(target)['NUMBA_CPU_NAME']} code on this CPU, "
          f"{' '.join(f'{k}={v}' for k, v in PEER_ENV[target].items())}", flush=True)  # fmt: skip
    raise SystemExit(subprocess.call([sys.executable, __file__, *argv], env=env))


def our_runs(distance: str, n_features: int, no_kernels: bool) -> list[tuple[str, str, bool]]:
    """(label, impl, prune) of every path this CPU runs for ``distance``, the default first:
    the SIMD tile paths with and without pruning, the GEMM path, not the plain loops."""
    runs = []
    for impl in neighbors.kernel_paths(distance, n_features):
        if impl == "generic":
            continue
        name = "psadbw" if impl == "simd" else impl
        if impl != "gemm" and _kernels.HAS_PRUNE:
            runs.append((f"ours {distance} {name}, pruned", impl, True))
            if no_kernels:
                continue
        runs.append((f"ours {distance} {name}", impl, False))
    return runs if not no_kernels else runs[:1]


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
        "--pairs",
        type=int,
        default=0,
        help="then time our default L2 path (pruned and not) and faiss IndexFlatL2 in turns",
    )
    parser.add_argument("--pair-queries", type=int, default=2_000, help="queries of --pairs")
    parser.add_argument(
        "--only-default",
        action="store_true",
        help="time only the path each distance takes by default (not every path)",
    )
    parser.add_argument(
        "--target",
        choices=sorted(PEER_ENV),
        help="compile our kernels for this older CPU (in a child process; see above)",
    )
    args = parser.parse_args()
    if args.target:
        run_for_target(args.target)
    global _kernels, neighbors
    from cifarlab.knn import _kernels, neighbors

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

    runs = {d: our_runs(d, X_ref.shape[1], args.only_default) for d in DISTANCES}
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; numba {numba.__version__} compiles for "
          f"{_kernels.TARGET_CPU}, {numba.get_num_threads()} threads")  # fmt: skip
    print(f"kernel paths: L1 {neighbors.kernel_paths('l1', d)} (psadbw {_kernels.SAD_WIDTH} "
          f"bytes wide), L2 {neighbors.kernel_paths('l2', d)}; by default L1 takes "
          f"{neighbors._choose_impl('auto', 'l1', d)!r}, L2 "
          f"{neighbors._choose_impl('auto', 'l2', d)!r}, pruned: {_kernels.HAS_PRUNE}")  # fmt: skip

    # Load the cached kernels (or compile them once) outside the timings.
    start = time.perf_counter()
    for distance in DISTANCES:
        for _, impl, prune in runs[distance]:
            neighbors._kneighbors(X_query[:8], X_ref[:300], 2, distance, impl=impl, prune=prune)
    print(f"kernel load/compile: {time.perf_counter() - start:.2f} s\n")

    check_rows = np.unique(
        np.linspace(0, n_query - 1, min(args.check_queries, n_query)).astype(int)
    )
    results: dict[str, float] = {}
    found: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

    def ours(label: str, distance: str, impl: str, prune: bool, subset: int | None) -> None:
        m = n_query if subset is None else min(subset, n_query)
        seconds, (idx, dist), peak = timed(
            lambda: neighbors._kneighbors(X_query[:m], X_ref, k, distance, impl=impl, prune=prune),
            args.repeats,
        )
        results[label] = seconds * n_query / m
        found[label] = idx, dist, m
        note = f"median of {args.repeats}" + (f", {m} queries extrapolated" if m < n_query else "")
        note += f"; peak traced {peak / 2**20:.0f} MiB; process max RSS {max_rss_mib():.0f} MiB"
        print(f"{label:<34} {results[label]:8.2f} s  ({note})", flush=True)

    for distance in ("l2", "l1"):
        subset = args.l1_query_subset if distance == "l1" else None
        for label, impl, prune in runs[distance]:
            ours(label, distance, impl, prune, subset)

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
        print(f"BLAS kernels loaded: {blas_kernels()}; faiss SIMD level: {faiss_simd_level(faiss)}")

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

        def alternate_l2(pairs: int, m: int, search, k: int) -> None:
            """Our default L2 path (pruned, and its kernel alone) and faiss IndexFlatL2 in
            turns, the order rotating, on m queries: on a shared machine the load drifts, and
            turns put all three under the same drift."""
            faiss_l2 = search(faiss.METRIC_L2)
            runs = {
                "ours pruned": lambda: neighbors._kneighbors(X_query[:m], X_ref, k, "l2"),
                "ours kernel": lambda: neighbors._kneighbors(
                    X_query[:m], X_ref, k, "l2", prune=False
                ),
                "faiss": lambda: faiss_l2(Xq32[:m]),
            }
            names = list(runs)
            times = {name: [] for name in names}
            for i in range(pairs):
                for name in names[i % 3 :] + names[: i % 3]:
                    start = time.perf_counter()
                    runs[name]()
                    times[name].append(time.perf_counter() - start)
                print("  turn " + str(i + 1) + ": " + ", ".join(
                    f"{name} {times[name][-1]:.2f} s" for name in names))  # fmt: skip
            for name in names[:2]:
                ratios = [a / b for a, b in zip(times[name], times["faiss"], strict=True)]
                ours_s = statistics.median(times[name])
                faiss_s = statistics.median(times["faiss"])
                print(f"alternating, {m} queries: {name} median {ours_s:.2f} s, faiss median "
                      f"{faiss_s:.2f} s; median ratio {statistics.median(ratios):.2f} (range "
                      f"{min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip

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

        if args.pairs:
            alternate_l2(args.pairs, min(args.pair_queries, n_query), faiss_search, k)
        print("\nour time / peer time (same arrays, same process):")
        peers_of = {
            "l2": ["faiss IndexFlatL2", "sklearn brute L2"],
            "l1": ["faiss IndexFlat(METRIC_L1)", "sklearn brute L1"],
        }
        for distance in ("l2", "l1"):
            for ours_label, _, _ in runs[distance]:
                ratios = ", ".join(
                    f"{results[ours_label] / results[p]:.2f}x {p}" for p in peers_of[distance]
                )
                print(f"  {ours_label:<34} {ratios}")
        print("(peers get float32 copies made outside their timings; ours reads the uint8)")
    print(f"\nprocess max RSS: {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
