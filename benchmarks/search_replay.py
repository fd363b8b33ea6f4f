"""Replay svm_tune's pruning rules on full learning curves, over many search seeds: how many
epochs each rule trains, and how its choice compares on dev with the unpruned search's.

With the ``random`` sampler the trials are fixed up front and the percentile rule is decided in
queue order, so what a pruned search does is a function of the trials' full curves alone. This
trains each seed's trials all their epochs once (about 30 s per seed on 2 cores; kept in
``--curves`` for the next run), then replays each rule in queue order through the pruner the
stage builds (``cifarlab.tuning.strategies.make_pruner``) on an in-memory Optuna study. Data as
in ``benchmarks/search.py``: 39,000 fit images, the pipeline's 1,000 val images to select,
10,000 dev images held out of train to judge the choice. The test split is never read.

``benchmarks/search.py`` measures wall time; this measures quality over seeds, and the epochs
trained (wall time less the search's fixed costs).

Example (about 8 minutes the first time, seconds after)::

    .venv/bin/python benchmarks/search_replay.py --seeds 0-15
    .venv/bin/python benchmarks/search_replay.py --seeds 0-15 \\
        --rule late=pruner:median,min_epochs:10,n_startup_trials:4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from search import MIRROR, REPO, cpu_name, load, parse_seeds

#: Rules replayed besides the params.yaml default: (name, svm_tune settings, reported value).
RULES = (
    ("median rule, same settings", {"pruner": "median"}, "best"),
    ("previous default: median after 5 epochs, 4 startup trials, the epoch's value",
     {"pruner": "median", "min_epochs": 5, "n_startup_trials": 4}, "epoch"),
)  # fmt: skip

_data: tuple = ()


def _train(job: tuple[int, int, dict, dict]) -> dict:
    """Train trial ``index`` of ``seed`` all its epochs: its val curve and final dev accuracy."""
    from cifarlab.linear.classifier import LinearClassifier
    from cifarlab.linear.sgd import single_blas_thread

    seed, index, base, hyper = job
    fit, val, dev = _data
    curve: list[float] = []
    with single_blas_thread():
        model = LinearClassifier(**base, **hyper).fit(
            fit.X, fit.y, val.X, val.y,
            on_epoch_end=lambda epoch, losses, train_acc, val_acc: curve.append(float(val_acc)),
        )  # fmt: skip
        dev_accuracy = float(model.score(dev.X, dev.y))
    value = float(model.val_accuracy_history_[model.best_epoch_])
    return {"seed": seed, "trial": index, **hyper, "val": curve, "value": value,
            "dev": dev_accuracy}  # fmt: skip


def collect(seeds, base, tune, archive, n_jobs, cache: Path) -> dict[int, list[dict]]:
    """Every trial of every seed, trained all its epochs (read from ``cache`` when it holds
    them for the same settings)."""
    from cifarlab.linear.trials import queued_trials

    # What the trials depend on: the pruning settings do not change a fully trained trial.
    drawn = ("n_trials", "learning_rate_range", "reg_range", "batch_sizes")
    key = {"base": base, "trials": {k: tune[k] for k in drawn}}
    stored = json.loads(cache.read_text()) if cache.exists() else {}
    if stored.get("key") != json.loads(json.dumps(key)):
        stored = {"key": key, "trials": []}
    have = {(t["seed"], t["trial"]) for t in stored["trials"]}
    jobs = [
        (seed, i, base, hyper)
        for seed in seeds
        for i, hyper in enumerate(queued_trials({**tune, "sampler": "random", "seed": seed}))
        if (seed, i) not in have
    ]
    if jobs:
        global _data
        _data = load(archive)  # before the fork: the workers share it
        print(f"training {len(jobs)} trials all their epochs ({n_jobs} processes)", flush=True)
        with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
            for done, trial in enumerate(pool.imap_unordered(_train, jobs), 1):
                stored["trials"].append(trial)
                if done % 24 == 0 or done == len(jobs):
                    print(f"  {done}/{len(jobs)}", flush=True)
                    cache.write_text(json.dumps(stored))
    by_seed: dict[int, list[dict]] = {seed: [] for seed in seeds}
    for trial in stored["trials"]:
        if trial["seed"] in by_seed:
            by_seed[trial["seed"]].append(trial)
    return {seed: sorted(trials, key=lambda t: t["trial"]) for seed, trials in by_seed.items()}


def replay(trials: list[dict], settings: dict, epochs: int, reported: str) -> tuple[int, int]:
    """(epochs trained, index of the chosen trial) of a search with ``settings`` pruning the
    queue ``trials``. reported : "best" (what svm_tune's trials report: their best val accuracy
    so far) or "epoch" (each epoch's own)."""
    import optuna
    from optuna.trial import TrialState

    from cifarlab.tuning.strategies import make_pruner

    pruner = make_pruner(settings["pruner"], min_epochs=settings["min_epochs"],
                         n_startup_trials=settings["n_startup_trials"], epochs=epochs,
                         percentile=settings["percentile"])  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trained, complete = 0, []
    for index, trial in enumerate(trials):
        curve = np.asarray(trial["val"])
        values = np.maximum.accumulate(curve) if reported == "best" else curve
        running = study.ask()
        for step, value in enumerate(values):
            running.report(float(value), step)
            if running.should_prune():
                study.tell(running, state=TrialState.PRUNED)
                trained += step + 1
                break
        else:
            study.tell(running, trial["value"])
            trained += len(values)
            complete.append(index)
    return trained, max(complete, key=lambda i: (trials[i]["value"], -i))


def main() -> None:
    from cifarlab.params import SECTIONS, check_values, linear_hyperparameters, load_params

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=MIRROR)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-15"))
    parser.add_argument("--rule", action="append", default=[],
                        help="more rules: name=key:value,... over params.yaml's svm_tune")
    parser.add_argument("--curves", type=Path,
                        default=Path(tempfile.gettempdir()) / "cifarlab-search-curves.json")
    args = parser.parse_args()
    if not args.archive.exists():
        sys.exit(f"{args.archive} not found: pass --archive (the CIFAR-10 binary archive)")

    from search import parse_search

    params = load_params(REPO / "params.yaml")
    base = linear_hyperparameters(params["svm"])
    tune, n_jobs = params["svm_tune"], params["resources"]["n_jobs"]
    rules = [(f"default ({tune['pruner']}, top {tune['percentile']} %, from epoch "
              f"{tune['min_epochs']}, {tune['n_startup_trials']} startup trials)", tune, "best")]
    rules += [(name, {**tune, **changes}, reported) for name, changes, reported in RULES]
    rules += [(*parse_search(text, tune), "best") for text in args.rule]
    for name, settings, _ in rules:
        check_values(SECTIONS["svm_tune"], settings, f"{name}: ")

    print(f"CPU: {cpu_name()}; loss {base['loss']}, {base['epochs']} epochs, "
          f"{tune['n_trials']} random trials per seed, seeds {args.seeds[0]}-{args.seeds[-1]}")
    by_seed = collect(args.seeds, base, tune, args.archive, n_jobs, args.curves)
    unpruned = {seed: max(range(len(trials)), key=lambda i: (trials[i]["value"], -i))
                for seed, trials in by_seed.items()}  # fmt: skip
    full_epochs = {s: sum(len(t["val"]) for t in trials) for s, trials in by_seed.items()}

    print("\n| rule | epochs trained (mean share of unpruned) | dev of the choice minus unpruned "
          "(mean, points) | at least as accurate | worst | seed "
          f"{args.seeds[0]}: epochs, dev |")
    print("|---|---:|---:|---:|---:|---|")
    for name, settings, reported in rules:
        shares, gains = [], []
        for seed, trials in by_seed.items():
            trained, chosen = replay(trials, settings, base["epochs"], reported)
            shares.append(trained / full_epochs[seed])
            gains.append(trials[chosen]["dev"] - trials[unpruned[seed]]["dev"])
            if seed == args.seeds[0]:
                first = f"{trained}, {trials[chosen]['dev']:.4f} (unpruned " \
                        f"{trials[unpruned[seed]]['dev']:.4f})"
        print(f"| {name} | {statistics.mean(shares):.2f} | {100 * statistics.mean(gains):+.2f} | "
              f"{sum(g >= 0 for g in gains)} of {len(gains)} | {100 * min(gains):+.2f} | {first} |")


if __name__ == "__main__":
    main()
