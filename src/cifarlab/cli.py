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


def main(argv: list[str] | None = None) -> None:
    """``cifarlab trace exp NAME`` / ``cifarlab trace run RUN_ID`` / ``cifarlab runs sweep``
    (run from the project root)."""
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
    args = parser.parse_args(argv)
    try:
        if args.command == "runs":
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
