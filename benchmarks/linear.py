"""Benchmark the final linear training against scikit-learn, and the cost of MLflow tracking.

Data: the CIFAR-10 mirror ``../shared/data/cifar-10-mirror/cifar-10-binary.tar.gz`` (relative to
the repository root) split as the pipeline does (``split.val_size`` / ``split.seed`` of
params.yaml: 49,000 train, 1,000 val), or ``--generated`` uint8 data of the same shape. The test
split is never touched: every accuracy printed here is on val.

In one process, on the same arrays:

1. scikit-learn's ``SGDClassifier(loss="hinge", max_iter=10)`` (one-vs-all, 10 epochs at most),
   fit on float64 pixels prepared two ways: ``/255`` (raw pixels scaled to [0, 1]) and
   standardised per pixel (``StandardScaler``); only ``fit`` is timed.
2. Ours: ``cifarlab.pipeline.train_linear`` -- what ``svm_train`` runs, raw uint8 in, mean
   subtraction included -- with the hyperparameters of params.yaml (``svm``) and the ones
   ``svm_tune`` chose (``reports/svm_choice.json``, or ``--learning-rate/--reg/--batch-size``).
   Median of ``--repeats`` runs; once more with the default BLAS threads for comparison.
3. Tracking overhead: the same training inside an MLflow stage run with everything
   ``svm_train`` logs (params, the per-step loss and per-epoch accuracies streamed while
   training, the two figures, the pyfunc model) against a temporary SQLite store, alternated
   with untracked runs; reported as the difference of the medians, and as the time spent inside
   the tracking calls of the first tracked run (a stage process logs once, so MLflow's one-off
   package scan on its first pyfunc save counts). ``import mlflow`` (once per process) is timed
   on its own and reported separately.

Example (about 3 minutes on 2 cores, mostly scikit-learn)::

    .venv/bin/python benchmarks/linear.py
    .venv/bin/python benchmarks/linear.py --loss softmax
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "cifar-10-mirror" / "cifar-10-binary.tar.gz"


def load_data(generated: bool, seed: int = 0):
    """(train, val, class_names, source); the splits are cifarlab.pipeline.Split of uint8."""
    from cifarlab.params import load_params
    from cifarlab.pipeline import Split, make_splits

    split = load_params(REPO / "params.yaml")["split"]
    val_size, split_seed = split.number("val_size"), split.int("seed")
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
    else:
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
    from cifarlab.pipeline import train_linear

    start = time.perf_counter()
    model, summary = train_linear(train, val, hyper)
    return time.perf_counter() - start, model, summary


def train_tracked(train, val, hyper, class_names, workdir: Path):
    """svm_train's training and logging, against the store of MLFLOW_TRACKING_URI.

    Returns (seconds, {part: seconds}): the wall time of training plus tracking, and the time
    spent in each tracking call. The figures and files the stage writes whether or not it is
    tracked are made too but not counted.
    """
    from cifarlab import tracking
    from cifarlab.pipeline import save_linear_model, train_linear
    from cifarlab.plots import save_figure, templates_figure, training_figure

    parts = dict.fromkeys(("open run", "per-epoch curves", "metrics, figures", "pyfunc model",
                           "end run"), 0.0)  # fmt: skip
    start = time.perf_counter()
    with tracking.stage_run("svm_train", {"svm": hyper}, experiment="benchmark") as run:
        parts["open run"] = time.perf_counter() - start
        with run.epoch_logger() as log_epoch:

            def timed_log_epoch(*args):
                t = time.perf_counter()
                log_epoch(*args)
                parts["per-epoch curves"] += time.perf_counter() - t

            model, summary = train_linear(train, val, hyper, on_epoch_end=timed_log_epoch)
        untimed = time.perf_counter()
        save_linear_model(workdir / "svm.npz", model)
        figure = training_figure(
            model.loss_history_,
            model.train_accuracy_history_,
            model.val_accuracy_history_,
            best_epoch=model.best_epoch_,
        )
        save_figure(figure, str(workdir / "svm_loss.png"))
        save_figure(templates_figure(model.W_, class_names), str(workdir / "svm_templates.png"))
        not_tracking = time.perf_counter() - untimed
        t = time.perf_counter()
        run.log_metrics({f"model_{k}": summary[k] for k in ("train_accuracy", "val_accuracy")})
        run.log_artifact(workdir / "svm_loss.png")
        run.log_artifact(workdir / "svm_templates.png")
        parts["metrics, figures"] = time.perf_counter() - t
        t = time.perf_counter()
        run.log_linear_model(workdir / "svm.npz", input_example=val.X[:2])
        parts["pyfunc model"] = time.perf_counter() - t
        end = time.perf_counter()
    parts["end run"] = time.perf_counter() - end
    return time.perf_counter() - start - not_tracking, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generated", action="store_true", help="skip the mirror")
    parser.add_argument("--loss", choices=("hinge", "softmax"), help="default: params.yaml")
    parser.add_argument("--learning-rate", dest="learning_rate", type=float)
    parser.add_argument("--reg", type=float)
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    hyper = hyperparameters(args)
    train, val, class_names, source = load_data(args.generated)
    print(f"data: {source}; train {train.X.shape}, val {val.X.shape} (test split not used)")
    print(f"ours: {json.dumps(hyper, sort_keys=True)}\n", flush=True)

    rows = []
    if not args.skip_sklearn:
        for preprocess in ("/255", "standardised"):
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

    from cifarlab.linear import LinearClassifier

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

    # --- tracking overhead -----------------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="cifarlab-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        start = time.perf_counter()
        import mlflow  # noqa: F401  (timed: what a stage process pays once)

        import_seconds = time.perf_counter() - start
        from cifarlab import tracking

        with tracking.stage_run("svm_train", {}, experiment="benchmark"):
            pass  # creates the store's tables (once per store) outside the measurement
        on, off, calls = [], [], []
        for _ in range(args.repeats):
            off.append(train_untracked(train, val, hyper)[0])
            seconds, parts = train_tracked(train, val, hyper, class_names, tmp)
            on.append(seconds)
            calls.append(parts)
    on_median, off_median = statistics.median(on), statistics.median(off)
    overhead = on_median - off_median
    print(f"\ntracking, same training untracked / tracked (medians of {args.repeats}): "
          f"{off_median:.2f} s / {on_median:.2f} s: {overhead:+.2f} s = "
          f"{100 * overhead / off_median:+.1f} % of training time")  # fmt: skip
    # A stage process logs once: its first calls (MLflow's package scan when saving the first
    # pyfunc model, ~0.4 s) are what it pays, so the first tracked run is the one reported.
    first = calls[0]
    total = sum(first.values())
    print(f"time inside the tracking calls, first tracked run of this process: {total:.2f} s = "
          f"{100 * total / off_median:.1f} % of training time")  # fmt: skip
    for name, seconds in first.items():
        later = statistics.median(p[name] for p in calls[1:]) if len(calls) > 1 else seconds
        print(f"  {name}: {seconds:.3f} s ({100 * seconds / off_median:.1f} %); "
              f"later runs {later:.3f} s")  # fmt: skip
    print(f"`import mlflow`, once per stage process: {import_seconds:.2f} s "
          f"({100 * import_seconds / off_median:.1f} %)")  # fmt: skip


if __name__ == "__main__":
    main()
