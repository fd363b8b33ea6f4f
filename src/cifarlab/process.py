"""Process lifetime: a stage, and the workers it starts, never outlive the process that ran it.

``dvc`` runs each stage as a child process. If ``dvc`` is killed (SIGTERM to it alone, an
out-of-memory kill, a closed terminal), the stage must stop too instead of finishing unseen and
writing outputs that ``dvc.lock`` never records; search workers must stop with their stage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have ``signum`` sent to this process when its parent dies.

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread checks
    once a second whether this process was re-parented. A parent already gone before this call
    sends the signal at once.
    """
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
