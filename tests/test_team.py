"""Working as a team: a PostgreSQL-backed MLflow server, a DVC remote, parallel experiments.

The server tests use the server `.ci/run` starts (CIFARLAB_TEST_TRACKING_URI) or start their own
with scripts/tracking-server.sh. In CI they never skip: a missing server is a failure there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from archive_builder import build_archive
from conftest import QUICK_PARAMS, REPO, STAGES, Project, copy_project

pytestmark = pytest.mark.e2e

SERVER_SCRIPT = REPO / "scripts" / "tracking-server.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def have_postgres() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or os.geteuid() == 0


class Server:
    """One scripts/tracking-server.sh instance in a temporary state folder."""

    def __init__(self, auth: bool = False, admin_password: str = "", **settings: str) -> None:
        """settings: more of the script's environment, e.g. CIFARLAB_SERVER_HOST="0.0.0.0"."""
        # The postgres user must be able to enter the folder: not under pytest's 0700 tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="cifarlab-server-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.env = {
            **os.environ,
            "CIFARLAB_SERVER_DIR": str(self.dir),
            "CIFARLAB_SERVER_PORT": str(self.port),
            "CIFARLAB_PG_PORT": str(free_port()),
            "CIFARLAB_SERVER_AUTH": "1" if auth else "0",
            "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow"),
            **settings,
        }
        if admin_password:
            self.env["MLFLOW_AUTH_ADMIN_PASSWORD"] = admin_password
        self.start()

    def start(self, **settings: str) -> None:
        """Start the server (again, after ``script("stop")``), with these settings changed."""
        self.env.update(settings)
        proc = self.script("start", timeout=300)
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"tracking server did not start:\n{proc.stderr}")
        self.uri = proc.stdout.strip().splitlines()[-1]

    def script(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        """scripts/tracking-server.sh ARGS for this server, with ``env`` added."""
        return subprocess.run(["bash", str(SERVER_SCRIPT), *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        self.script("stop")
        shutil.rmtree(self.dir, ignore_errors=True)  # database cluster and artifacts: ~70 MB


def _server_or_skip(**kwargs) -> Server:
    if not have_postgres():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing in CI: .ci/run must install it")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return Server(**kwargs)


@pytest.fixture(scope="module")
def tracking_server():
    uri = os.environ.get("CIFARLAB_TEST_TRACKING_URI")
    if uri:
        yield uri
        return
    server = _server_or_skip()
    yield server.uri
    server.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    md5 = build_archive(folder / "cifar-10-binary.tar.gz", records_per_batch=24, test_records=30)
    return str(folder / "cifar-10-binary.tar.gz"), md5


def quick_project(root: Path, archive, experiment: str, **overrides):
    proj = copy_project(root)
    url, md5 = archive
    params = {**QUICK_PARAMS, **overrides}
    proj.set_params(data={"url": url, "md5": md5}, tracking={"experiment": experiment}, **params)
    proj.commit("quick params")
    return proj


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def stage_runs(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags], runs


# --- a real server, shared by two clones ---------------------------------------------------------


def test_two_clones_share_runs_curves_and_artifacts(tmp_path, archive, tracking_server):
    experiment = f"team-{uuid.uuid4().hex[:8]}"
    clones = {}
    for name, seed in (("alice", 0), ("bob", 1)):
        proj = quick_project(tmp_path / name, archive, experiment, svm={**QUICK_PARAMS["svm"],
                                                                      "seed": seed})
        proj.env["MLFLOW_TRACKING_URI"] = tracking_server
        proj.dvc("repro")
        assert not (proj.root / "mlflow.db").exists(), "logged to the local store, not the server"
        clones[name] = proj

    parents, _ = stage_runs(client_for(tracking_server), experiment)
    assert Counter(r.data.tags["cifarlab.stage"] for r in parents) == {s: 2 for s in STAGES}
    for name, seed in (("alice", 0), ("bob", 1)):
        proj = clones[name]
        # Each clone reads the other's runs through its own client: params, curves, artifacts.
        client = client_for(tracking_server)
        run = next(r for r in parents if r.data.tags["cifarlab.stage"] == "svm_train"
                   and r.data.params["svm.seed"] == str(seed))
        assert run.info.status == "FINISHED"
        local_loss = [float(line.split(",")[1]) for line in
                      (proj.root / "reports/svm_loss.csv").read_text().splitlines()[1:]]
        history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
        assert [m.value for m in history] == pytest.approx(local_loss, rel=1e-12)
        fetched = client.download_artifacts(run.info.run_id, "svm_loss.png", str(tmp_path / name))
        assert Path(fetched).read_bytes() == (proj.root / "reports/plots/svm_loss.png").read_bytes()
        assert run.data.tags["dvc.stage_hash"]


# --- fail fast, lose nothing ---------------------------------------------------------------------


def test_unreachable_server_is_a_clear_error_within_seconds(tmp_path, archive):
    proj = quick_project(tmp_path / "p", archive, "cifarlab")
    uri = f"http://127.0.0.1:{free_port()}"
    proj.env["MLFLOW_TRACKING_URI"] = uri
    started = time.monotonic()
    proc = proj.run(sys.executable, "stages/download.py", check=False, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert uri in proc.stderr and "unreachable" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 10
    assert not (proj.root / "data").exists()


ADMIN_PASSWORD = "team-admin-pw-1"
_ACCOUNTS_SERVER: list[Server] = []


def accounts_server(request) -> Server:
    """The session's one server with accounts (basic auth, admin ``ADMIN_PASSWORD``, on 0.0.0.0),
    shared by this module and test_server.py (a server start costs tens of seconds): started by
    the first test that asks, stopped at the end of the session. Tests here log as the admin
    only, since test_server.py's last test restarts it with CIFARLAB_SERVER_DEFAULT_PERMISSION=READ.
    """
    if not _ACCOUNTS_SERVER:
        server = _server_or_skip(
            auth=True, admin_password=ADMIN_PASSWORD, CIFARLAB_SERVER_HOST="0.0.0.0"
        )
        _ACCOUNTS_SERVER.append(server)
        request.session.addfinalizer(server.stop)
    return _ACCOUNTS_SERVER[0]


@pytest.fixture(scope="module")
def auth_server(request):
    return accounts_server(request)


def test_basic_auth_refuses_without_credentials_and_logs_with_them(tmp_path, archive, auth_server):
    proj = quick_project(tmp_path / "p", archive, f"auth-{uuid.uuid4().hex[:8]}")
    proj.env["MLFLOW_TRACKING_URI"] = auth_server.uri
    proc = proj.run(sys.executable, "stages/download.py", check=False, timeout=60)
    assert proc.returncode == 1 and "refused" in proc.stderr and auth_server.uri in proc.stderr
    assert not (proj.root / "data").exists()

    proj.env.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    proj.run(sys.executable, "stages/download.py", timeout=120)
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN_PASSWORD
    try:
        parents, _ = stage_runs(client_for(auth_server.uri), proj_experiment(proj))
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    assert [r.info.status for r in parents] == ["FINISHED"]


def proj_experiment(proj) -> str:
    import yaml

    return yaml.safe_load((proj.root / "params.yaml").read_text())["tracking"]["experiment"]


class _SlowArchive(BaseHTTPRequestHandler):
    """Sends a large body slowly, so the download stage is still running when it is stopped."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", str(100 << 20))
        self.end_headers()
        try:
            for _ in range(600):
                self.wfile.write(b"\0" * 4096)
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_stage_ends_killed_and_leaves_nothing(tmp_path, archive, signum):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowArchive)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proj = quick_project(tmp_path / "p", archive, "cifarlab")
        proj.set_params(data={"url": f"http://127.0.0.1:{server.server_port}/a.tar.gz",
                              "md5": "0" * 32})
        stage = subprocess.Popen([sys.executable, "stages/download.py"], cwd=proj.root,
                                 env=proj.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        raw = proj.root / "data" / "raw"
        deadline = time.monotonic() + 60
        while not (raw.is_dir() and any(raw.iterdir())):  # the temporary file is being written
            assert stage.poll() is None, stage.communicate()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.1)
        stage.send_signal(signum)
        _, stderr = stage.communicate(timeout=30)
    finally:
        server.shutdown()
    assert stage.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not any(raw.iterdir()), list(raw.iterdir())
    parents, _ = stage_runs(client_for(proj.tracking_uri), "cifarlab")
    assert [r.info.status for r in parents] == ["KILLED"]


# --- data and models through a DVC remote ---------------------------------------------------------


def test_push_then_pull_in_another_clone_recomputes_nothing(tmp_path, archive):
    alice = quick_project(tmp_path / "alice", archive, "cifarlab")
    alice.dvc("repro")
    alice.dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"))
    alice.commit("results and remote")
    alice.dvc("push", "--run-cache")

    subprocess.run(["git", "clone", "-q", str(alice.root), str(tmp_path / "bob")], check=True)
    bob = Project(tmp_path / "bob")
    bob.dvc("pull", "--run-cache")
    proc = bob.dvc("repro")
    assert "Running stage" not in proc.stdout, proc.stdout
    assert "up to date" in proc.stdout
    assert json.loads((bob.root / "reports/metrics.json").read_text()) == json.loads(
        (alice.root / "reports/metrics.json").read_text())
    assert (bob.root / "data/models/svm.npz").read_bytes() == (
        alice.root / "data/models/svm.npz").read_bytes()

    def run_cache(proj):
        runs = proj.root / ".dvc" / "cache" / "runs"
        return sorted(p.relative_to(runs) for p in runs.rglob("*") if p.is_file())

    # Every stage's run-cache entry travelled too (no stage has an uncached plain output).
    assert len(run_cache(alice)) == len(STAGES)
    assert run_cache(bob) == run_cache(alice)
    assert not (bob.root / "mlflow.db").exists(), "bob computed (and logged) something"


# --- parallel experiments ----------------------------------------------------------------------


def _wait_for_queue(proj, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = proj.dvc("queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            return
        time.sleep(2)
    raise AssertionError(f"queue still busy after {timeout} s:\n{status}")


@pytest.mark.parametrize("store", ["server", "sqlite"])
def test_queued_experiments_in_parallel_lose_and_duplicate_no_run(tmp_path, archive, store,
                                                                  request):
    experiment = f"queue-{uuid.uuid4().hex[:8]}"
    proj = quick_project(tmp_path / "p", archive, experiment)
    if store == "server":
        uri = request.getfixturevalue("tracking_server")
        proj.env["MLFLOW_TRACKING_URI"] = uri
    else:
        uri = proj.tracking_uri  # the default store, shared by every workspace
    proj.dvc("repro")
    proj.commit("baseline results")
    epochs = [2, 4]  # two experiments, run at the same time
    for n in epochs:
        proj.dvc("exp", "run", "--queue", "-S", f"svm.epochs={n}")
    try:
        proj.dvc("queue", "start", "-j", "2")
        _wait_for_queue(proj)
    finally:
        proj.dvc("queue", "stop", "--kill", check=False)
    shown = json.loads(proj.dvc("exp", "show", "--json").stdout)
    names = {exp["name"] for row in shown for exp in (row.get("experiments") or [])
             if exp.get("name")}
    failed = proj.dvc("queue", "status").stdout
    assert len(names) == len(epochs), f"{names}\n{failed}"

    parents, _ = stage_runs(client_for(uri), experiment)
    per_experiment = Counter((r.data.tags.get("dvc.exp_name"), r.data.tags["cifarlab.stage"])
                             for r in parents if r.data.tags.get("dvc.exp_name"))
    # Each experiment changed svm.epochs only: exactly the stages that read it ran, once.
    assert per_experiment == Counter({(name, stage): 1 for name in names
                                      for stage in ("svm_tune", "svm_train", "svm_evaluate",
                                                    "summarize", "report")}), (
        per_experiment)
    assert all(r.info.status == "FINISHED" for r in parents)


# --- traceability --------------------------------------------------------------------------------


def test_trace_maps_an_experiment_to_its_runs_and_back(tmp_path, archive):
    proj = quick_project(tmp_path / "p", archive, "cifarlab")
    proj.dvc("repro")
    proj.commit("baseline")
    proj.dvc("exp", "run", "-n", "longer-svm", "-S", "svm.epochs=4")
    out = proj.run(sys.executable, "-m", "cifarlab", "trace", "exp", "longer-svm").stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    stages = {row[0] for row in rows}
    # Every stage of the experiment is in dvc.lock; the unchanged ones map to the baseline's runs.
    assert stages == set(STAGES), out
    run_id = next(row[1] for row in rows if row[0] == "svm_train")
    back = proj.run(sys.executable, "-m", "cifarlab", "trace", "run", run_id).stdout
    assert "longer-svm" in back and "svm_train" in back
