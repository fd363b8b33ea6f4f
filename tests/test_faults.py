"""Faults for real: killed processes, stores that cannot write, full disks, hand-edited reports.

Each test drives a stage script (or `dvc`) in a project copy, causes the fault with a real
signal, server, file or resource limit, and checks what a user would see: one line naming the
cause, no traceback, none of the stage's new outputs, no process left behind, no run left
RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from cifarlab.data.prepared import Split, save_split

pytestmark = pytest.mark.e2e

TUNE_OUTPUTS = ["reports/svm_tune.csv", "reports/svm_choice.json", "reports/plots/svm_tune.png"]


def prepared(project, *, n_train=60, epochs=3):
    """What `prepare` writes, tiny, plus the reports `summarize` reads; quick linear params."""
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("val", 20)):
        y = (np.arange(n) % 10).astype(np.uint8)
        X = rng.integers(0, 256, size=(n, 3072)).astype(np.uint8)
        save_split(project.root / f"data/prepared/{name}.npz", Split(X, y))
    meta = {"class_names": [f"c{i}" for i in range(10)], "archive_md5": "ab" * 16, "sizes": {}}
    (project.root / "data/prepared/meta.json").write_text(json.dumps(meta))
    reports = project.root / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "knn_test.json").write_text('{"test_accuracy": 0.3, "distance": "l1", "k": 5}')
    (reports / "knn_cv.json").write_text('{"cv_accuracy": 0.29, "cv_accuracy_std": 0.01}')
    (reports / "svm_test.json").write_text('{"test_accuracy": 0.4}')
    summary = {"val_accuracy": 0.41, "learning_rate": 1e-6, "reg": 100.0, "loss": "hinge",
               "batch_size": 16}
    (reports / "svm_train.json").write_text(json.dumps(summary))
    project.set_params(
        svm={"epochs": epochs},
        svm_tune={
            "sampler": "grid", "learning_rates": [1.0e-7, 1.0e-6], "regs": [1.0e2],
            "batch_sizes": [16],
        },
        resources={"n_jobs": 2},
    )  # fmt: skip


def start(project, *args, **popen):
    """A stage (or dvc) started in its own session, as a terminal or DVC would run it."""
    return subprocess.Popen(
        args, cwd=project.root, env=project.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, **popen,
    )  # fmt: skip


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def runs(project):
    from mlflow import MlflowClient

    if not (project.root / "mlflow.db").exists():  # not yet created by a stage's worker
        return []
    client = MlflowClient(project.tracking_uri)
    experiment = client.get_experiment_by_name("cifarlab")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def stage_run_status(project, stage):
    parents = [
        r for r in runs(project)
        if r.data.tags.get("cifarlab.stage") == stage and "mlflow.parentRunId" not in r.data.tags
    ]  # fmt: skip
    return [r.info.status for r in parents]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if "INFO mlflow" not in line]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def search_workers(stage_pid: int) -> list[int]:
    return [p for p in children(stage_pid) if b"spawn_main" in _cmdline(p)]


def training(stage_pid: int) -> bool:
    """Both search workers have started and are computing trials (using CPU)."""
    workers = search_workers(stage_pid)
    return len(workers) == 2 and all(_cpu_ticks(p) > 100 for p in workers)


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks (1/100 s)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- a store that cannot write costs seconds, never the work -------------------------------------


class _HtmlEverywhere(BaseHTTPRequestHandler):
    """A web server (a proxy, a login page) that answers every request 200 with HTML."""

    def _page(self):
        body = b"<html><body>" + b"Welcome! " * 2000 + b"</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page  # noqa: N815 (http.server's naming)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("store", ["html-server", "corrupt-sqlite"])
def test_a_store_that_cannot_write_fails_the_stage_before_its_work(project, store):
    prepared(project)
    server = None
    if store == "html-server":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlEverywhere)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        project.env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{server.server_port}"
    else:
        (project.root / "mlflow.db").write_bytes(b"this is not a database\n" * 100)
    try:
        started = time.monotonic()
        proc = project.run("python", "stages/summarize.py", check=False)
        seconds = time.monotonic() - started
    finally:
        if server is not None:
            server.shutdown()
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert len(line) < 600, line
    assert "summarize:" not in proc.stdout  # the work never ran
    assert not (project.root / "reports/metrics.json").exists()
    assert seconds < 30


# --- killed processes leave nothing running ------------------------------------------------------


# dvc runs a stage through $SHELL -c: bash replaces itself with the stage, dash (/bin/sh, the
# shell where SHELL is unset, as in many CI jobs and containers) stays the stage's parent.
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_dvc_killed_alone_stops_its_stage(project, shell):
    """SIGTERM to `dvc` only: its stage stops too, ends its run KILLED and writes nothing."""
    prepared(project, n_train=2000, epochs=100_000)
    project.commit("inputs")
    project.env["SHELL"] = shell
    dvc = start(project, str(Path(sys.executable).parent / "dvc"), "repro", "--single-item",
                "svm_tune")  # fmt: skip
    try:
        wait_for(lambda: search_workers_of_tree(dvc.pid), what="svm_tune's search workers")
        stage = stage_pid(dvc.pid)
        dvc.send_signal(signal.SIGTERM)  # to dvc alone, not its process group
        dvc.communicate(timeout=60)
        wait_for(lambda: not alive(stage), timeout=30, what="the stage to stop")
    finally:
        with contextlib.suppress(ProcessLookupError):  # its session: dvc, stage, workers
            os.killpg(dvc.pid, signal.SIGKILL)
    for path in TUNE_OUTPUTS:
        assert not (project.root / path).exists(), path
    wait_for(lambda: stage_run_status(project, "svm_tune") == ["KILLED"], timeout=30,
             what="the run to end KILLED")  # fmt: skip
    assert not _processes_in(project.root)


def stage_pid(dvc_pid: int) -> int:
    """The stage's Python process (not a shell running its command line)."""
    for pid in _tree(dvc_pid):
        argv = _cmdline(pid).split(b"\0")
        if b"python" in Path(os.fsdecode(argv[0])).name.encode() and b"stages/svm_tune.py" in argv:
            return pid
    raise AssertionError("no svm_tune stage process under dvc")


def search_workers_of_tree(root_pid: int) -> list[int]:
    return [p for p in _tree(root_pid) if b"spawn_main" in _cmdline(p)]


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _processes_in(root: Path) -> list[int]:
    """Live processes whose working directory is the project (a stage, a worker …)."""
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)) == root and alive(int(cwd.parent.name)):
                found.append(int(cwd.parent.name))
        except OSError:
            continue
    return found


def test_a_stage_killed_outright_takes_its_search_workers_along(project):
    prepared(project, n_train=2000, epochs=100_000)
    stage = start(project, "python", "stages/svm_tune.py")
    wait_for(lambda: training(stage.pid), what="two search workers training")
    workers = search_workers(stage.pid)
    stage.send_signal(signal.SIGKILL)  # the stage alone: no handler runs
    stage.communicate(timeout=30)
    wait_for(lambda: not any(alive(p) for p in workers), timeout=15, what="the workers to die")
    wait_for(lambda: not _processes_in(project.root), timeout=15, what="no process left")
    # Its tracking worker saw the stage go and ended the run.
    wait_for(lambda: stage_run_status(project, "svm_tune") == ["KILLED"], timeout=30,
             what="the run to end KILLED")  # fmt: skip


def group_killed_with_its_run_running(project):
    """svm_tune SIGKILLed with its whole process group (`docker stop` after its grace period),
    tracking worker included, while its run is RUNNING."""
    prepared(project, n_train=2000, epochs=100_000)
    stage = start(project, "python", "stages/svm_tune.py")
    wait_for(lambda: training(stage.pid), what="two search workers training")
    wait_for(lambda: stage_run_status(project, "svm_tune") == ["RUNNING"], what="the run")
    os.killpg(stage.pid, signal.SIGKILL)
    stage.communicate(timeout=30)
    wait_for(lambda: not _processes_in(project.root), timeout=15, what="no process left")
    assert stage_run_status(project, "svm_tune") == ["RUNNING"]


def test_runs_of_a_killed_process_group_are_swept_by_the_next_stage(project):
    group_killed_with_its_run_running(project)
    proc = project.run("python", "stages/summarize.py")
    assert "summarize:" in proc.stdout
    (swept,) = [r for r in runs(project) if r.data.tags.get("cifarlab.stage") == "svm_tune"]
    assert swept.info.status == "KILLED"
    assert "ended without ending the run" in swept.data.tags["cifarlab.error"]
    assert stage_run_status(project, "summarize") == ["FINISHED"]


def test_runs_sweep_command(project):
    group_killed_with_its_run_running(project)
    out = project.run("python", "-m", "cifarlab", "runs", "sweep").stdout
    assert "1 run(s) left RUNNING by a dead process ended KILLED" in out
    assert stage_run_status(project, "svm_tune") == ["KILLED"]


def test_ctrl_c_while_search_workers_start_is_one_line(project):
    prepared(project, n_train=2000, epochs=100_000)
    stage = start(project, "python", "stages/svm_tune.py")
    wait_for(lambda: search_workers(stage.pid), timeout=60, what="a search worker to start")
    time.sleep(0.3)  # the worker is importing its modules: where a Ctrl-C printed a traceback
    os.killpg(stage.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, stderr = stage.communicate(timeout=60)
    assert stage.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted: nothing was written"
    for path in TUNE_OUTPUTS:
        assert not (project.root / path).exists(), path
    wait_for(lambda: not _processes_in(project.root), timeout=15, what="no process left")


# --- outputs: all or none ------------------------------------------------------------------------

STAGE_SCRIPT = """
import os, resource, signal, sys, time
sys.path.insert(0, {src!r})
from cifarlab import io
from cifarlab.cli import run_stage

def main():
    io.write_text("reports/a.csv", "x,y\\n1,2\\n")
    io.write_json("reports/b.json", {{"ok": True}})
    if sys.argv[1] == "full-disk":
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        io.save_arrays("reports/big.npz", x=os.urandom(1 << 20))
    elif sys.argv[1] == "signal":
        print("written", flush=True)
        time.sleep(60)
    elif sys.argv[1] == "bug":
        {{}}["missing"]

run_stage(main)
"""


def run_script(tmp_path, mode, **popen):
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent(STAGE_SCRIPT.format(src=str(REPO / "src"))))
    return subprocess.Popen(
        [sys.executable, str(script), mode], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, **popen,
    )  # fmt: skip


def leftovers(tmp_path):
    reports = tmp_path / "reports"
    return sorted(p.name for p in reports.rglob("*")) if reports.exists() else []


def test_a_full_disk_leaves_none_of_the_stages_outputs(tmp_path):
    proc = run_script(tmp_path, "full-disk")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    line = one_error_line(stderr)
    assert "File too large" in line and "reports/big.npz" in line, line
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_stage_leaves_none_of_its_outputs(tmp_path, signum):
    proc = run_script(tmp_path, "signal")
    assert proc.stdout.readline().strip() == "written"  # two files written, and staged
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert stderr.strip() == "interrupted: nothing was written"
    assert leftovers(tmp_path) == []


def test_a_bug_is_one_line_and_a_traceback_on_demand(tmp_path):
    proc = run_script(tmp_path, "bug")
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    line = one_error_line(stderr)
    assert "unexpected KeyError" in line and "CIFARLAB_DEBUG=1" in line
    assert leftovers(tmp_path) == []
    debug = run_script(tmp_path, "bug", env={**os.environ, "CIFARLAB_DEBUG": "1"})
    _, stderr = debug.communicate(timeout=30)
    assert debug.returncode == 1 and "Traceback" in stderr and "KeyError" in stderr


def test_outputs_appear_together_with_ordinary_permissions(tmp_path):
    proc = run_script(tmp_path, "ok", preexec_fn=lambda: os.umask(0o022))
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert leftovers(tmp_path) == ["a.csv", "b.json"]
    for name in ("a.csv", "b.json"):
        assert (tmp_path / "reports" / name).stat().st_mode & 0o777 == 0o644


# --- hand-edited reports -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "reports/svm_choice.json is not valid JSON"),
        ('{"learning_rate": 1e-6, "batch_size": 16}', "reports/svm_choice.json has no 'reg'"),
        ('{"learning_rate": 1e-6, "reg": -1, "batch_size": 16}', "reg must be a finite number"),
    ],
)
def test_a_hand_edited_choice_file_is_one_line(project, text, message):
    prepared(project)
    (project.root / "reports/svm_choice.json").write_text(text)
    proc = project.run("python", "stages/svm_train.py", check=False)
    assert proc.returncode == 1
    assert message in one_error_line(proc.stderr)
    assert not (project.root / "data/models/svm.npz").exists()


# --- a shared SQLite store -----------------------------------------------------------------------


def test_a_shared_sqlite_store_keeps_every_clones_artifacts_beside_it(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from cifarlab import tracking

    shared = tmp_path / "shared"
    shared.mkdir()
    uri = f"sqlite:///{shared / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for clone in ("alice", "bob"):
        (tmp_path / clone).mkdir()
        monkeypatch.chdir(tmp_path / clone)
        with tracking.stage_run("summarize", {}, experiment="team") as run:
            (tmp_path / clone / "m.json").write_text("{}")
            run.log_artifact(tmp_path / clone / "m.json")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("team")
    assert experiment.artifact_location == (shared / "mlartifacts").as_uri()
    for run in client.search_runs([experiment.experiment_id]):
        assert run.info.artifact_uri.startswith((shared / "mlartifacts").as_uri())
    assert not (tmp_path / "alice" / "mlruns").exists()
