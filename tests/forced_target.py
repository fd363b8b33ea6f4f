"""Run a check in child processes whose numba code is compiled for older x86 CPUs.

numba reads NUMBA_CPU_NAME / NUMBA_CPU_FEATURES when it is imported, and cifarlab's kernels fix
their paths when they are imported, so an older CPU's code runs only in a fresh process with
the variables of ``cifarlab.knn._kernels.target_env`` set. A newer CPU executes the code of an
older one, so this CPU runs every target whose instructions it has (``/proc/cpuinfo`` flags);
the others are left out, and the tests that want them skip.

numba's on-disk cache is safe to share with such children: its index keys every entry by the
signature and ``codegen.magic_tuple()`` (target triple, CPU name, CPU features), so code
compiled for a forced target is stored beside the host's and never loaded in its place.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# isa -> the /proc/cpuinfo flag this CPU needs to execute that target's code.
HOST_FLAG = {"avx2": "avx2", "avxvnni": "avx_vnni", "sse2": "sse2"}


def host_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def runnable(isas) -> list[str]:
    """Those of ``isas`` whose code this machine can execute."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    flags = host_flags()
    return [isa for isa in isas if HOST_FLAG[isa] in flags]


def run_children(module: str, function: str, isas) -> dict[str, dict]:
    """``tests/<module>.py``'s ``function()`` (returning something JSON can hold) run once per
    target of ``isas`` this machine executes, all children at once (each compiles its
    kernels, mostly on one core); returns {isa: its result}. A failed child fails the test."""
    from cifarlab.knn._kernels import target_env

    child = (
        f"import json, sys; sys.path.insert(0, {str(TESTS)!r}); import {module} as m; "
        f"print(json.dumps(m.{function}()))"
    )
    procs = {
        isa: subprocess.Popen(
            [sys.executable, "-c", child],
            env={**os.environ, **target_env(isa)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for isa in runnable(isas)
    }
    results = {}
    for isa, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{isa} child failed:\n{err[-3000:]}"
        results[isa] = json.loads(out.strip().splitlines()[-1])
    return results
