"""Arrays handed to worker processes in one shared memory block instead of each worker's pipe.

A spawned worker gets its start-up arguments pickled through a pipe, written by the parent one
worker after the other: with the training split that is 0.1-0.5 GB per worker, seconds before
the last one can start, a private copy in every worker, and a parent that blocks for good when a
worker dies before reading it all (Python's ``multiprocessing`` keeps the pipe's read end open
while it writes). Shared, the arrays are copied once, every worker maps the same pages, and what
travels through the pipe is a name and the arrays' layouts.

Where the shared memory filesystem has no room for them (a container's 64 MB ``/dev/shm``), the
arrays travel in the pipe as before, rather than a worker dying of SIGBUS on a page the
filesystem cannot back.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

_SHM_DIR = "/dev/shm"
#: Each array starts on a cache line of its own.
_ALIGN = 64
#: Room left free on the shared memory filesystem for everybody else.
_HEADROOM = 64 << 20


@dataclass(frozen=True)
class SharedArrays:
    """What a worker needs to map the arrays (picklable, a few hundred bytes).

    name : the shared memory block, or None when the arrays themselves are carried in
    ``arrays``. layouts : (offset, shape, dtype string) of each array in the block.
    """

    name: str | None
    layouts: tuple[tuple[int, tuple[int, ...], str], ...]
    arrays: tuple[np.ndarray, ...] = ()


def _room() -> int:
    """Bytes free on the shared memory filesystem (0 where there is none to ask)."""
    try:
        stat = os.statvfs(_SHM_DIR)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


@contextlib.contextmanager
def shared(arrays: Sequence[np.ndarray]) -> Iterator[SharedArrays]:
    """Copy ``arrays`` into one new shared memory block for the length of the block; yields the
    handle to give each worker (:func:`attach` maps it there). The block is removed on the way
    out, also on an error; a process killed meanwhile leaves it to Python's resource tracker.
    """
    layouts, offset = [], 0
    for array in arrays:
        offset = -(-offset // _ALIGN) * _ALIGN
        layouts.append((offset, tuple(array.shape), array.dtype.str))
        offset += array.nbytes
    if offset + _HEADROOM > _room():
        yield SharedArrays(None, (), tuple(arrays))
        return
    block = shared_memory.SharedMemory(create=True, size=max(offset, 1))
    try:
        for array, (start, shape, dtype) in zip(arrays, layouts, strict=True):
            np.ndarray(shape, dtype, buffer=block.buf, offset=start)[...] = array
        yield SharedArrays(block.name, tuple(layouts))
    finally:
        block.close()
        block.unlink()


def attach(handle: SharedArrays) -> tuple[np.ndarray, ...]:
    """Copies of the arrays of ``handle`` in this process's own memory (or the carried arrays).

    Copies, not views: the kernel backs a process's own memory with transparent huge pages, but
    not a shared block (``shmem_enabled`` is "never" by default), and SGD's minibatches, rows
    gathered at random from the whole training split, then run about 25% slower for the TLB
    misses. The copy takes a few hundredths of a second per 100 MB, in every worker at once.
    """
    if handle.name is None:
        return handle.arrays
    # Mapped as a plain file: a SharedMemory object here would register the block with the
    # resource tracker a second time.
    fd = os.open(os.path.join(_SHM_DIR, handle.name), os.O_RDONLY)
    try:
        block = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    with contextlib.closing(block):
        return tuple(
            np.frombuffer(block, dtype, count=math.prod(shape), offset=start).reshape(shape).copy()
            for start, shape, dtype in handle.layouts
        )
