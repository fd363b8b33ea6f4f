"""Parse the CIFAR-10 binary archive (``cifar-10-binary.tar.gz``) in memory, validating it.

Nothing is extracted: members are read from the gzip stream one after the other, so a hostile
archive (path traversal, links, devices, oversized members) can never write to disk, and it is
refused with an :class:`~cifarlab.errors.ArchiveError` naming the member and the problem.
Tar metadata (GNU long names, pax headers, sparse maps) is capped before it is read, and names
are quoted in messages only up to a bounded prefix.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cifarlab.errors import ArchiveError
from cifarlab.errors import quoted as _quote

__all__ = [
    "Cifar10Archive",
    "read_cifar10_archive",
    "parse_batch",
    "parse_meta",
    "FOLDER",
    "TRAIN_MEMBERS",
    "TEST_MEMBER",
    "META_MEMBER",
    "RECORD_BYTES",
    "IMAGE_BYTES",
    "N_CLASSES",
    "MAX_MEMBER_BYTES",
    "MAX_HEADER_BYTES",
]

FOLDER = "cifar-10-batches-bin"
TRAIN_MEMBERS = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_MEMBER = "test_batch.bin"
META_MEMBER = "batches.meta.txt"
# Present in the official archive, never read.
OPTIONAL_MEMBERS = ("readme.html",)
REQUIRED_MEMBERS = (*TRAIN_MEMBERS, TEST_MEMBER, META_MEMBER)

IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 1 + IMAGE_BYTES
N_CLASSES = 10
# An official batch is 30.7 MB; anything far larger is hostile or not CIFAR-10, and is refused
# before it is decompressed into memory.
MAX_MEMBER_BYTES = 200 * 1000 * 1000
MAX_META_BYTES = 64 * 1024
# The metadata blocks before one member (GNU long name / long link, pax extended and global
# headers): tarfile reads each one whole into memory, so they are capped before it does. The
# official archive has none; a long name, or a pax header's times and xattrs, fit many times over.
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_BLOCKS = 8
# A tar ends with zero padding to its record size (10 KiB for GNU tar); more than this after the
# end-of-archive marker is not padding, and decompressing it would only waste time.
MAX_TRAILING_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Cifar10Archive:
    """The parsed archive.

    train_batches : five ``(X, y)`` pairs in ``data_batch_1`` … ``data_batch_5`` order, X uint8
        ``(n_b, 3072)`` (1024 red, 1024 green, 1024 blue, each row-major 32×32), y uint8 ``(n_b,)``
        with values in 0–9.
    test : ``(X, y)`` of ``test_batch.bin``, same layout.
    class_names : the 10 names of ``batches.meta.txt``, label ``i`` is ``class_names[i]``.
    """

    train_batches: list[tuple[np.ndarray, np.ndarray]]
    test: tuple[np.ndarray, np.ndarray]
    class_names: list[str]

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X (N, 3072) uint8, y (N,) uint8)``: the five training batches concatenated in order.

        A fresh copy on every access (150 MB for the full data set): keep the result.
        """
        X = np.concatenate([X for X, _ in self.train_batches], axis=0)
        y = np.concatenate([y for _, y in self.train_batches], axis=0)
        return X, y


def read_cifar10_archive(path: str | os.PathLike[str]) -> Cifar10Archive:
    """Read and validate ``cifar-10-binary.tar.gz`` at ``path`` entirely in memory.

    Accepted members: ``cifar-10-batches-bin/`` (the directory entry), ``data_batch_1.bin`` …
    ``data_batch_5.bin``, ``test_batch.bin``, ``batches.meta.txt`` and ``readme.html`` inside it,
    in any order. A batch may hold any whole number ≥ 1 of 3,073-byte records.

    Raises ArchiveError for: a file that is not a gzip-compressed tar, or is truncated/corrupt;
    a member with an absolute path, ``..`` or outside ``cifar-10-batches-bin/``; a link, device,
    FIFO or other non-regular member; an unexpected, duplicate, missing or oversized member; a
    batch that is empty, not a whole number of records, or holds a label > 9; a meta file without
    exactly 10 distinct non-empty class names.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError as exc:
        raise ArchiveError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    with fh:
        head = fh.read(512)
        if not head:
            raise ArchiveError(f"{path} is empty (0 bytes): not a CIFAR-10 archive")
        if head[:2] != b"\x1f\x8b":
            raise ArchiveError(f"{path} is not a gzip file (not a .tar.gz){_html_hint(head)}")
        fh.seek(0)
        current = _Cursor()
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                members = _read_members(path, gz, current)
                _drain(path, gz)
        except ArchiveError:
            raise
        # ValueError: tarfile's own parsing of malformed pax numbers and sparse maps.
        except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
            where = f" while reading member {_quote(current.name)}" if current.name else ""
            raise ArchiveError(
                f"{path} is not a valid tar.gz, or is truncated or corrupt{where}: {_detail(exc)}"
            ) from exc

    missing = [f"{FOLDER}/{name}" for name in REQUIRED_MEMBERS if name not in members]
    if missing:
        raise ArchiveError(f"{path}: missing member(s) {', '.join(missing)}")
    train_batches = [
        parse_batch(members[name], f"{path}:{FOLDER}/{name}") for name in TRAIN_MEMBERS
    ]
    test = parse_batch(members[TEST_MEMBER], f"{path}:{FOLDER}/{TEST_MEMBER}")
    class_names = parse_meta(members[META_MEMBER], f"{path}:{FOLDER}/{META_MEMBER}")
    return Cifar10Archive(train_batches=train_batches, test=test, class_names=class_names)


def parse_batch(data: bytes, where: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """Bytes of one ``*.bin`` batch → ``(X (n, 3072) uint8, y (n,) uint8)``, validated.

    ``where`` names the batch in error messages.
    """
    n_records, leftover = divmod(len(data), RECORD_BYTES)
    if leftover:
        raise ArchiveError(
            f"{where}: size {len(data):,} bytes is not a whole number of {RECORD_BYTES}-byte "
            f"records ({n_records:,} records and {leftover:,} bytes left over)"
        )
    if n_records == 0:
        raise ArchiveError(f"{where}: holds no records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(n_records, RECORD_BYTES)
    y = records[:, 0].copy()
    bad = np.flatnonzero(y >= N_CLASSES)
    if bad.size:
        first = int(bad[0])
        raise ArchiveError(
            f"{where}: record {first} (0-based) has label {int(y[first])}, labels are "
            f"0-{N_CLASSES - 1} ({bad.size:,} of {n_records:,} records are out of range)"
        )
    # A contiguous copy: the pixel columns of ``records`` are a strided view of the raw bytes.
    X = np.ascontiguousarray(records[:, 1:])
    return X, y


def parse_meta(data: bytes, where: str = META_MEMBER) -> list[str]:
    """Bytes of ``batches.meta.txt`` → the 10 class names (blank lines and padding ignored)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"{where}: not UTF-8 text ({exc})") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != N_CLASSES:
        raise ArchiveError(
            f"{where}: expected exactly {N_CLASSES} non-empty class names, one a line, "
            f"found {len(names)}: {_quote(names[:12], 200)}"
        )
    if len(set(names)) != N_CLASSES:
        raise ArchiveError(f"{where}: class names are not distinct: {_quote(names, 200)}")
    return names


class _HeaderRefused(Exception):
    """Raised inside tarfile's header parsing; re-raised as an ArchiveError naming the file."""


# The header types that describe the next member rather than being one: type → what it is.
_METADATA_TYPES = {
    tarfile.GNUTYPE_LONGNAME: "a GNU long-name header",
    tarfile.GNUTYPE_LONGLINK: "a GNU long-link header",
    tarfile.XHDTYPE: "a pax extended header",
    tarfile.XGLTYPE: "a pax global header",
    tarfile.SOLARIS_XHDTYPE: "a Solaris extended header",
}


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses oversized or endless metadata before tarfile reads it.

    tarfile parses a member's header with ``_proc_member``, which reads a GNU long-name or pax
    header's whole payload (``_proc_gnulong``, ``_proc_pax``) and then recurses into the next
    header, so both the payload and the chain of such headers must be bounded here, ahead of it.
    Sparse files (old GNU ``S`` headers and pax ``GNU.sparse.*`` maps, whose extension blocks
    are read without limit) are not in the CIFAR-10 layout and are refused outright.
    """

    def _proc_member(self, tar: _CappedTarFile) -> tarfile.TarInfo:
        if self.size < 0:
            raise _HeaderRefused(f"a tar header at byte {self.offset:,} has a negative size")
        if self.type == tarfile.GNUTYPE_SPARSE:
            self._refuse_sparse()
        if self.type not in _METADATA_TYPES:
            tar.header_blocks = tar.header_bytes = 0  # the member itself: its chain is complete
            return super()._proc_member(tar)
        tar.header_blocks += 1
        tar.header_bytes += self.size
        what = f"{_METADATA_TYPES[self.type]} (tar type {self.type!r}) at byte {self.offset:,}"
        if tar.header_blocks > MAX_HEADER_BLOCKS:
            raise _HeaderRefused(
                f"{what} is metadata header number {tar.header_blocks} before one member, more "
                f"than the {MAX_HEADER_BLOCKS} allowed; not a CIFAR-10 archive"
            )
        if tar.header_bytes > MAX_HEADER_BYTES:
            total = "" if tar.header_bytes == self.size else f" ({tar.header_bytes:,} in all)"
            raise _HeaderRefused(
                f"{what} announces {self.size:,} bytes{total}, more than the "
                f"{MAX_HEADER_BYTES:,} allowed for one member's metadata; not a CIFAR-10 archive"
            )
        return super()._proc_member(tar)

    def _refuse_sparse(self, *args: object) -> None:
        raise _HeaderRefused(
            f"a tar header at byte {self.offset:,} is a sparse file; only regular files are allowed"
        )

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _refuse_sparse


class _CappedTarFile(tarfile.TarFile):
    """Reads members with :class:`_CappedTarInfo`, keeping the count of the current chain."""

    tarinfo = _CappedTarInfo
    header_blocks = 0
    header_bytes = 0


class _Cursor:
    """The member being read, for error messages raised by the decompressor mid-member."""

    name: str | None = None


def _read_members(path: Path, gz: BinaryIO, current: _Cursor) -> dict[str, bytes]:
    """Stream the tar in ``gz``, validating each member; return basename → bytes of those needed."""
    contents: dict[str, bytes] = {}
    seen: set[str] = set()
    # "r|": a forward-only stream, so the compressed data is decompressed exactly once and no
    # member can be reached twice by seeking.
    try:
        with _CappedTarFile.open(fileobj=gz, mode="r|") as tar:
            for info in tar:
                current.name = info.name
                base = _check_member(path, info)
                if base in seen:
                    raise ArchiveError(f"{path}: duplicate member {_quote(info.name)}")
                seen.add(base)
                contents.update(_read_member(path, tar, info, base))
            current.name = None
    except _HeaderRefused as exc:
        raise ArchiveError(f"{path}: {exc}") from None
    return contents


def _read_member(
    path: Path, tar: tarfile.TarFile, info: tarfile.TarInfo, base: str
) -> dict[str, bytes]:
    """``{base: bytes}`` of a checked member that is needed, ``{}`` for one that is skipped."""
    limit = MAX_META_BYTES if base == META_MEMBER else MAX_MEMBER_BYTES
    # Checked for skipped members too: skipping still decompresses the whole member.
    if info.size > limit:
        raise ArchiveError(
            f"{path}: member {_quote(info.name)} is {info.size:,} bytes, more than the "
            f"{limit:,} allowed"
        )
    if base not in REQUIRED_MEMBERS:
        return {}  # the directory entry or readme.html
    stream = tar.extractfile(info)
    if stream is None:  # pragma: no cover - regular files always give a stream
        raise ArchiveError(f"{path}: member {_quote(info.name)} cannot be read")
    data = stream.read()
    if len(data) != info.size:
        raise ArchiveError(
            f"{path}: member {_quote(info.name)} is truncated: {len(data):,} of {info.size:,} bytes"
        )
    return {base: data}


def _check_member(path: Path, info: tarfile.TarInfo) -> str:
    """Refuse an unsafe or unexpected member; return its basename ("" for the folder entry)."""
    name = info.name
    label = f"{path}: member {_quote(name)}"
    parts = name.split("/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{label} has an absolute path (path traversal)")
    if ".." in parts or "\\" in name:
        raise ArchiveError(f"{label} points outside its folder (path traversal)")
    if info.issym():
        target = _quote(info.linkname)
        raise ArchiveError(f"{label} is a symbolic link to {target}; links are refused")
    if info.islnk():
        target = _quote(info.linkname)
        raise ArchiveError(f"{label} is a hard link to {target}; links are refused")
    if info.ischr() or info.isblk():
        raise ArchiveError(f"{label} is a device file; only regular files are allowed")
    if info.isfifo():
        raise ArchiveError(f"{label} is a FIFO (named pipe); only regular files are allowed")
    if name == FOLDER:
        if not info.isdir():
            raise ArchiveError(f"{label} should be the folder's directory entry")
        return ""
    if parts[0] != FOLDER or len(parts) != 2 or not parts[1]:
        raise ArchiveError(
            f"{label} lies outside {FOLDER}/ (path traversal or not the CIFAR-10 layout)"
        )
    if not info.isreg() or info.issparse():
        raise ArchiveError(f"{label} is not a regular file (tar type {info.type!r})")
    base = parts[1]
    if base not in REQUIRED_MEMBERS and base not in OPTIONAL_MEMBERS:
        expected = ", ".join((*REQUIRED_MEMBERS, *OPTIONAL_MEMBERS))
        raise ArchiveError(f"{label} is unexpected ({FOLDER}/ may hold only {expected})")
    return base


def _drain(path: Path, gz: BinaryIO) -> None:
    """Read the gzip stream to its end so its CRC and length trailer are verified."""
    left = MAX_TRAILING_BYTES
    while chunk := gz.read(1 << 20):
        left -= len(chunk)
        if left < 0:
            raise ArchiveError(
                f"{path}: more than {MAX_TRAILING_BYTES:,} bytes follow the end of the tar"
            )


def _detail(exc: BaseException) -> str:
    """``"TypeName: message"``, the message cut to a bounded prefix (it may quote the data)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text if len(text) <= 200 else _quote(text, 200)}"


def _html_hint(head: bytes) -> str:
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if start.startswith((b"<!doctype", b"<html")):
        return "; it is an HTML page (a server error or login page saved in its place?)"
    return ""
