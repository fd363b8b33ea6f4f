"""Tests of cifarlab.shared_arrays: arrays handed to worker processes in one shared block."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

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


def _block_exists(name):
    return os.path.exists(os.path.join("/dev/shm", name))


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no shared memory filesystem")
def test_another_process_gets_equal_private_writable_copies(tmp_path):
    handle_file, out = tmp_path / "handle.pickle", tmp_path / "out.npz"
    with shared(ARRAYS) as handle:
        assert handle.name is not None and handle.arrays == ()  # nothing large to pickle
        assert len(pickle.dumps(handle)) < 1000
        handle_file.write_bytes(pickle.dumps(handle))
        child = (
            "import pickle, sys, numpy as np\n"
            "from cifarlab.shared_arrays import attach\n"
            "handle = pickle.loads(open(sys.argv[1], 'rb').read())\n"
            "arrays = attach(handle)\n"
            "assert all(a.flags.writeable and a.flags.c_contiguous for a in arrays)\n"
            "arrays[0][0, 0] = 99  # private: the parent's block does not change\n"
            "again = attach(handle)\n"
            "np.savez(sys.argv[2], *again, first=arrays[0])\n"
        )
        subprocess.run([sys.executable, "-c", child, handle_file, out], check=True)
        assert _block_exists(handle.name)
    assert not _block_exists(handle.name)  # removed on the way out
    with np.load(out) as got:
        for i, array in enumerate(ARRAYS):
            np.testing.assert_array_equal(got[f"arr_{i}"], array)
            assert got[f"arr_{i}"].dtype == array.dtype
        assert got["first"][0, 0] == 99


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no shared memory filesystem")
def test_the_block_is_removed_when_the_work_fails():
    with pytest.raises(RuntimeError, match="boom"), shared(ARRAYS) as handle:
        assert _block_exists(handle.name)
        raise RuntimeError("boom")
    assert not _block_exists(handle.name)


def test_without_room_for_them_the_arrays_travel_themselves(monkeypatch):
    monkeypatch.setattr(shared_arrays, "_room", lambda: 10 << 20)  # a container's small /dev/shm
    big = np.ones(1 << 20, dtype=np.float32)  # 4 MB + the headroom left free: too much
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    with shared((big,)) as handle:
        assert handle.name is None
        (got,) = attach(pickle.loads(pickle.dumps(handle)))
        np.testing.assert_array_equal(got, big)
        after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
        assert after == before  # no block made
