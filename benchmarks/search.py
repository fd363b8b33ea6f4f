"""Benchmark svm_tune's search: the hand-written default before Optuna (24 random trials, every
one trained all its epochs) against the new defaults of params.yaml, side by side in one run.

Data: the CIFAR-10 mirror ``../shared/data/cifar-10-mirror/cifar-10-binary.tar.gz`` (relative to
the repository root), split as the pipeline does (49,000 train, 1,000 val), then 10,000 images
held out of train as "dev" (the README's "Defaults, and how they were chosen" method): each
search fits on the other 39,000, selects on val, and its chosen trial, retrained as
``svm_train`` does, is scored on dev. The test split is never read.

Each search runs exactly as the stage runs it: a fresh study (in a temporary SQLite file),
``resources.n_jobs`` worker processes with one BLAS thread each. Reported per search: wall time
(median of ``--repeats``, searches alternating ABBA so drift hits both alike), trials completed
and pruned, the epochs trained in all, the chosen trial, its val and dev accuracy; then the
wall-time ratio.

Example (about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/search.py
    .venv/bin/python benchmarks/search.py --search tpe-median=sampler:tpe --repeats 2
    .venv/bin/python benchmarks/search.py --seeds 0-15     # about 15 minutes
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "cifar-10-mirror" / "cifar-10-binary.tar.gz"
DEV_SIZE = 10_000
#: The search svm_tune ran before Optuna: 24 random trials, no pruning.
BEFORE = {"sampler": "random", "pruner": "none", "n_trials": 24}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            flags = Path("/proc/cpuinfo").read_text()
            simd = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "-"
            return f"{line.split(':', 1)[1].strip()} ({simd})"
    return platform.processor() or "unknown CPU"


def load(archive_path: Path, seed: int = 0):
    """(fit, val, dev) Splits: the pipeline's train split less a seeded dev set, and its val."""
    from cifarlab.data.archive import read_cifar10_archive
    from cifarlab.data.prepared import Split
    from cifarlab.data.split import make_splits
    from cifarlab.params import load_params

    split = load_params(REPO / "params.yaml")["split"]
    splits, _ = make_splits(read_cifar10_archive(archive_path), split["val_size"], split["seed"])
    train = splits["train"]
    order = np.random.default_rng(seed).permutation(len(train.y))
    dev, fit = order[:DEV_SIZE], np.sort(order[DEV_SIZE:])
    return Split(train.X[fit], train.y[fit]), splits["val"], Split(train.X[dev], train.y[dev])


def run_search(name, settings, base, fit, val, dev, n_jobs):
    from cifarlab.linear.classifier import train_linear
    from cifarlab.linear.search import linear_search

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        table, best, _ = linear_search(
            fit, val, base, settings, n_jobs=n_jobs, storage_url=f"sqlite:///{tmp}/optuna.db",
            description={"experiment": f"benchmark {name}", "md5": {}},
        )  # fmt: skip
        seconds = time.perf_counter() - started
    chosen = {k: best[k] for k in ("learning_rate", "reg", "batch_size")}
    model, _ = train_linear(fit, val, {**base, **chosen})
    return {
        "seconds": seconds,
        "complete": int((table["state"] == "COMPLETE").sum()),
        "pruned": int((table["state"] == "PRUNED").sum()),
        "epochs": int(table["epochs_run"].sum()),
        "chosen": f"trial {best['trial']}: lr {chosen['learning_rate']:.3g}, "
        f"reg {chosen['reg']:.3g}, batch {chosen['batch_size']}",
        "val": best["val_accuracy"],
        "dev": float(model.score(dev.X, dev.y)),
    }


def parse_search(text: str, defaults: dict) -> tuple[str, dict]:
    """``name=key:value,key:value`` over the params.yaml svm_tune section."""
    name, _, spec = text.partition("=")
    settings = dict(defaults)
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        settings[key] = int(value) if value.isdigit() else value
    return name, settings


def main() -> None:
    from cifarlab.params import SECTIONS, check_values, linear_hyperparameters, load_params

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=MIRROR)
    parser.add_argument("--loss", choices=("hinge", "softmax"), help="default: params.yaml")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each search (ABBA)")
    parser.add_argument("--seeds", type=parse_seeds,
                        help="search seeds, e.g. 0-15 (default: params.yaml's svm_tune.seed): "
                             "the choice between near-equal trials differs by seed")
    parser.add_argument("--search", action="append", default=[],
                        help="more searches: name=key:value,... over params.yaml's svm_tune")
    args = parser.parse_args()
    if not args.archive.exists():
        sys.exit(f"{args.archive} not found: pass --archive (the CIFAR-10 binary archive)")

    params = load_params(REPO / "params.yaml")
    base = linear_hyperparameters(params["svm"])
    if args.loss:
        base["loss"] = args.loss
    tune, n_jobs = params["svm_tune"], params["resources"]["n_jobs"]
    searches = [("before (random 24, no pruning)", {**tune, **BEFORE}),
                (f"now ({tune['sampler']}, {tune['pruner']} pruner)", dict(tune))]  # fmt: skip
    searches += [parse_search(text, tune) for text in args.search]
    for name, settings in searches:
        check_values(SECTIONS["svm_tune"], settings, f"{name}: ")

    print(f"CPU: {cpu_name()}, {n_jobs} search workers; loss {base['loss']}, "
          f"{base['epochs']} epochs", flush=True)  # fmt: skip
    fit, val, dev = load(args.archive)
    print(f"data: {len(fit.y)} fit / {len(val.y)} val / {len(dev.y)} dev images", flush=True)
    seeds = args.seeds or [tune["seed"]]
    results: dict[tuple[int, str], list[dict]] = {}
    for seed in seeds:
        for repeat in range(args.repeats):
            order = searches if repeat % 2 == 0 else searches[::-1]  # ABBA
            for name, settings in order:
                result = run_search(name, {**settings, "seed": seed}, base, fit, val, dev, n_jobs)
                results.setdefault((seed, name), []).append(result)
                print(f"  seed {seed}, {name}: {result['seconds']:.1f} s, {result['complete']} "
                      f"complete / {result['pruned']} pruned, dev {result['dev']:.4f}", flush=True)

    print("\n| seed | search | wall time (median) | trials complete / pruned | epochs trained "
          "| chosen | val | dev |")
    print("|---:|---|---:|---:|---:|---|---:|---:|")
    medians = {}
    for (seed, name), runs in results.items():
        medians[seed, name] = statistics.median(r["seconds"] for r in runs)
        last = runs[-1]
        print(f"| {seed} | {name} | {medians[seed, name]:.1f} s | {last['complete']} / "
              f"{last['pruned']} | {last['epochs']} | {last['chosen']} | {last['val']:.3f} | "
              f"{last['dev']:.4f} |")
    first = searches[0][0]
    for name, _ in searches[1:]:
        ratios = [medians[seed, name] / medians[seed, first] for seed in seeds]
        gains = [results[seed, name][-1]["dev"] - results[seed, first][-1]["dev"] for seed in seeds]
        print(f"\n{name}: {statistics.median(ratios):.2f}x the wall time of {first}"
              + (f" (median of {len(seeds)} seeds, {min(ratios):.2f}-{max(ratios):.2f})"
                 if len(seeds) > 1 else ""))
        if len(seeds) > 1:
            mean_gain = 100 * statistics.mean(gains)
            print(f"  dev accuracy of its choice minus {first}'s: mean {mean_gain:+.2f} points,"
                  f" at least as accurate with {sum(g >= 0 for g in gains)} of {len(seeds)} "
                  f"seeds, worst {100 * min(gains):+.2f}")


def parse_seeds(text: str) -> list[int]:
    """``0-15`` or ``0,3,7``: the search seeds (svm_tune.seed) to run each search with."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


if __name__ == "__main__":
    main()
