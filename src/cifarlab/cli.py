"""Entry point for the stage scripts and the ``cifarlab`` command: one line per failure.

A stage ends in exactly one of three ways: its outputs all written and its MLflow run FINISHED;
``error: <cause>`` on one line, exit 1, run FAILED; or ``interrupted``, exit 130, run KILLED.
In the last two no new output is left (``cifarlab.io.staged_outputs``). ``CIFARLAB_DEBUG=1``
adds the traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from cifarlab.errors import CifarlabError

DEBUG_VARIABLE = "CIFARLAB_DEBUG"


def _sigterm_as_interrupt(signum: int, frame: object) -> NoReturn:
    # `dvc` and process managers stop a stage with SIGTERM; raising KeyboardInterrupt lets every
    # `with` block unwind: temporary files are removed and the MLflow run is ended as KILLED.
    raise KeyboardInterrupt(f"signal {signum}")


def _describe(exc: BaseException) -> str:
    """One line for a failure that is not a CifarlabError (those say it all themselves)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    lines = str(exc).strip().splitlines()
    first = lines[0][:300] if lines else ""
    return (
        f"unexpected {type(exc).__name__}: {first} "
        f"(run with {DEBUG_VARIABLE}=1 for the traceback, and report it)"
    )


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with its outputs staged, and stop it if ``dvc`` dies."""
    from cifarlab import io
    from cifarlab.process import die_with_caller

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    die_with_caller(signal.SIGTERM)
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        with io.staged_outputs():
            main()
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        message = str(exc) if isinstance(exc, CifarlabError) else _describe(exc)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def _trace_experiment(label: str) -> None:
    """Print the MLflow runs of every stage recorded in an experiment's dvc.lock."""
    from cifarlab import lineage, tracking

    locks = lineage.experiment_locks()
    if label not in locks:
        known = ", ".join(sorted(locks)) or "none"
        raise CifarlabError(f"no dvc.lock for {label!r}; experiments with one: {known}")
    rev, text = locks[label]
    print(f"{'stage':<10} {'run_id':<32} {'status':<9} dvc_exp_name  ({label} @ {rev[:12]})")
    for stage, fingerprint in lineage.lock_fingerprints(text).items():
        runs = tracking.runs_tagged("dvc.stage_hash", fingerprint)
        # Newest first: an unchanged stage maps to every run that computed that same result.
        for run in sorted(runs, key=lambda r: -r["start_time"]):
            exp_name = run["tags"].get("dvc.exp_name", "-")
            print(f"{stage:<10} {run['run_id']:<32} {run['status']:<9} {exp_name}")
        if not runs:
            print(f"{stage:<10} {'(no MLflow run with this stage hash)':<32}")


def _trace_run(run_id: str) -> None:
    """Print a run's DVC identity and the experiments whose dvc.lock holds its stage hash."""
    from cifarlab import lineage, tracking

    tags = tracking.run_description(run_id)["tags"]
    stage, fingerprint = tags.get("cifarlab.stage", "?"), tags.get("dvc.stage_hash")
    print(f"run {run_id}: stage {stage}, git commit {tags.get('mlflow.source.git.commit', '?')}, "
          f"dvc experiment {tags.get('dvc.exp_name', '-')}, stage hash {fingerprint}")
    if fingerprint is None:
        return
    for label, (rev, text) in lineage.experiment_locks().items():
        if lineage.lock_fingerprints(text).get(stage) == fingerprint:
            print(f"in dvc exp show: {label} ({rev[:12]})")


def _sweep_runs() -> None:
    """End KILLED the runs left RUNNING by processes of this host that are gone."""
    from cifarlab import tracking

    swept = tracking.sweep_store()
    for run_id in swept:
        print(f"KILLED {run_id}")
    print(f"{len(swept)} run(s) left RUNNING by a dead process ended KILLED")


def _tune_join(experiment: str | None, study_name: str | None, jobs: int) -> None:
    """Work on an open svm_tune search from here: this project's split files must be the ones
    the search started with."""
    import multiprocessing

    from cifarlab.process import start_without_sigint
    from cifarlab.tuning import study as studies
    from cifarlab.tuning.storage import open_storage, redact, storage_url

    url = storage_url()
    storage = open_storage(url)
    if study_name is None:
        found = studies.open_studies(storage, experiment)
        if not found:
            which = f" of experiment {experiment!r}" if experiment else ""
            raise CifarlabError(f"no open svm_tune search{which} in {redact(url)}: start one "
                                "with dvc repro / dvc exp run, then join it")  # fmt: skip
        if len(found) > 1:
            names = ", ".join(repr(s.study_name) for s in found)
            print(f"{len(found)} open searches ({names}); joining the newest", file=sys.stderr)
        study_name = found[-1].study_name
    study, _ = studies.load(storage, study_name)
    attrs = studies.attrs(study)
    _check_split_files(attrs.get("md5", {}))
    counts = studies.counts(study.get_trials(deepcopy=False))
    print(f"joined {study_name!r} in {redact(url)}: {attrs['n_trials']} trials, "
          f"{counts.get('WAITING', 0)} waiting; {jobs} worker process(es) here", flush=True)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_join_worker, args=(url, study_name), daemon=True)
               for _ in range(jobs)]  # fmt: skip
    start_without_sigint(workers)
    try:
        for worker in workers:
            worker.join()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()
    if any(w.exitcode for w in workers):
        raise CifarlabError("a worker failed (its error is above)")
    print(f"search {study_name!r} has no trial left: done here", flush=True)


def _check_split_files(expected: dict[str, str]) -> None:
    from cifarlab import io

    for path, md5 in expected.items():
        try:
            here = io.file_md5(path)
        except FileNotFoundError:
            raise CifarlabError(f"{path} not found: run from the project root, after "
                                "`dvc pull` (or `dvc repro prepare`)") from None  # fmt: skip
        if here != md5:
            raise CifarlabError(
                f"{path} differs from the one the search trains on (md5 {here}, expected "
                f"{md5}): check out the search's commit and run `dvc pull`"
            )


def _join_worker(url: str, study_name: str) -> None:
    """One joining worker process: trains the search's trials on this project's splits."""
    from cifarlab.data.prepared import load_split
    from cifarlab.linear.search import join_search

    def report(record) -> None:
        print(f"trial {record.number} {record.state.lower()}: {record.name} "
              f"val accuracy {record.val_accuracy:.4f} ({record.seconds:.1f} s)", flush=True)

    # The parent stops its workers with SIGTERM: the trial in hand ends FAIL and is queued again.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        train = load_split("data/prepared/train.npz")
        val = load_split("data/prepared/val.npz")
        join_search(url, study_name, train, val, on_trial=report)
    except CifarlabError as exc:
        sys.exit(f"error: {exc}")


def main(argv: list[str] | None = None) -> None:
    """``cifarlab trace exp NAME`` / ``cifarlab trace run RUN_ID`` / ``cifarlab runs sweep`` /
    ``cifarlab tune join [EXPERIMENT]`` (run from the project root)."""
    import argparse

    parser = argparse.ArgumentParser(prog="cifarlab", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    trace = commands.add_parser("trace", help="map DVC experiments to MLflow runs and back")
    what = trace.add_subparsers(dest="what", required=True)
    exp = what.add_parser("exp", help="the MLflow runs behind a `dvc exp show` row")
    exp.add_argument("name", help="experiment name, 'workspace' or a branch name")
    run = what.add_parser("run", help="the `dvc exp show` rows an MLflow run belongs to")
    run.add_argument("run_id")
    runs = commands.add_parser("runs", help="housekeeping of the MLflow runs")
    runs_what = runs.add_subparsers(dest="what", required=True)
    runs_what.add_parser(
        "sweep", help="end KILLED the runs left RUNNING by killed stages of this machine"
    )
    tune = commands.add_parser("tune", help="the hyperparameter search of svm_tune")
    tune_what = tune.add_subparsers(dest="what", required=True)
    join = tune_what.add_parser(
        "join",
        help="lend this machine to an open search: take its queued trials until none is left",
        description="Run trials of an open svm_tune search (an Optuna study in "
        "CIFARLAB_STUDY_STORAGE, default the project's optuna.db) from this project copy, "
        "whose data/prepared split files must be the search's.",
    )
    join.add_argument("experiment", nargs="?", help="DVC experiment name (default: any)")
    join.add_argument("--study", help="the study's exact name (default: the newest open one)")
    join.add_argument("--jobs", type=int, default=1, help="worker processes here (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.command == "tune":
            if args.jobs < 1:
                raise CifarlabError(f"--jobs must be at least 1, got {args.jobs}")
            try:
                _tune_join(args.experiment, args.study, args.jobs)
            except KeyboardInterrupt:
                print("interrupted: the trials in hand are queued again", file=sys.stderr)
                sys.exit(130)
        elif args.command == "runs":
            _sweep_runs()
        elif args.what == "exp":
            _trace_experiment(args.name)
        else:
            _trace_run(args.run_id)
    except Exception as exc:
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        message = str(exc) if isinstance(exc, CifarlabError) else _describe(exc)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
