"""The knn_cv stage's wall time against the raw distance computations it needs.

Runs, in one go on the same machine: (1) the raw work — for every distance and every fold, one
exact ``kneighbors`` of the fold against the rest with k = max(k_choices); (2) the whole stage,
``python stages/knn_cv.py`` as DVC runs it (start-up, loading, every k scored, reports, plots,
MLflow child runs). Prints both and their ratio. Needs a project where ``prepare`` has run
(``--project``, default this repository), e.g. after ``make repro DATA_URL=… DATA_MD5=…``.

    .venv/bin/python benchmarks/knn_cv.py --project /path/to/project
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cifarlab.data.prepared import load_split
from cifarlab.data.split import stratified_folds
from cifarlab.knn.neighbors import kneighbors
from cifarlab.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    root = args.project.resolve()
    params = load_params(root / "params.yaml")
    knn = params["knn"]
    k_max = max(knn["k_choices"])
    distances = knn["distances"]
    n_folds = knn["folds"]
    budget = params["resources"]["memory_budget_mb"] << 20
    if knn["train_size"] is not None:
        sys.exit("set knn.train_size: null (the default) to measure the full problem")

    train = load_split(root / "data/prepared/train.npz")
    fold_ids = stratified_folds(train.y, n_folds, np.random.default_rng(knn["seed"]))
    kneighbors(train.X[:8], train.X[:64], 4, distances[0])  # compile outside the timing
    started = time.perf_counter()
    for distance in distances:
        for fold in range(n_folds):
            held_out = fold_ids == fold
            kneighbors(train.X[held_out], train.X[~held_out], k_max, distance,
                       memory_budget_bytes=budget)
    raw = time.perf_counter() - started
    print(f"raw distance computations ({len(distances)} distances x {n_folds} folds, "
          f"{len(train.y):,} images, k={k_max}): {raw:.1f} s")

    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "stages/knn_cv.py"], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = time.perf_counter() - started
    print(f"knn_cv stage, whole process: {stage:.1f} s")
    print(f"ratio stage / raw: {stage / raw:.2f} (goal: <= 1.3)")


if __name__ == "__main__":
    main()
