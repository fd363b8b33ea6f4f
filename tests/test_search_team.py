"""A search spread over machines: svm_tune's study in the team's PostgreSQL, joined by workers
from other clones (``cifarlab tune join``), one of them killed mid-trial.

Uses the study storage `.ci/run` starts (CIFARLAB_TEST_STUDY_STORAGE, password in PGPASSFILE) or
starts its own server with scripts/tracking-server.sh. In CI it never skips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest
from conftest import copy_project
from test_faults import prepared, start
from test_team import _server_or_skip

pytestmark = pytest.mark.e2e

N_TRIALS = 8


@pytest.fixture(scope="module")
def study_storage():
    """(storage URL, PGPASSFILE) of a PostgreSQL study storage."""
    url = os.environ.get("CIFARLAB_TEST_STUDY_STORAGE")
    if url:
        yield url, os.environ.get("PGPASSFILE", "")
        return
    server = _server_or_skip()
    yield server.script("study-uri").stdout.strip(), str(server.dir / "pgpass")
    server.stop()


def _storage(url, pgpass):
    os.environ["PGPASSFILE"] = pgpass
    from cifarlab.tuning.storage import open_storage

    return open_storage(url)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_clones_join_a_postgres_search_and_a_killed_worker_loses_nothing(
    tmp_path, study_storage
):
    import optuna

    from cifarlab.tuning import study as studies

    url, pgpass = study_storage
    experiment = f"join-{uuid.uuid4().hex[:8]}"  # this test's study among any others
    env = {"CIFARLAB_STUDY_STORAGE": url, "PGPASSFILE": pgpass, "DVC_EXP_NAME": experiment}
    main = copy_project(tmp_path / "main")
    prepared(main, n_train=6_000, epochs=5)
    main.set_params(
        svm_tune={"sampler": "random", "pruner": "median", "n_trials": N_TRIALS, "min_epochs": 2,
                  "n_startup_trials": 2, "learning_rate_range": [1e-8, 1e-6],
                  "batch_sizes": [100]},
        resources={"n_jobs": 1},
    )  # fmt: skip
    clones = [copy_project(tmp_path / f"clone{i}") for i in (1, 2)]
    for clone in clones:  # what `dvc pull` gives a teammate: the same split files
        for name in ("train.npz", "val.npz"):
            target = clone.root / "data/prepared" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((main.root / "data/prepared" / name).read_bytes())
    for proj in (main, *clones):
        proj.env.update(env)

    storage = _storage(url, pgpass)
    stage = start(main, "python", "stages/svm_tune.py")
    summary = _wait(lambda: studies.open_studies(storage, experiment), 90, "the study")[0]
    join = ("python", "-m", "cifarlab", "tune", "join", experiment)
    joiners = [start(clone, *join) for clone in clones]
    doomed = start(clones[0], *join)  # a third worker, killed in the middle of a trial

    study = optuna.load_study(study_name=summary.study_name, storage=storage)

    def doomed_trial():
        for trial in study.get_trials(deepcopy=False):
            worker = trial.user_attrs.get("cifarlab.worker")
            if trial.state.name == "RUNNING" and worker:
                if int(worker.rsplit(":", 1)[1]) in _children(doomed.pid):
                    return trial
        return None

    killed = _wait(doomed_trial, 120, "the third worker to run a trial")
    os.killpg(doomed.pid, signal.SIGKILL)

    started = time.monotonic()
    out, err = stage.communicate(timeout=300)
    print(f"stage ended {time.monotonic() - started:.1f} s after the kill")
    assert stage.returncode == 0, err
    for joiner in joiners:
        j_out, j_err = joiner.communicate(timeout=120)
        assert joiner.returncode == 0, j_err
        assert "trial" in j_out and "no trial left" in j_out, j_out  # it contributed trials

    trials = study.get_trials(deepcopy=False)
    by_position = {}
    for trial in trials:
        position = trial.system_attrs.get("failed_trial", trial.number)
        by_position.setdefault(position, []).append(trial)
    # Every queued trial counted once: each position has exactly one COMPLETE or PRUNED trial;
    # the killed one is FAIL (Optuna's own state) and was run again, once.
    assert sorted(by_position) == list(range(N_TRIALS))
    for position, group in by_position.items():
        ended = [t for t in group if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(ended) == 1, (position, [t.state.name for t in group])
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [killed.number]
    assert len(trials) == N_TRIALS + 1
    workers = {t.user_attrs["cifarlab.worker"] for t in trials}
    assert len(workers) >= 3, workers  # the stage's own worker and both joiners took trials

    # The choice is the best completed trial in the storage.
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: (t.value, -t.number))
    choice = json.loads((main.root / "reports/svm_choice.json").read_text())
    assert choice["trial"] == best.number
    assert choice["val_accuracy"] == pytest.approx(best.value)
    assert choice["learning_rate"] == best.params["learning_rate"]

    # One MLflow child run per trial under the stage's run; the killed trial's is KILLED.
    from mlflow import MlflowClient

    client = MlflowClient(main.tracking_uri)
    experiment_id = client.get_experiment_by_name("cifarlab").experiment_id
    runs = client.search_runs([experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("cifarlab.stage") == "svm_tune"
                 and "mlflow.parentRunId" not in r.data.tags]  # fmt: skip
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["cifarlab.study"] == summary.study_name
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    numbers = sorted(int(r.data.tags["cifarlab.trial_number"]) for r in children)
    assert numbers == sorted(t.number for t in trials)
    status = {int(r.data.tags["cifarlab.trial_number"]): r.info.status for r in children}
    assert status[killed.number] == "KILLED"
    assert {status[t.number] for t in trials if t.number != killed.number} == {"FINISHED"}
    assert studies.closed(study) == "finished"
    assert not studies.open_studies(storage, experiment)
    assert "trials done" in out


def _children(pid: int) -> set[int]:
    """pid and every process below it."""
    found, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        try:
            listed = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
        except OSError:
            break
        for line in listed.stdout.split():
            found.add(int(line))
            frontier.append(int(line))
    return found


def test_an_unreachable_study_storage_is_one_line_within_seconds(project):
    prepared(project)
    project.env["CIFARLAB_STUDY_STORAGE"] = "postgresql+psycopg2://optuna@127.0.0.1:9/optuna"
    started = time.monotonic()
    proc = project.run("python", "stages/svm_tune.py", check=False, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.strip().splitlines() if "INFO mlflow" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: cannot use the study storage"), lines
    assert "127.0.0.1:9" in lines[0]
    assert time.monotonic() - started < 60
    assert not (project.root / "reports/svm_choice.json").exists()
