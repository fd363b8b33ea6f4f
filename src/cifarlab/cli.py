"""Entry point for the stage scripts: one-line errors, MLflow runs ended as KILLED on signals."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from cifarlab.errors import CifarlabError


def _sigterm_as_interrupt(signum: int, frame: object) -> NoReturn:
    # `dvc` and process managers stop a stage with SIGTERM; raising KeyboardInterrupt lets every
    # `with` block unwind: temporary files are removed and the MLflow run is ended as KILLED.
    raise KeyboardInterrupt(f"signal {signum}")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; turn expected failures into a short message and an exit code."""
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        main()
    except CifarlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)


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


def main(argv: list[str] | None = None) -> None:
    """``cifarlab trace exp NAME`` / ``cifarlab trace run RUN_ID`` (run from the project root)."""
    import argparse

    parser = argparse.ArgumentParser(prog="cifarlab", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    trace = commands.add_parser("trace", help="map DVC experiments to MLflow runs and back")
    what = trace.add_subparsers(dest="what", required=True)
    exp = what.add_parser("exp", help="the MLflow runs behind a `dvc exp show` row")
    exp.add_argument("name", help="experiment name, 'workspace' or a branch name")
    run = what.add_parser("run", help="the `dvc exp show` rows an MLflow run belongs to")
    run.add_argument("run_id")
    args = parser.parse_args(argv)
    try:
        if args.what == "exp":
            _trace_experiment(args.name)
        else:
            _trace_run(args.run_id)
    except CifarlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
