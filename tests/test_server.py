"""The team server (scripts/tracking-server.sh) as teammates use it: accounts that can log, no
secret on a command line or in a readable file, reachable on 0.0.0.0 by the machine's own
address, and refusals that name their cause.

One server (basic auth, bound to 0.0.0.0, the default settings; test_team.accounts_server, shared
with test_team.py) serves the e2e tests here; the last of them restarts it with another
CIFARLAB_SERVER_DEFAULT_PERMISSION. The check's messages are also tested on a fake server, fast.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from archive_builder import build_archive
from conftest import REPO
from test_team import ADMIN_PASSWORD, accounts_server, quick_project, stage_runs

from cifarlab.errors import TrackingError
from cifarlab.tracking.connectivity import check_tracking_uri

e2e = pytest.mark.e2e
ADMIN = ("admin", ADMIN_PASSWORD)
BOB = ("bob", "bob-teammate-pw-1")


@pytest.fixture(scope="module")
def server(request):
    return accounts_server(request)


@pytest.fixture(scope="module")
def bob(server) -> tuple[str, str]:
    """A second user, added as a user would: make server-add-user NAME=bob."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "server-add-user", f"NAME={BOB[0]}"],
        env={**server.env, "CIFARLAB_NEW_USER_PASSWORD": BOB[1]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"added user '{BOB[0]}'" in proc.stderr
    return BOB


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    md5 = build_archive(folder / "cifar-10-binary.tar.gz", records_per_batch=24, test_records=30)
    return str(folder / "cifar-10-binary.tar.gz"), md5


@contextlib.contextmanager
def login_as(user: str | None, password: str | None = None):
    """MLFLOW_TRACKING_USERNAME / _PASSWORD set in this process for the block (None: unset)."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in (("USERNAME", user), ("PASSWORD", password)):
            if value is None:
                patch.delenv(f"MLFLOW_TRACKING_{key}", raising=False)
            else:
                patch.setenv(f"MLFLOW_TRACKING_{key}", value)
        yield


def client(server):
    """An MLflow client of ``server``, logged in as MLFLOW_TRACKING_USERNAME says."""
    from mlflow import MlflowClient

    return MlflowClient(server.uri)


def shared_experiment(server, name: str) -> str:
    """An experiment the admin creates, so that teammates are not its owners."""
    with login_as(*ADMIN):
        return client(server).create_experiment(name)


def as_user(proj, login: tuple[str, str], uri: str) -> None:
    proj.env.update(
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_TRACKING_USERNAME=login[0],
        MLFLOW_TRACKING_PASSWORD=login[1],
    )


def get(uri: str, path: str, login: tuple[str, str], host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(uri + path)
    request.add_header(
        "Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode()
    )
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def own_addresses() -> list[str]:
    """This machine's non-loopback addresses (``hostname -I``), IPv6 ones in brackets."""
    try:
        proc = subprocess.run(["hostname", "-I"], capture_output=True, text=True)
    except OSError:  # no hostname command
        return []
    return [
        f"[{a}]" if ":" in a else a
        for a in proc.stdout.split()
        if not a.startswith("127.") and a != "::1"
    ]


# --- 1. every teammate with an account can log ---------------------------------------------------


@e2e
def test_a_teammate_added_with_make_logs_a_stage_in_the_shared_experiment(
    tmp_path, archive, server, bob
):
    experiment = f"shared-{uuid.uuid4().hex[:8]}"
    shared_experiment(server, experiment)
    proj = quick_project(tmp_path / "p", archive, experiment)
    as_user(proj, bob, server.uri)
    proj.run(sys.executable, "stages/download.py", timeout=120)
    with login_as(*ADMIN):
        parents, _ = stage_runs(client(server), experiment)
    assert [(r.info.status, r.data.tags["cifarlab.stage"]) for r in parents] == [
        ("FINISHED", "download")
    ]

    # Adding a user: each fault is one line naming its cause.
    for env, cause in [
        ({"CIFARLAB_NEW_USER_PASSWORD": "x-pw-1234567"}, "user 'bob' already exists"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "wrong"}, "refused the admin login 'admin'"),
        ({"CIFARLAB_SERVER_PORT": "1"}, "no MLflow server answers at http://127.0.0.1:1"),
    ]:
        proc = server.script("add-user", "bob", **{"CIFARLAB_NEW_USER_PASSWORD": "p" * 12, **env})
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert cause in proc.stderr


# --- 2. no secret on a command line or in a readable file -----------------------------------------


def _command_lines() -> str:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass  # the process ended
    return "\n".join(lines)


@e2e
def test_no_secret_on_a_command_line_or_in_a_readable_file(tmp_path, server, bob):
    pgpass = server.dir / "pgpass"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    pg_password = pgpass.read_text().strip().rsplit(":", 1)[1]
    assert len(pg_password) >= 16

    # A teammate logs an artifact, so the server writes some.
    (tmp_path / "note.txt").write_text("hello")
    experiment_id = shared_experiment(server, f"files-{uuid.uuid4().hex[:8]}")
    with login_as(*bob):
        run = client(server).create_run(experiment_id)
        client(server).log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        client(server).set_terminated(run.info.run_id)

    commands = _command_lines()
    assert "mlflow server" in commands and "postgres -D" in commands  # the server is running
    for secret in (pg_password, ADMIN[1], bob[1]):
        assert secret not in commands
    assert "postgresql+psycopg2://mlflow:" not in commands

    # The state folder: others may only pass through it (the postgres user reaches its cluster).
    assert stat.S_IMODE(server.dir.stat().st_mode) == 0o711
    assert not (server.dir / "pg-password").exists()
    open_to_others = []
    for path in [server.dir / name for name in os.listdir(server.dir)] + list(
        (server.dir / "artifacts").rglob("*")
    ):
        if stat.S_IMODE(path.lstat().st_mode) & 0o077:
            open_to_others.append(path)
    assert open_to_others == []
    assert any(p.name == "note.txt" for p in (server.dir / "artifacts").rglob("*"))
    assert stat.S_IMODE((server.dir / "basic_auth.db").stat().st_mode) == 0o600

    # No file in /tmp holds PostgreSQL's password (initdb got it through a pipe).
    assert [path for path in Path("/tmp").iterdir() if _holds(path, pg_password)] == []


def _holds(path: Path, secret: str) -> bool:
    try:
        return (
            path.is_file()
            and path.stat().st_size < 1 << 20
            and secret in path.read_text(errors="replace")
        )
    except OSError:
        return False  # gone, or not ours to read


# --- 3. bound to 0.0.0.0, teammates get in by the machine's own address ---------------------------


@e2e
def test_teammates_reach_a_server_on_0_0_0_0_by_the_machines_own_address(server, bob):
    addresses = own_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback address")
    for name in [*addresses, socket.gethostname()]:
        host = f"{name}:{server.port}"
        # On loopback, as if from another machine: the Host header is what the server checks.
        status, body = get(
            server.uri, "/api/2.0/mlflow/experiments/search?max_results=1", bob, host=host
        )
        assert status == 200, (host, body)


@e2e
def test_a_refusal_names_its_cause(tmp_path, archive, server, bob):
    uri = server.uri
    # 127.0.0.2 reaches the server (loopback, it listens on 0.0.0.0) by a name it does not list.
    unlisted = f"http://127.0.0.2:{server.port}"
    causes = [
        (unlisted, bob, ["refused the host name '127.0.0.2:", "CIFARLAB_SERVER_ALLOWED_HOSTS"]),
        (uri, (None, None), ["requires a login", "MLFLOW_TRACKING_USERNAME"]),
        (uri, (bob[0], "wrong"), ["refused the login of user 'bob'", "password is wrong"]),
    ]
    for target, login, words in causes:
        with login_as(*login), pytest.raises(TrackingError) as caught:
            check_tracking_uri(target)
        assert all(word in str(caught.value) for word in words), str(caught.value)
    with login_as(None), pytest.raises(TrackingError) as caught:
        check_tracking_uri(f"http://bob:{bob[1]}x@127.0.0.1:{server.port}")
    assert bob[1] not in str(caught.value) and "bob:***@" in str(caught.value)

    # A stage sees the same line, naming the host name, not credentials; no traceback.
    proj = quick_project(tmp_path / "p", archive, "cifarlab")
    as_user(proj, bob, unlisted)
    proc = proj.run(sys.executable, "stages/download.py", check=False, timeout=60)
    assert proc.returncode == 1
    assert "Invalid Host header" in proc.stderr and "MLFLOW_TRACKING_PASSWORD" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (proj.root / "data").exists()


# --- the teammates' permission is a setting; lacking it is named before any work ----------------


@e2e
def test_a_user_who_may_only_read_is_refused_by_name_before_any_run(tmp_path, archive, server, bob):
    experiment = f"read-only-{uuid.uuid4().hex[:8]}"
    experiment_id = shared_experiment(server, experiment)
    with login_as(*bob):
        check_tracking_uri(server.uri, experiment=experiment)  # EDIT, the default: allowed

    assert server.script("stop").returncode == 0
    server.start(CIFARLAB_SERVER_DEFAULT_PERMISSION="READ")
    with login_as(*bob), pytest.raises(TrackingError) as caught:
        check_tracking_uri(server.uri, experiment=experiment)
    message = str(caught.value)
    assert "user 'bob'" in message and f"create runs in experiment '{experiment}'" in message
    assert "CIFARLAB_SERVER_DEFAULT_PERMISSION" in message
    # A stage of bob's stops before its work, in one line, with no run and no output.
    proj = quick_project(tmp_path / "p", archive, experiment)
    as_user(proj, bob, server.uri)
    proc = proj.run(sys.executable, "stages/download.py", check=False, timeout=120)
    assert proc.returncode == 1 and "user 'bob' has no permission" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (proj.root / "data").exists()
    with login_as(*ADMIN):
        check_tracking_uri(server.uri, experiment=experiment)  # the admin may
        # Neither the checks nor the stage created a run.
        assert client(server).search_runs([experiment_id], run_view_type=3) == []

    proc = server.script("start", CIFARLAB_SERVER_DEFAULT_PERMISSION="WRITE")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "CIFARLAB_SERVER_DEFAULT_PERMISSION=WRITE: use EDIT, READ" in proc.stderr


def test_allowed_hosts_take_names_addresses_and_patterns():
    """The script's --allowed-hosts (no server needed): loopback, the bound address or the
    machine's names and addresses, and CIFARLAB_SERVER_ALLOWED_HOSTS, each with the port unless
    it has one."""
    functions = "/^wildcard_host()/p;/^allowed_hosts() {/,/^}/p"
    script = (
        f"source <(sed -n '{functions}' {REPO / 'scripts/tracking-server.sh'}); "
        "host=$1; port=5000; allowed_hosts"
    )
    extra = "team.example, [fe80::1],fd00::9,*.corp:*,alias:81"

    def hosts(host: str) -> list[str]:
        env = {**os.environ, "CIFARLAB_SERVER_ALLOWED_HOSTS": extra}
        proc = subprocess.run(["bash", "-c", script, "_", host], capture_output=True, text=True,
                              env=env, check=True)  # fmt: skip
        return proc.stdout.strip().split(",")

    common = ["team.example:5000", "[fe80::1]:5000", "[fd00::9]:5000", "*.corp:*", "alias:81"]
    loopback = ["127.0.0.1:5000", "localhost:5000", "[::1]:5000"]
    assert hosts("10.1.2.3") == [*loopback, "10.1.2.3:5000", *common]
    wildcard = hosts("0.0.0.0")
    own = [f"{a}:5000" for a in [*own_addresses(), socket.gethostname()]]
    assert wildcard[:4] == [*loopback, "0.0.0.0:5000"] and set(own) <= set(wildcard)
    assert wildcard[-len(common) :] == common


# --- the check's messages, on a fake MLflow server ------------------------------------------------


class _FakeMlflow(BaseHTTPRequestHandler):
    """Answers as an MLflow server in ``self.server.mode`` would; keeps the runs/create bodies."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._answer()

    def do_POST(self):  # noqa: N802
        self._answer()

    def _answer(self):
        path, mode = self.path.split("?")[0], self.server.mode
        status, body = 200, "{}"
        if path == "/health":
            status, body = 200, "OK"
        elif mode == "unlisted host":
            status, body = 403, "Invalid Host header - possible DNS rebinding attack detected"
        elif mode == "login":
            status, body = 401, "You are not authenticated. Please see https://www.mlflow.org/..."
        elif mode == "slow":
            time.sleep(2)
        elif path.endswith("/experiments/get-by-name"):
            body = json.dumps({"experiment": {"experiment_id": "7", "name": "shared"}})
        elif path.endswith("/runs/create"):
            length = int(self.headers["Content-Length"])
            self.server.creates.append(json.loads(self.rfile.read(length)))
            status, body = (403, "Permission denied") if mode == "read only" else (400, "{}")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeMlflow)
    server.daemon_threads = True
    server.mode, server.creates = "ok", []
    server.uri = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _refusal(uri: str, login=(None, None), **kwargs) -> str:
    with login_as(*login), pytest.raises(TrackingError) as caught:
        check_tracking_uri(uri, **kwargs)
    return str(caught.value)


def test_the_check_names_the_cause_of_each_refusal(fake):
    fake.mode = "unlisted host"
    message = _refusal(fake.uri, BOB)
    assert f"refused the host name '127.0.0.1:{fake.server_port}'" in message
    assert "CIFARLAB_SERVER_ALLOWED_HOSTS" in message and "PASSWORD" not in message

    fake.mode = "login"
    assert "requires a login): set MLFLOW_TRACKING_USERNAME" in _refusal(fake.uri)
    message = _refusal(fake.uri, BOB)
    assert "refused the login of user 'bob'" in message and "password is wrong" in message
    # A password in the URI is used, and never shown.
    message = _refusal(f"http://bob:{BOB[1]}@127.0.0.1:{fake.server_port}")
    assert "user 'bob'" in message and BOB[1] not in message and "bob:***@" in message

    fake.mode = "read only"
    with login_as(*BOB):
        check_tracking_uri(fake.uri)  # reading is allowed
    message = _refusal(fake.uri, BOB, experiment="shared")
    assert "user 'bob' has no permission to create runs in experiment 'shared'" in message
    assert "CIFARLAB_SERVER_DEFAULT_PERMISSION=EDIT" in message and "\n" not in message

    fake.mode = "ok"
    with login_as(*BOB):
        check_tracking_uri(fake.uri, experiment="shared")
    # Both probes asked for a run no server creates: an invalid start time.
    assert [c["start_time"] for c in fake.creates] == ["not a time"] * 2


def test_a_server_whose_api_hangs_is_an_error_within_its_timeout(fake):
    fake.mode = "slow"
    started = time.monotonic()
    message = _refusal(fake.uri, api_timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert "answers /health but not its API within 0.5 s" in message
