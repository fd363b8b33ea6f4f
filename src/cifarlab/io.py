"""File output a reader can trust: never half-written, and a stage's outputs all or none.

Every file is written to a temporary file beside it and renamed into place. Inside
:func:`staged_outputs` (the stage runner opens one around every stage) the renames wait until the
whole stage has succeeded, then happen together; a stage that fails, is interrupted or fills the
disk leaves none of its new files, and none half-written. Files get the permissions ordinary
files get (``0666`` less the umask), not the ``0600`` of a temporary file.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.errors import DataError

# The staged files of the innermost staged_outputs block: [(temporary, final), ...].
_STAGED: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "cifarlab_staged_outputs", default=None
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_outputs() -> Iterator[None]:
    """Hold back every file written through this module until the block succeeds.

    On success all staged files are renamed onto their final paths, one after the other with
    SIGINT and SIGTERM held off, so a reader or a signal sees all or none of them; on any
    exception (KeyboardInterrupt included) they are deleted and no final path is touched.
    """
    staged: list[tuple[Path, Path]] = []
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _STAGED.reset(token)
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def current_path(path: str | os.PathLike[str]) -> Path:
    """Where the file for ``path`` is now: its staged temporary file while it waits for the end
    of a :func:`staged_outputs` block, else ``path`` itself."""
    final = Path(path).resolve()
    for tmp, staged_final in reversed(_STAGED.get() or []):
        if staged_final == final:
            return tmp
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory, so the rename is atomic. On any exception
    (KeyboardInterrupt included) it is removed and ``path`` is left untouched. Inside
    :func:`staged_outputs` the rename waits for the end of that block.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        # Name the output, not its temporary file (a full disk says which output it stopped).
        raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    staged = _STAGED.get()
    if staged is None:
        os.replace(tmp, final)
    else:
        staged.append((tmp, final.resolve()))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str], keys: Sequence[str] = ()) -> Any:
    """The JSON document at ``path``; with ``keys``, a mapping that must hold each of them.

    A missing file, broken JSON or a missing key is a DataError naming the file, so a
    hand-edited or truncated report stops its reader with one clear line.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} not found: run the earlier stages first (dvc repro)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); rerun the stage writing it") from None
    if keys:
        if not isinstance(document, dict):
            raise DataError(f"{path} must hold a JSON object with {list(keys)}")
        missing = [key for key in keys if key not in document]
        if missing:
            raise DataError(
                f"{path} has no {missing[0]!r} (expected {list(keys)}); "
                "rerun the stage that writes it"
            )
    return document


def save_arrays(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Write named arrays to an uncompressed ``.npz``, atomically (no pickled objects)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` written by :func:`save_arrays`; pickles are refused."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def file_md5(path: str | os.PathLike[str]) -> str:
    """The md5 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
