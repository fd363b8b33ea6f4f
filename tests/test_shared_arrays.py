"""Tests of cifarlab.shared_arrays: arrays handed to worker processes in one shared memory file."""

from __future__ import annotations

import multiprocessing
import os
import pickle

import numpy as np
import pytest

from cifarlab import shared_arrays
from cifarlab.shared_arrays import attach, shared

ARRAYS = (
    np.arange(3 * 5, dtype=np.uint8).reshape(3, 5),
    np.array([7, -1, 3], dtype=np.int64),
    np.zeros((0, 4), dtype=np.float32),
    np.linspace(0, 1, 9, dtype=np.float64).reshape(3, 3)[:, ::2],  # not contiguous
)
needs_memfd = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no memfd_create")


def _child(handle, out):
    arrays = attach(handle)
    assert all(a.flags.writeable and a.flags.c_contiguous for a in arrays)
    arrays[0][0, 0] = 99  # a private copy
    np.savez(out, *arrays)


def _shm_names():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@needs_memfd
def test_a_worker_process_gets_equal_private_writable_copies(tmp_path):
    before = _shm_names()
    context = multiprocessing.get_context("spawn")
    with shared(ARRAYS) as handle:
        assert handle.fd is not None and handle.arrays == ()  # nothing large to pickle
        assert _shm_names() == before  # a file without a name: nothing to leave behind
        workers = [context.Process(target=_child, args=(handle, tmp_path / f"out{i}.npz"))
                   for i in range(2)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
    with pytest.raises(OSError):
        os.fstat(handle.fd)  # closed on the way out
    for i in range(2):
        with np.load(tmp_path / f"out{i}.npz") as got:
            for j, array in enumerate(ARRAYS):
                expected = array.copy()
                if j == 0:
                    expected[0, 0] = 99
                np.testing.assert_array_equal(got[f"arr_{j}"], expected)
                assert got[f"arr_{j}"].dtype == array.dtype


@needs_memfd
def test_the_file_is_closed_when_the_work_fails():
    with pytest.raises(RuntimeError, match="boom"), shared(ARRAYS) as handle:
        os.fstat(handle.fd)
        raise RuntimeError("boom")
    with pytest.raises(OSError):
        os.fstat(handle.fd)


def test_without_a_memory_file_the_arrays_travel_themselves(monkeypatch):
    monkeypatch.setattr(shared_arrays, "_memory_file", lambda size: None)
    with shared(ARRAYS) as handle:
        assert handle.fd is None
        got = attach(pickle.loads(pickle.dumps(handle)))
    for array, copy in zip(ARRAYS, got, strict=True):
        np.testing.assert_array_equal(copy, array)


@needs_memfd
def test_no_memory_for_the_file_is_the_fallback_not_a_crash(monkeypatch):
    def no_room(fd, offset, size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with shared(ARRAYS) as handle:
        assert handle.fd is None and len(handle.arrays) == len(ARRAYS)
