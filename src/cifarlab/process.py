"""Process lifetime: a stage, and the workers it starts, never outlive the process that ran it.

``dvc`` runs each stage as a child process. If ``dvc`` is killed (SIGTERM to it alone, an
out-of-memory kill, a closed terminal), the stage must stop too instead of finishing unseen and
writing outputs that ``dvc.lock`` never records; search workers must stop with their stage.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_WORKER_PYTHON = "CIFARLAB_WORKER_PYTHON"  # read by sigint_ignored.sh
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Shells that may run a stage's command line (`dvc` runs it as `$SHELL -c "<cmd>"`).
_SHELLS = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "fish", "busybox"})


def die_with_parent(signum: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Have ``signum`` sent to this process when its parent dies.

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread checks
    once a second whether this process was re-parented. parent : the pid that started this
    process, when the caller knows it (a ``multiprocessing`` child: ``parent_process().pid``);
    if that process is already gone, as when it was killed while this one was still starting
    up, the signal is sent at once. Default: the parent now.
    """
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signum)
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0:
                if os.getppid() != parent:  # died between getppid() and prctl()
                    os.kill(os.getpid(), signum)
                return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="cifarlab-parent-watch", daemon=True).start()


def die_with_caller(signum: int = signal.SIGTERM) -> None:
    """Like ``die_with_parent``, and also when the process that ran the shell running this one
    dies.

    ``dvc`` runs a stage as ``$SHELL -c "python stages/<stage>.py"``. bash replaces itself with
    the command, but dash (Debian's and Ubuntu's ``/bin/sh``, the shell of a user or container
    whose ``SHELL`` is unset) does not: the stage's parent is then a shell that outlives a
    killed ``dvc``. When the parent is a shell running a command line (``-c``), its own parent
    is watched as well.
    """
    die_with_parent(signum)
    found = caller()
    if found is not None and found != os.getppid():
        _watch(found, signum)


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _watch(pid: int, signum: int) -> None:
    """Send ``signum`` to this process when ``pid`` ends (at once if it already has)."""
    try:
        handle = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has ended
    except ProcessLookupError:
        os.kill(os.getpid(), signum)
        return
    except (OSError, AttributeError):
        handle = None
    known = identity(pid)

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
            os.close(handle)
        else:
            while identity(pid) == known:
                time.sleep(0.5)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="cifarlab-caller-watch", daemon=True).start()


def identity(pid: int | None = None) -> str:
    """``"<pid>:<start time>"`` of a live process (this one by default), or "" if it is gone.

    The start time (Linux: clock ticks since boot, from /proc) tells a process from a later
    one that reuses its pid; elsewhere only the pid is compared.
    """
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = fh.read().rsplit(b")", 1)[1].split()
        return f"{pid}:{int(fields[19])}"
    except FileNotFoundError:
        return ""
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return f"{pid}:"


def caller(pid: int | None = None) -> int | None:
    """The process that ran ``pid`` (this one by default): its parent, or, when the parent is a
    shell running a command line (``sh -c``, as ``dvc`` runs a stage), the shell's parent.
    None if it cannot be told (the parent is gone, or ``/proc`` is missing).
    """
    pid = os.getpid() if pid is None else pid
    parent = _parent_of(pid)
    if parent is None or parent <= 1:
        return None
    argv = _argv(parent)
    if argv and os.path.basename(argv[0]).lstrip("-") in _SHELLS and "-c" in argv:
        above = _parent_of(parent)
        return above if above is not None and above > 1 else None
    return parent


def start_without_sigint(processes: list[Any]) -> None:
    """Start spawned ``multiprocessing`` processes with SIGINT ignored from their first
    instruction.

    A terminal's Ctrl-C reaches the whole process group: a worker still importing its modules
    would die of it with a traceback each. The workers' Python runs through ``/bin/sh``, which
    ignores SIGINT and execs it (``sigint_ignored.sh``); this process gets the Ctrl-C (once they
    have started) and stops them. Call from the main thread.
    """
    import multiprocessing.spawn

    # A Ctrl-C meanwhile waits until every worker has its start-up data: cut off mid-way, a
    # worker would print a traceback for its truncated pickle before it could be stopped.
    caught: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    os.environ[_WORKER_PYTHON] = sys.executable
    multiprocessing.spawn.set_executable(str(Path(__file__).with_name("sigint_ignored.sh")))
    try:
        for process in processes:
            process.start()
    finally:
        multiprocessing.spawn.set_executable(sys.executable)
        signal.signal(signal.SIGINT, handler)
    if caught:
        raise KeyboardInterrupt
