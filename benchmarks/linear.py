"""Benchmark the final linear training against scikit-learn, and the cost of MLflow tracking.

Data: the CIFAR-10 mirror ``../shared/data/cifar-10-mirror/cifar-10-binary.tar.gz`` (relative to
the repository root) split as the pipeline does (``split.val_size`` / ``split.seed`` of
params.yaml: 49,000 train, 1,000 val), or ``--generated`` uint8 data of the same shape. The test
split is never touched: every accuracy printed here is on val.

On the same arrays:

1. scikit-learn's ``SGDClassifier(loss="hinge", max_iter=10)`` (one-vs-all, 10 epochs at most),
   fit on float64 pixels prepared three ways: ``raw`` (0-255, what our model takes),
   ``/255`` (scaled to [0, 1]) and standardised per pixel (``StandardScaler``); only ``fit`` is
   timed.
2. Ours: ``cifarlab.linear.classifier.train_linear`` -- what ``svm_train`` runs, raw uint8 in, mean
   subtraction included -- with the hyperparameters of params.yaml (``svm``) and the ones
   ``svm_tune`` chose (``reports/svm_choice.json``, or ``--learning-rate/--reg/--batch-size``).
   Median of ``--repeats`` runs; once more with the default BLAS threads for comparison.
3. The memory floor of an epoch: the bytes of uint8 training data an epoch reads once
   (n_train x 3,072) divided by the bandwidth a simple streaming read of them reaches here
   (a compiled loop summing the array's 64-bit words, one thread), against our epoch: the
   SGD steps alone, and with the per-epoch train / val accuracies; their ratios. Also the
   compute floor: the epoch's 2 x 10 multiply-adds per byte at the float32 FMA rate one core
   reaches here (a compiled loop of independent FMAs in registers), since an epoch is
   compute-bound, not memory-bound, on these CPUs. And the numpy epoch the step kernel
   replaced (gather, convert, centre, two BLAS products per minibatch), alternating with ours
   on the same data, with the ratio.
4. Tracking overhead: what ``svm_train`` does after loading its data (training, saving the
   model, the two figures) with and without its MLflow run (params, the per-step loss and
   per-epoch accuracies streamed while training, the figures, the pyfunc model) against a
   temporary SQLite store. Each measurement is a fresh Python process, as a stage is, so every
   one-off cost (the tracking worker's start, importing MLflow, its first model save) counts;
   untracked and tracked processes alternate, ``--repeats`` of each. Reported: the difference
   of the medians, the median of the paired differences, the time the stage spends inside its
   tracking calls, and the CPU time of the tracking worker (on the other core).

``--target avx2`` reruns it in a child process whose numba code is compiled for an AVX2 CPU
(``cifarlab.knn._kernels.target_env``; the BLAS of scikit-learn and of the accuracies held to
its Haswell kernels): AVX2 code on this CPU, not an AVX2 CPU.

Example (about 4 minutes on 2 cores)::

    .venv/bin/python benchmarks/linear.py
    .venv/bin/python benchmarks/linear.py --loss softmax
    .venv/bin/python benchmarks/linear.py --epoch-only --target avx2
    .venv/bin/python benchmarks/linear.py --tracking-only --repeats 9
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "cifar-10-mirror" / "cifar-10-binary.tar.gz"


def load_data(generated: bool, seed: int = 0):
    """(train, val, class_names, source); the splits are cifarlab.data.prepared.Split of uint8."""
    from cifarlab.data.prepared import Split
    from cifarlab.data.split import make_splits
    from cifarlab.params import load_params

    split = load_params(REPO / "params.yaml")["split"]
    val_size, split_seed = split["val_size"], split["seed"]
    if not generated and MIRROR.exists():
        from cifarlab.data.archive import read_cifar10_archive

        archive = read_cifar10_archive(MIRROR)
        splits, _ = make_splits(archive, val_size, split_seed)
        return splits["train"], splits["val"], list(archive.class_names), str(MIRROR)
    # Same shape as CIFAR-10's training batches: class-dependent mean images plus noise.
    rng = np.random.default_rng(seed)
    n, d = 50_000, 3072
    y = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(y)
    centres = rng.integers(60, 196, size=(10, d))
    X = np.clip(centres[y] + rng.normal(0, 60, size=(n, d)), 0, 255).astype(np.uint8)
    val = int(val_size) if val_size >= 1 else int(round(val_size * n))
    names = [f"class{i}" for i in range(10)]
    return Split(X[val:], y[val:]), Split(X[:val], y[:val]), names, "generated"


def hyperparameters(args) -> dict:
    from cifarlab.params import linear_hyperparameters, load_params

    hyper = linear_hyperparameters(load_params(REPO / "params.yaml")["svm"])
    if args.loss:
        hyper["loss"] = args.loss
    choice_file = REPO / "reports" / "svm_choice.json"
    choice = json.loads(choice_file.read_text()) if choice_file.exists() else {}
    for key in ("learning_rate", "reg", "batch_size"):
        value = getattr(args, key)
        if value is None:
            value = choice.get(key)
        if value is None:
            raise SystemExit(f"no {key}: run svm_tune (reports/svm_choice.json) or pass --{key}")
        hyper[key] = int(value) if key == "batch_size" else float(value)
    return hyper


def run_sklearn(train, val, preprocess: str) -> tuple[float, float, int]:
    """(fit seconds, val accuracy, epochs run) of SGDClassifier(loss="hinge", max_iter=10)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    X, X_val = train.X.astype(np.float64), val.X.astype(np.float64)
    if preprocess == "/255":
        X /= 255.0
        X_val /= 255.0
    elif preprocess == "standardised":
        scaler = StandardScaler().fit(X)
        X, X_val = scaler.transform(X), scaler.transform(X_val)
    clf = SGDClassifier(loss="hinge", max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X, train.y)
        seconds = time.perf_counter() - start
    return seconds, float(clf.score(X_val, val.y)), int(clf.n_iter_)


def train_untracked(train, val, hyper):
    from cifarlab.linear.classifier import train_linear

    start = time.perf_counter()
    model, summary = train_linear(train, val, hyper)
    return time.perf_counter() - start, model, summary


def svm_train_work(load_data, hyper, workdir: Path, tracked: bool) -> dict:
    """What the svm_train stage does, with or without its MLflow run: open the run, load the
    data (``load_data() -> (train, val, class_names)``), train, save, plot, log.

    Returns the wall time of it all (``seconds``) and, when tracked, the time the stage spent
    in its tracking calls: starting the run (the worker process), the per-epoch sends, the
    final logging calls, and waiting at the end for the worker to finish storing; plus the CPU
    time of the worker process (on another core).
    """
    from cifarlab.linear.classifier import save_linear_model, train_linear
    from cifarlab.linear.plots import templates_figure, training_figure
    from cifarlab.plots import save_figure

    parts = dict.fromkeys(("start run", "per-epoch sends", "logging calls", "wait for worker"), 0.0)
    start = time.perf_counter()
    if tracked:
        from cifarlab import tracking

        stage = tracking.stage_run(
            "svm_train", {"svm": hyper}, experiment="benchmark", will_log_model=True
        )
    else:
        stage = contextlib.nullcontext()
    with stage as run:
        parts["start run"] = time.perf_counter() - start
        train, val, class_names = load_data()
        epoch_logger = run.epoch_logger() if tracked else contextlib.nullcontext(None)
        with epoch_logger as log_epoch:
            if log_epoch is not None:
                send = log_epoch

                def log_epoch(*args):
                    t = time.perf_counter()
                    send(*args)
                    parts["per-epoch sends"] += time.perf_counter() - t

            model, summary = train_linear(train, val, hyper, on_epoch_end=log_epoch)
        save_linear_model(workdir / "svm.npz", model)
        if tracked:  # as svm_train: the worker stores the model while the figures render
            t = time.perf_counter()
            run.log_linear_model(workdir / "svm.npz", input_example=val.X[:2])
            parts["logging calls"] += time.perf_counter() - t
        figure = training_figure(
            model.loss_history_,
            model.train_accuracy_history_,
            model.val_accuracy_history_,
            best_epoch=model.best_epoch_,
        )
        save_figure(figure, str(workdir / "svm_loss.png"))
        save_figure(templates_figure(model.W_, class_names), str(workdir / "svm_templates.png"))
        if tracked:
            t = time.perf_counter()
            run.log_metrics({f"model_{k}": summary[k] for k in ("train_accuracy", "val_accuracy")})
            run.log_artifact(workdir / "svm_loss.png")
            run.log_artifact(workdir / "svm_templates.png")
            parts["logging calls"] += time.perf_counter() - t
        end = time.perf_counter()
    parts["wait for worker"] = time.perf_counter() - end
    seconds = time.perf_counter() - start
    worker = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {"seconds": seconds, "val_accuracy": summary["val_accuracy"]}
    if tracked:
        result.update(parts=parts, worker_cpu=worker.ru_utime + worker.ru_stime)
    return result


def stage_process(data_file: Path, hyper: dict, tracked: bool, workdir: Path) -> dict:
    """Run :func:`svm_train_work` in a fresh Python process, as a stage runs: one-off costs
    (imports, MLflow's first model save) are paid every time."""
    proc = subprocess.run(
        [sys.executable, __file__, "--stage-child", str(data_file), json.dumps(hyper),
         "on" if tracked else "off", str(workdir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"stage process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stage_child(argv: list[str]) -> None:
    data_file, hyper, mode, workdir = argv
    sys.path.insert(0, str(REPO / "src"))
    from cifarlab.data.prepared import Split

    def load_data():
        with np.load(data_file) as data:
            train = Split(data["X_train"], data["y_train"])
            val = Split(data["X_val"], data["y_val"])
            return train, val, [str(n) for n in data["names"]]

    result = svm_train_work(load_data, json.loads(hyper), Path(workdir), mode == "on")
    print(json.dumps(result))


def tracking_overhead(train, val, hyper, class_names, repeats: int) -> None:
    """Alternate untracked and tracked stage processes against a temporary SQLite store."""
    with tempfile.TemporaryDirectory(prefix="cifarlab-bench-") as tmp:
        tmp = Path(tmp)
        data_file = tmp / "data.npz"
        np.savez(data_file, X_train=train.X, y_train=train.y, X_val=val.X, y_val=val.y,
                 names=np.array(class_names))  # fmt: skip
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        off, on = [], []
        for i in range(repeats):
            # Alternate which goes first (ABBA), so that drifts in the machine's speed cancel.
            for tracked in (False, True) if i % 2 == 0 else (True, False):
                (on if tracked else off).append(stage_process(data_file, hyper, tracked, tmp))
            print(f"  stage untracked {off[-1]['seconds']:.2f} s, "
                  f"tracked {on[-1]['seconds']:.2f} s", flush=True)  # fmt: skip
    off_median = statistics.median(r["seconds"] for r in off)
    on_median = statistics.median(r["seconds"] for r in on)
    overhead = on_median - off_median
    paired = statistics.median(b["seconds"] - a["seconds"] for a, b in zip(off, on, strict=True))
    print(f"\ntracking, svm_train's work in fresh processes, untracked / tracked (medians of "
          f"{repeats}): {off_median:.2f} s / {on_median:.2f} s: {overhead:+.2f} s = "
          f"{100 * overhead / off_median:+.1f} % of the stage's time; median of the paired "
          f"differences {paired:+.2f} s = {100 * paired / off_median:+.1f} %")  # fmt: skip
    print("time the stage spent in tracking calls (medians):")
    for name in on[0]["parts"]:
        seconds = statistics.median(r["parts"][name] for r in on)
        print(f"  {name}: {seconds:.3f} s ({100 * seconds / off_median:.1f} %)")
    inside = statistics.median(sum(r["parts"].values()) for r in on)
    print(f"  all: {inside:.3f} s ({100 * inside / off_median:.1f} %)")
    worker_cpu = statistics.median(r["worker_cpu"] for r in on)
    print(f"CPU time of the tracking worker (importing MLflow, storing, on the other core): "
          f"{worker_cpu:.2f} s")  # fmt: skip


def streaming_read_bandwidth(X: np.ndarray, repeats: int = 9) -> tuple[float, float]:
    """(bytes per second, seconds): the median of ``repeats`` single-threaded passes that
    read every byte of ``X`` once (summing it as 64-bit words: LLVM vectorises the loop, so
    the pass runs at what the memory delivers to one core)."""
    from numba import njit

    @njit(cache=False)
    def read_all(words):
        s = np.uint64(0)
        for i in range(words.size):
            s += words[i]
        return s

    words = np.ascontiguousarray(X).reshape(-1)
    words = words[: words.size // 8 * 8].view(np.uint64)
    read_all(words[:64])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read_all(words)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return words.nbytes / seconds, seconds


def fma_rate(seconds: float = 0.5) -> float:
    """float32 multiply-adds per second one core reaches: 12 independent chains of vector
    FMAs (``llvm.fma`` on the widest vectors numba's target has) in registers, timed by the
    thread's CPU time."""
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from cifarlab.knn import _kernels

    lanes = 16 if "avx512f" in _kernels._FEATURES else 8
    vec = ir.VectorType(ir.FloatType(), lanes)

    @intrinsic
    def fma_chains(typingctx, n):
        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{lanes}f32"
            )
            a = ir.Constant(vec, [0.999] * lanes)
            b = ir.Constant(vec, [1e-3] * lanes)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vec, [float(i)] * lanes))
                    for i in range(12)]  # fmt: skip
            with cgutils.for_range(builder, args[0]):
                for p in accs:
                    builder.store(builder.call(fn, [builder.load(p), a, b]), p)
            total = builder.load(accs[0])
            for p in accs[1:]:
                total = builder.fadd(total, builder.load(p))
            return builder.extract_element(total, ir.Constant(ir.IntType(32), 0))

        return types.float32(n), codegen

    @njit(cache=False)
    def run(n):
        return fma_chains(n)

    run(10)
    n = 100_000
    while True:
        start = time.thread_time()
        run(n)
        elapsed = time.thread_time() - start
        if elapsed > seconds:
            return n * 12 * lanes / elapsed
        n *= 4


def numpy_epoch(X, y, X_val, y_val, hyper, rng) -> tuple[float, float]:
    """One epoch as cifarlab.linear.sgd ran it before the step kernel, on the same data: each
    minibatch gathered, converted to float32 and centred by numpy, then ``losses._loss_grad``
    (two skinny BLAS products) and the update; then the epoch's two accuracies (BLAS, in
    chunks). Returns (seconds of the steps, seconds of the accuracies)."""
    from cifarlab.linear.losses import _loss_grad
    from cifarlab.linear.sgd import _accuracy

    n, d = X.shape
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    W = (1e-3 * rng.standard_normal((d, int(y.max()) + 1))).astype(np.float32)
    b = np.zeros(W.shape[1], np.float32)
    lr, batch = hyper["learning_rate"], hyper["batch_size"]
    objective = (hyper["loss"], hyper["reg"], hyper["reg_type"], hyper["l1_ratio"], hyper["delta"])
    order = rng.permutation(n)
    start = time.perf_counter()
    for i in range(0, n, batch):
        idx = order[i : i + batch]
        Xb = X[idx].astype(np.float32)
        Xb -= mean
        _, dW, db = _loss_grad(W, b, Xb, y[idx], *objective)
        W -= lr * dW
        b -= lr * db
    steps = time.perf_counter() - start
    rows = hyper.get("train_eval_size") or n
    start = time.perf_counter()
    _accuracy(X[:rows], y[:rows], W, b, mean)
    _accuracy(X_val, y_val, W, b, mean)
    return steps, time.perf_counter() - start


def epoch_floor(train, val, hyper, repeats: int) -> None:
    """The memory floor of an epoch against our epoch and the numpy epoch it replaced (see the
    module docstring, item 3). Ours and the numpy epoch alternate, ``repeats`` turns each, so
    that both see the same load; medians are reported."""
    from cifarlab.linear import _sgd_kernels
    from cifarlab.linear.classifier import LinearClassifier
    from cifarlab.linear.sgd import _kernel_accuracy, single_blas_thread

    bandwidth, read_seconds = streaming_read_bandwidth(train.X)
    n, d = train.X.shape
    floor = n * d / bandwidth
    flops = fma_rate()
    n_classes = int(train.y.max()) + 1
    compute_floor = 2 * n * d * n_classes / flops
    print(f"epoch floor: {n:,} x {d:,} uint8 = {n * d / 1e6:.1f} MB per epoch; a streaming "
          f"read of them reaches {bandwidth / 1e9:.1f} GB/s (one thread, {read_seconds * 1e3:.1f}"
          f" ms): memory floor {floor * 1e3:.1f} ms per epoch")  # fmt: skip
    print(f"compute: {2 * n_classes} multiply-adds per byte (scores and gradient); one core's "
          f"float32 FMA rate here {flops / 1e9:.1f} G/s: compute floor "
          f"{compute_floor * 1e3:.1f} ms per epoch")  # fmt: skip
    stamps: list[float] = []
    epochs = max(3, int(hyper["epochs"]))
    model = LinearClassifier(**{**hyper, "epochs": epochs})
    epoch_times, eval_times, old_steps, old_evals = [], [], [], []
    rows = hyper.get("train_eval_size") or n
    rng = np.random.default_rng(0)

    def ours() -> None:
        stamps.clear()
        start = time.perf_counter()
        model.fit(train.X, train.y, val.X, val.y,
                  on_epoch_end=lambda *a: stamps.append(time.perf_counter()))  # fmt: skip
        epoch_times.extend(np.diff([start, *stamps])[1:])  # the first epoch also draws W
        # The accuracies of an epoch, alone: the same calls on the fitted weights.
        Wt = np.ascontiguousarray(model.W_.T)
        buffers = _sgd_kernels.scratch(Wt.shape[0], d, Wt.dtype)
        t = time.perf_counter()
        for X, y in ((train.X[:rows], train.y[:rows]), (val.X, val.y)):
            _kernel_accuracy(X, y, Wt, model.b_, model.mean_, buffers)
        eval_times.append(time.perf_counter() - t)

    def numpy_loop() -> None:
        steps, evals = numpy_epoch(train.X, train.y, val.X, val.y, hyper, rng)
        old_steps.append(steps)
        old_evals.append(evals)

    with single_blas_thread():
        model.fit(train.X[:2000], train.y[:2000])  # compile / load the kernels
        for turn in range(repeats):
            for run in (ours, numpy_loop) if turn % 2 == 0 else (numpy_loop, ours):
                run()
    epoch = float(np.median(epoch_times))
    scoring = float(np.median(eval_times))
    steps = epoch - scoring
    old_step = float(np.median(old_steps))
    old_epoch = old_step + float(np.median(old_evals))
    print(
        f"ours ({_sgd_kernels.__name__}, one thread, batch {hyper['batch_size']}, "
        f"{hyper['loss']}): epoch {epoch * 1e3:.1f} ms = SGD steps {steps * 1e3:.1f} ms + "
        f"accuracies {scoring * 1e3:.1f} ms (median of {len(epoch_times)} epochs, {repeats} fits)"
    )
    print(f"the numpy loop it replaced (same data, alternating with ours, one BLAS thread): "
          f"epoch {old_epoch * 1e3:.1f} ms = steps {old_step * 1e3:.1f} ms + accuracies "
          f"{(old_epoch - old_step) * 1e3:.1f} ms (medians of {repeats})")  # fmt: skip
    print(f"ratio to the memory floor: steps {steps / floor:.1f}x, epoch {epoch / floor:.1f}x; "
          f"to the compute floor: steps {steps / compute_floor:.2f}x, epoch "
          f"{epoch / compute_floor:.2f}x; numpy loop / ours: steps {old_step / steps:.2f}x, "
          f"epoch {old_epoch / epoch:.2f}x\n", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generated", action="store_true", help="skip the mirror")
    parser.add_argument("--loss", choices=("hinge", "softmax"), help="default: params.yaml")
    parser.add_argument("--learning-rate", dest="learning_rate", type=float)
    parser.add_argument("--reg", type=float)
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--tracking-only", action="store_true", help="only the tracking overhead")
    parser.add_argument("--epoch-only", action="store_true", help="only the epoch floor (item 3)")
    parser.add_argument(
        "--target", choices=("avx2", "sse2"), help="our kernels compiled for this older CPU"
    )
    args = parser.parse_args()
    if args.target:
        sys.path.insert(0, str(REPO / "src"))
        from cifarlab.knn._kernels import target_env

        env = {**os.environ, **target_env(args.target),
               "OPENBLAS_CORETYPE": "Haswell" if args.target == "avx2" else "Prescott"}  # fmt: skip
        argv = [a for a in sys.argv[1:] if a not in ("--target", args.target)]
        print(f"--target {args.target}: {env['NUMBA_CPU_NAME']} code on this CPU", flush=True)
        raise SystemExit(subprocess.call([sys.executable, __file__, *argv], env=env))

    sys.path.insert(0, str(REPO / "src"))
    hyper = hyperparameters(args)
    train, val, class_names, source = load_data(args.generated)
    print(f"data: {source}; train {train.X.shape}, val {val.X.shape} (test split not used)")
    print(f"ours: {json.dumps(hyper, sort_keys=True)}\n", flush=True)

    if args.tracking_only:
        tracking_overhead(train, val, hyper, class_names, args.repeats)
        return
    epoch_floor(train, val, hyper, args.repeats)
    if args.epoch_only:
        return
    rows = []
    if not args.skip_sklearn:
        for preprocess in ("raw", "/255", "standardised"):
            seconds, acc, epochs = run_sklearn(train, val, preprocess)
            rows.append((f"sklearn SGDClassifier hinge, {preprocess}", seconds, acc, epochs))
            print(f"  {rows[-1][0]}: {seconds:.2f} s, val {acc:.4f}", flush=True)

    times, summary = [], None
    for _ in range(args.repeats):
        seconds, model, summary = train_untracked(train, val, hyper)
        times.append(seconds)
        print(f"  ours: {seconds:.2f} s, val {summary['val_accuracy']:.4f}", flush=True)
    ours = statistics.median(times)
    rows.append((f"ours, {hyper['loss']} (median of {len(times)})", ours,
                 summary["val_accuracy"], summary["epochs_run"]))  # fmt: skip

    from threadpoolctl import threadpool_limits

    from cifarlab.linear.classifier import LinearClassifier

    with threadpool_limits(limits=os.cpu_count(), user_api="blas"):
        start = time.perf_counter()
        multi = LinearClassifier(**hyper).fit(train.X, train.y, val.X, val.y)
        multi_seconds = time.perf_counter() - start
    multi_val = float(multi.val_accuracy_history_[multi.best_epoch_])
    rows.append((f"ours, {os.cpu_count()} BLAS threads", multi_seconds, multi_val, multi.n_epochs_))

    print("\n| run | fit time (s) | val accuracy | epochs |")
    print("|---|---:|---:|---:|")
    for name, seconds, acc, epochs in rows:
        print(f"| {name} | {seconds:.2f} | {acc:.4f} | {epochs} |")
    for name, seconds, acc, _ in rows:
        if name.startswith("sklearn"):
            print(f"ours / {name}: time ratio {ours / seconds:.2f}, "
                  f"val accuracy {100 * (summary['val_accuracy'] - acc):+.1f} points")  # fmt: skip

    # --- tracking overhead ------------------------------------------------------------
    tracking_overhead(train, val, hyper, class_names, args.repeats)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--stage-child":
        stage_child(sys.argv[2:])
    else:
        main()
