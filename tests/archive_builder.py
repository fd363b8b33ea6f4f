"""Test helpers: build small CIFAR-10-layout archives (valid or hostile) and serve files over HTTP.

Shared by the data-layer tests and the end-to-end tests. It deliberately does not import
cifarlab, so it describes the format independently of the code under test.

    md5 = build_archive(tmp_path / "cifar.tar.gz")                      # a valid archive
    build_archive(p, extra_members=[symlink_member(in_folder("x"), "/etc/passwd")])
    build_archive(p, batches={"test_batch.bin": b"\\x00" * 100})          # override raw bytes
    write_raw_tar_gz(p, long_name_header(400_000_000), raw_member(in_folder("x")))  # hostile tar
    with serve_directory(tmp_path) as base_url: ...                     # http://127.0.0.1:PORT/
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

FOLDER = "cifar-10-batches-bin"
CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
TRAIN_MEMBERS = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_MEMBER = "test_batch.bin"
META_MEMBER = "batches.meta.txt"
README_MEMBER = "readme.html"
# Not sorted, as in the official tar: a reader must not depend on member order.
MEMBER_ORDER = (
    "data_batch_1.bin",
    META_MEMBER,
    "data_batch_3.bin",
    "data_batch_4.bin",
    TEST_MEMBER,
    README_MEMBER,
    "data_batch_5.bin",
    "data_batch_2.bin",
)
RECORD_BYTES = 3073
README_HTML = b"<html><body><p>CIFAR-10 binary version (test fixture).</p></body></html>\n"
HTML_PAGE = (
    b"\n  <!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><p>Please sign in to download this file.</p></body></html>\n"
)
# Fixed so that the same arguments always give byte-identical archives (and the same md5).
_MTIME = 1_244_000_000

# One mean colour per class (R, G, B), far apart so a nearest-neighbour classifier can learn them.
_PALETTE = np.array(
    [
        [200, 40, 40],
        [40, 200, 40],
        [40, 40, 200],
        [200, 200, 40],
        [200, 40, 200],
        [40, 200, 200],
        [120, 120, 120],
        [230, 150, 60],
        [60, 150, 230],
        [150, 60, 230],
    ],
    dtype=np.float64,
)


def in_folder(basename: str) -> str:
    """``"x"`` → ``"cifar-10-batches-bin/x"``."""
    return f"{FOLDER}/{basename}"


def make_records(
    n: int, rng: np.random.Generator, labels: Sequence[int] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic records: X uint8 (n, 3072) (R, G, B planes of 32×32), y uint8 (n,).

    Labels default to a shuffled, balanced 0…9 cycle. Each image is its class's colour with a
    class-dependent brightness gradient plus Gaussian noise, so classes are learnable but not
    trivially identical.
    """
    if labels is None:
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    else:
        y = np.asarray(labels, dtype=np.uint8)
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    # Labels > 9 are allowed (for hostile fixtures); they borrow a palette colour.
    colour = _PALETTE[y % 10]  # (n, 3)
    rows = np.repeat(np.arange(32), 32) / 31.0 - 0.5  # (1024,) row coordinate per pixel
    gradient = 40.0 * np.where(y % 2 == 0, 1.0, -1.0)[:, None] * rows[None, :]  # (n, 1024)
    planes = colour[:, :, None] + gradient[:, None, :]  # (n, 3, 1024)
    planes = planes + rng.normal(0.0, 25.0, size=planes.shape)
    X = np.clip(np.rint(planes), 0, 255).astype(np.uint8).reshape(n, 3072)
    return X, y


def records_to_bytes(X: np.ndarray, y: np.ndarray) -> bytes:
    """(X (n, 3072) uint8, y (n,) uint8) → batch bytes: per record 1 label byte, 3072 pixels."""
    X = np.asarray(X, dtype=np.uint8)
    y = np.asarray(y, dtype=np.uint8)
    if X.ndim != 2 or X.shape[1] != 3072 or y.shape != (X.shape[0],):
        raise ValueError(f"need X (n, 3072) and y (n,), got {X.shape} and {y.shape}")
    return np.concatenate([y[:, None], X], axis=1).tobytes()


def make_batches(
    records_per_batch: int = 20, test_records: int = 20, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The records ``build_archive`` writes for these arguments: basename → (X, y).

    Keys in order ``data_batch_1.bin`` … ``data_batch_5.bin``, ``test_batch.bin``.
    """
    rng = np.random.default_rng(seed)
    batches = {name: make_records(records_per_batch, rng) for name in TRAIN_MEMBERS}
    batches[TEST_MEMBER] = make_records(test_records, rng)
    return batches


def meta_bytes(names: Sequence[str] | str | bytes = CLASS_NAMES) -> bytes:
    """``batches.meta.txt``: one name a line, then a blank line, as in the official archive."""
    if isinstance(names, bytes):
        return names
    if isinstance(names, str):
        return names.encode()
    return ("\n".join(names) + "\n\n").encode()


# --- tar members for hostile archives: each returns (TarInfo, fileobj or None) ---------------


def _info(name: str, type_: bytes, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = mode
    info.mtime = _MTIME
    return info


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    """A regular file ``name`` (used verbatim: include the folder yourself) holding ``data``."""
    info = _info(name, tarfile.REGTYPE)
    info.size = len(data)
    return info, io.BytesIO(data)


def dir_member(name: str) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.DIRTYPE, 0o755), None


def symlink_member(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return info, None


def hardlink_member(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = _info(name, tarfile.LNKTYPE)
    info.linkname = target
    return info, None


def device_member(name: str, kind: str = "chr") -> tuple[tarfile.TarInfo, None]:
    """A character (``kind="chr"``) or block (``"blk"``) device, major/minor 1/3 (/dev/null)."""
    info = _info(name, tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE)
    info.devmajor, info.devminor = 1, 3
    return info, None


def fifo_member(name: str) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.FIFOTYPE), None


MemberSpec = tuple[tarfile.TarInfo, "io.BufferedIOBase | io.BytesIO | None"] | tarfile.TarInfo


# --- raw tar streams with hostile metadata: GNU long names, pax headers, sparse maps ---------
# tarfile refuses to write most of these, so they are laid out block by block. Payloads are
# yielded in pieces so that a header announcing 400 MB costs the test little memory.

_BLOCK = 512
_PIECE = 1 << 20


def header_block(
    name: str, type_: bytes, size: int = 0, patch: Mapping[int, bytes] | None = None
) -> bytes:
    """One raw 512-byte tar header of type ``type_`` announcing ``size`` bytes (any size).

    patch : byte offset → bytes written over the block before its checksum is computed, e.g.
        ``{482: b"\\x01"}``, the "extension blocks follow" flag of a GNU sparse header.
    """
    info = _info(name, type_)
    info.size = size
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    for offset, data in (patch or {}).items():
        block[offset : offset + len(data)] = data
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


def _repeat(byte: bytes, count: int) -> Iterator[bytes]:
    piece = byte * _PIECE
    for _ in range(count // _PIECE):
        yield piece
    yield byte * (count % _PIECE)


def _padding(size: int) -> bytes:
    return bytes(-size % _BLOCK)


def raw_member(name: str, data: bytes = b"") -> bytes:
    """A regular file ``name`` holding ``data``, as raw tar blocks."""
    info, _ = file_member(name, data)
    return info.tobuf(format=tarfile.GNU_FORMAT) + data + _padding(len(data))


def long_name_header(name: str | int, type_: bytes = tarfile.GNUTYPE_LONGNAME) -> Iterator[bytes]:
    """A GNU long-name (``L``) or long-link (``K``) header for the next member: its name (or link
    target) ``name``, or (an int) that many letters a without the usual closing NUL."""
    if isinstance(name, str):
        payload = name.encode() + b"\0"
        yield header_block("././@LongLink", type_, len(payload)) + payload
        yield _padding(len(payload))
        return
    yield header_block("././@LongLink", type_, name)
    yield from _repeat(b"a", name)
    yield _padding(name)


def pax_record(key: str, value: str) -> bytes:
    """One pax record, ``"<length> key=value\\n"``, its length field counting itself."""
    body = f" {key}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    length += len(str(length)) - len(str(len(body)))
    return str(length).encode() + body


def pax_header(
    size: int | None = None,
    type_: bytes = tarfile.XHDTYPE,
    records: Mapping[str, str] | None = None,
) -> Iterator[bytes]:
    """A pax extended (``x``) or global (``g``) header.

    Either ``records`` (key → value, written as given) or one ``path`` record of exactly
    ``size`` bytes whose value is letters a.
    """
    if records is not None:
        body = b"".join(pax_record(k, v) for k, v in records.items())
        yield header_block("././@PaxHeader", type_, len(body)) + body + _padding(len(body))
        return
    if size is None:
        raise ValueError("give size or records")
    start = f"{size} path=".encode()
    if size < len(start) + 2:
        raise ValueError(f"a pax header of {size} bytes cannot hold a path record")
    yield header_block("././@PaxHeader", type_, size)
    yield start
    yield from _repeat(b"a", size - len(start) - 1)
    yield b"\n" + _padding(size)


def gnu_sparse_header(name: str, extension_blocks: int) -> Iterator[bytes]:
    """An old-GNU sparse (``S``) member of size 0 followed by ``extension_blocks`` blocks of 21
    (offset, length) pairs each, every block but the last flagging that another follows."""
    flag = {482: b"\x01"} if extension_blocks else None
    yield header_block(name, tarfile.GNUTYPE_SPARSE, 0, patch=flag)
    pairs = b"%011o\0%011o\0" % (1, 1) * 21
    more, last = pairs + b"\x01" + bytes(7), pairs + bytes(8)
    per_piece = _PIECE // _BLOCK
    for _ in range((extension_blocks - 1) // per_piece):
        yield more * per_piece
    if extension_blocks:
        yield more * ((extension_blocks - 1) % per_piece) + last


def write_raw_tar_gz(
    path: str | os.PathLike[str], *pieces: Iterable[bytes], compresslevel: int = 6
) -> str:
    """Write the raw tar blocks of ``pieces`` in order, then the end-of-archive marker, as a
    reproducible gzip at ``path``; return its md5 (lowercase hex)."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel
        ) as gz,
    ):
        for part in pieces:
            for piece in [part] if isinstance(part, bytes) else part:
                gz.write(piece)
        gz.write(bytes(2 * _BLOCK))
    return _md5_of(path)


def _md5_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_PIECE):
            digest.update(chunk)
    return digest.hexdigest()


def build_archive(
    path: str | os.PathLike[str],
    batches: Mapping[str, bytes] | None = None,
    *,
    records_per_batch: int = 20,
    test_records: int = 20,
    seed: int = 0,
    meta: Sequence[str] | str | bytes = CLASS_NAMES,
    extra_members: Iterable[MemberSpec] = (),
    omit: Iterable[str] = (),
    mode: str = "w:gz",
    dir_entry: bool = True,
    readme: bool = True,
) -> str:
    """Write a CIFAR-10-layout tar at ``path`` and return its md5 (lowercase hex).

    By default the official layout: the ``cifar-10-batches-bin`` directory entry, then five
    training batches of ``records_per_batch`` records, a test batch of ``test_records`` records
    (contents: ``make_batches(records_per_batch, test_records, seed)``), ``batches.meta.txt``
    from ``meta`` (names, or raw str/bytes) and ``readme.html``, in a non-sorted order.

    batches : raw bytes replacing (or, for other names such as ``data_batch_6.bin``, adding)
        members; keys are basenames (``"test_batch.bin"``) or full names
        (``"cifar-10-batches-bin/test_batch.bin"``); any other name with ``/`` is used as is.
    extra_members : ``(TarInfo, fileobj or None)`` pairs (see ``file_member``, ``symlink_member``,
        …) or bare TarInfos, appended verbatim after the regular members.
    omit : basenames to leave out (e.g. ``"test_batch.bin"``, ``"readme.html"``).
    mode : a ``tarfile`` write mode; ``"w:gz"`` writes a reproducible gzip (mtime 0, no name).
    dir_entry, readme : whether to include the directory entry and ``readme.html``.
    """
    omitted = set(omit)
    contents: dict[str, bytes] = {
        name: records_to_bytes(X, y)
        for name, (X, y) in make_batches(records_per_batch, test_records, seed).items()
    }
    contents[META_MEMBER] = meta_bytes(meta)
    if readme:
        contents[README_MEMBER] = README_HTML
    for name, data in (batches or {}).items():
        # "cifar-10-batches-bin/x" and "x" name the same member: override, don't duplicate.
        base = name.removeprefix(f"{FOLDER}/")
        contents[base if "/" not in base else name] = bytes(data)
    ordered = [n for n in MEMBER_ORDER if n in contents]
    ordered += [n for n in contents if n not in MEMBER_ORDER]

    def write(tar: tarfile.TarFile) -> None:
        if dir_entry and FOLDER not in omitted and f"{FOLDER}/" not in omitted:
            tar.addfile(*dir_member(FOLDER))
        for name in ordered:
            if name in omitted:
                continue
            tar.addfile(*file_member(name if "/" in name else in_folder(name), contents[name]))
        for spec in extra_members:
            if isinstance(spec, tarfile.TarInfo):
                tar.addfile(spec)
            else:
                tar.addfile(*spec)

    if mode in ("w:gz", "w|gz"):
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            write(tar)
    else:
        with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
            write(tar)
    return _md5_of(path)


# --- a local HTTP server ---------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """Files under the served root, plus special paths for failure cases.

    ``/html/<anything>``      200, Content-Type text/html, an HTML sign-in page.
    ``/truncated/<file>``     the file's full Content-Length but only half its body.
    ``/status/<code>/...``    an empty response with that HTTP status.
    ``/reason/<n>``           status 500 with a reason phrase of n letters r.
    ``/stall/<n>/<file>``     the file's full Content-Length, its first n bytes, then silence
                              until the server shuts down (a stalled transfer).
    """

    def do_GET(self) -> None:  # http.server's naming
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/html/"):
            self._send_bytes(HTML_PAGE, "text/html; charset=utf-8")
        elif path.startswith("/truncated/"):
            self._send_truncated(path.removeprefix("/truncated/"))
        elif path.startswith("/stall/"):
            _, _, count, relative = path.split("/", 3)
            self._send_stalled(relative, int(count))
        elif path.startswith("/reason/"):
            self.send_response(HTTPStatus.INTERNAL_SERVER_ERROR, "r" * int(path.split("/")[2]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            super().do_GET()

    def _send_bytes(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_truncated(self, relative: str) -> None:
        target = os.path.join(self.directory, relative)
        if not os.path.isfile(target):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = os.path.getsize(target)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(target, "rb") as fh:
            shutil.copyfileobj(io.BytesIO(fh.read(size // 2)), self.wfile)
        # HTTP/1.0: the connection closes after this handler, short of the announced length.

    def _send_stalled(self, relative: str, count: int) -> None:
        target = os.path.join(self.directory, relative)
        if not os.path.isfile(target):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(os.path.getsize(target)))
        self.end_headers()
        with open(target, "rb") as fh:
            self.wfile.write(fh.read(count))
        self.wfile.flush()
        self.server.stopping.wait(30)  # type: ignore[attr-defined]  # a _QuietServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set on shutdown, so that a stalling handler lets go of its connection.
        self.stopping = threading.Event()

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-response is expected in the failure tests


@contextlib.contextmanager
def serve_directory(root: str | os.PathLike[str]) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (a free port) in a daemon thread; yield ``http://127.0.0.1:PORT/``.

    Also answers ``/html/...`` with an HTML page, ``/truncated/<file>`` with half the file under
    the full Content-Length, ``/stall/<n>/<file>`` with n bytes of it and then nothing,
    ``/status/<code>`` with that status and ``/reason/<n>`` with a 500 whose reason phrase is n
    characters long. Shut down on exit.
    """
    handler = functools.partial(_Handler, directory=os.fspath(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
