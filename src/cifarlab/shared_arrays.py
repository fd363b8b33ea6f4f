"""Arrays handed to worker processes in one shared memory file instead of each worker's pipe.

A spawned worker gets its start-up arguments pickled through a pipe, written by the parent one
worker after the other: with the training split that is 0.1-0.5 GB per worker, seconds before
the last one can start, and a parent that blocks for good when a worker dies before reading it
all (Python's ``multiprocessing`` keeps the pipe's read end open while it writes). Shared, the
arrays are copied once into an anonymous memory file (``memfd_create``) whose descriptor each
worker inherits; what travels through the pipe is the arrays' layouts. The file has no name, so
nothing is left behind however the processes end (a ``/dev/shm`` block would outlive a whole
process group SIGKILLed), and its memory is freed when the last process holding it is gone.

Where there is no ``memfd_create`` (not Linux), or no memory to reserve for the file, the arrays
travel in the pipe as before.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

#: Each array starts on a cache line of its own.
_ALIGN = 64


@dataclass(frozen=True)
class SharedArrays:
    """What a worker needs to map the arrays: the memory file's descriptor (duplicated into the
    worker when a ``multiprocessing`` process is started with it) and the arrays' layouts, or,
    when ``fd`` is None, the arrays themselves.

    layouts : (offset, shape, dtype string) of each array in the file.
    """

    fd: int | None
    layouts: tuple[tuple[int, tuple[int, ...], str], ...]
    arrays: tuple[np.ndarray, ...] = ()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        if self.fd is None:
            return SharedArrays, (None, self.layouts, self.arrays)
        from multiprocessing import reduction

        # Pickled while a process starts: its descriptor is passed to that process.
        return _received, (reduction.DupFd(self.fd), self.layouts)


def _received(duplicate, layouts) -> SharedArrays:  # type: ignore[no-untyped-def]
    return SharedArrays(duplicate.detach(), layouts)


def _memory_file(size: int) -> int | None:
    """A new anonymous memory file of ``size`` bytes, its pages reserved, or None where none can
    be made (not Linux, or no memory for it)."""
    if not hasattr(os, "memfd_create"):
        return None
    fd = os.memfd_create("cifarlab-shared-arrays", os.MFD_CLOEXEC)
    try:
        # Reserved now: a page the system cannot back would otherwise kill the writer with
        # SIGBUS when it is first touched.
        os.posix_fallocate(fd, 0, size)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def shared(arrays: Sequence[np.ndarray]) -> Iterator[SharedArrays]:
    """Copy ``arrays`` into one new memory file for the length of the block; yields the handle
    to give each worker process as an argument (:func:`attach` maps it there). The file is
    closed here on the way out, also on an error; workers that hold it keep it until they end.
    """
    layouts, offset = [], 0
    for array in arrays:
        offset = -(-offset // _ALIGN) * _ALIGN
        layouts.append((offset, tuple(array.shape), array.dtype.str))
        offset += array.nbytes
    size = max(offset, 1)
    fd = _memory_file(size)
    if fd is None:
        yield SharedArrays(None, (), tuple(arrays))
        return
    try:
        with mmap.mmap(fd, size) as block:
            for array, (start, shape, dtype) in zip(arrays, layouts, strict=True):
                np.ndarray(shape, dtype, buffer=block, offset=start)[...] = array
        yield SharedArrays(fd, tuple(layouts))
    finally:
        os.close(fd)


def attach(handle: SharedArrays) -> tuple[np.ndarray, ...]:
    """Copies of the arrays of ``handle`` in this process's own memory (or the carried arrays);
    the handle's descriptor is closed.

    Copies, not views: the kernel backs a process's own memory with transparent huge pages, but
    not shared memory (``shmem_enabled`` is "never" by default), and SGD's minibatches, rows
    gathered at random from the whole training split, then run about 25% slower for the TLB
    misses. The copy takes a few hundredths of a second per 100 MB, in every worker at once.
    """
    if handle.fd is None:
        return handle.arrays
    try:
        block = mmap.mmap(handle.fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(handle.fd)
    with contextlib.closing(block):
        return tuple(
            np.frombuffer(block, dtype, count=math.prod(shape), offset=start).reshape(shape).copy()
            for start, shape, dtype in handle.layouts
        )
