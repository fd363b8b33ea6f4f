"""cifarlab.process: a stage never outlives the process that ran it, shell in between or not."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STAGE = """
import os, time
from cifarlab.process import die_with_caller
die_with_caller()
print(os.getpid(), os.getppid(), flush=True)
time.sleep(60)
"""
# What dvc does: run the stage's command line through a shell, and wait for it.
CALLER = """
import subprocess, sys
subprocess.run([sys.argv[1], "-c", f"{sys.executable} {sys.argv[2]}"])
"""


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_a_stage_dies_with_the_process_that_ran_its_shell(tmp_path, shell):
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "caller.py").write_text(CALLER)
    caller = subprocess.Popen(
        [sys.executable, str(tmp_path / "caller.py"), shell, str(tmp_path / "stage.py")],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stage, parent = map(int, caller.stdout.readline().split())
        caller.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can tell
        caller.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not _gone(stage):
            assert time.monotonic() < deadline, f"the stage outlived its caller ({shell})"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(caller.pid, signal.SIGKILL)
    # The case the shell walk is for: /bin/sh (dash) stays the stage's parent.
    if os.path.realpath(shell).endswith("dash"):
        assert parent != caller.pid


# A child that starts slowly (a search worker importing its modules) and only then asks to die
# with its parent, which the test kills in between.
SLOW_CHILD = """
import os, sys, time
print(os.getpid(), flush=True)
time.sleep(float(sys.argv[2]))  # importing
from cifarlab.process import die_with_parent
die_with_parent(parent=int(sys.argv[1]))
print("survived", flush=True)
time.sleep(60)
"""
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, sys.argv[1], str(__import__("os").getpid()), "1.0"])
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_child_whose_parent_died_while_it_started_dies_when_it_asks(tmp_path):
    (tmp_path / "child.py").write_text(SLOW_CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"),
                                   str(tmp_path / "child.py")], stdout=sink,
                                  start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not out.read_text().strip():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        child = int(out.read_text().split()[0])
        parent.send_signal(signal.SIGKILL)  # before the child asked to die with it
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not _gone(child):
            assert time.monotonic() < deadline, "the child outlived the parent it started with"
            time.sleep(0.05)
        assert "survived" not in out.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
