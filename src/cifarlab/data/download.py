"""Fetch the CIFAR-10 archive from a URL or a path, verified by md5, written atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, url2pathname, urlopen

from tqdm.auto import tqdm

from cifarlab import __version__
from cifarlab.errors import ChecksumError, ConfigError, DownloadError
from cifarlab.errors import quoted as _quote
from cifarlab.io import atomic_path

__all__ = ["download", "md5_of_file"]

_MD5_RE = re.compile(r"[0-9a-fA-F]{32}")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# Enough of the body's start to recognise an HTML error / login page served in place of the file.
_SNIFF_BYTES = 1024


def md5_of_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Lowercase hex md5 of the file at ``path``, read in ``chunk_size`` pieces."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    md5: str,
    *,
    progress: bool = True,
    timeout: float = 30.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Copy ``url`` to ``dest`` if and only if its md5 is ``md5``; return ``dest`` as a Path.

    ``url`` is an ``http://`` / ``https://`` URL, a ``file://`` URL, or a plain filesystem path
    (a relative one is resolved against the current directory); ``url`` and ``md5`` are
    params.yaml's ``data.url`` and ``data.md5`` in the pipeline, and messages name them so.
    The body is streamed to a temporary file beside ``dest`` while its md5 is computed; only a
    matching body is renamed onto ``dest``. On any failure no temporary file remains and
    ``dest`` is left as it was (nothing is created there).

    Raises ConfigError (malformed md5, URL scheme or option), DownloadError (unreachable host,
    HTTP error status, missing file, broken, stalled or truncated transfer) or ChecksumError
    (the body's md5 differs; the message says when the body was an HTML page rather than the
    archive). A body that matches is accepted whatever it holds, even an empty one: whether it
    is a CIFAR-10 archive is for ``read_cifar10_archive`` to say.
    """
    expected = _check_md5(md5)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    dest = Path(dest)

    # Open the source before touching dest's folder, so an unreachable source creates nothing.
    source, total, content_type, where, is_http = _open_source(url, timeout)
    # read1: at most one system call, so bytes that arrived before a stall are counted (and
    # hashed) rather than lost inside a read that waits for a whole chunk.
    read = getattr(source, "read1", source.read)
    with source:
        digest = hashlib.md5(usedforsecurity=False)
        head = b""
        n_bytes = 0
        with (
            atomic_path(dest) as tmp,
            open(tmp, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = read(chunk_size)
                except TimeoutError as exc:
                    raise DownloadError(
                        f"download of {where} stalled: no data for {timeout:g} s after "
                        f"{n_bytes:,} bytes"
                    ) from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(
                        f"download of {where} broke off after {n_bytes:,} bytes: {_describe(exc)}"
                    ) from exc
                if not chunk:
                    break
                if len(head) < _SNIFF_BYTES:
                    head += chunk[: _SNIFF_BYTES - len(head)]
                digest.update(chunk)
                out.write(chunk)
                n_bytes += len(chunk)
                bar.update(len(chunk))
            # http.client returns b"" rather than raising when the peer closes early, so a short
            # body is only visible by comparing with the announced length.
            if total is not None and n_bytes < total:
                raise DownloadError(
                    f"download of {where} is truncated: got {n_bytes:,} of {total:,} bytes"
                )
            actual = digest.hexdigest()
            if actual != expected:
                message = (
                    f"md5 mismatch for {where}: expected {expected} (params.yaml: data.md5), "
                    f"got {actual} ({n_bytes:,} bytes)"
                )
                if _looks_like_html(content_type, head):
                    who = "the server returned" if is_http else "the file is"
                    message += f"; {who} an HTML page, not the archive (check the URL)"
                raise ChecksumError(message)
            # Durable before the rename: a crash must not leave a verified-looking empty file.
            out.flush()
            os.fsync(out.fileno())
    return dest


def _check_md5(md5: object) -> str:
    if not isinstance(md5, str) or not _MD5_RE.fullmatch(md5.strip()):
        raise ConfigError(
            f"md5 (params.yaml: data.md5) must be 32 hexadecimal characters, got {_quote(md5)}"
        )
    return md5.strip().lower()


def _open_source(
    url: str | os.PathLike[str], timeout: float
) -> tuple[BinaryIO, int | None, str | None, str, bool]:
    """Open ``url``: (stream, total bytes or None, content type, name for messages, is HTTP)."""
    if isinstance(url, os.PathLike):
        return _open_file(Path(url), str(url))
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"url (params.yaml: data.url) must be a non-empty string or path, got {_quote(url)}"
        )
    url = url.strip()
    match = _SCHEME_RE.match(url)
    if match is None:
        return _open_file(Path(url), url)
    scheme = match.group(1).lower()
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{url}: file:// URLs on another host ({parts.netloc}) are not supported"
            )
        return _open_file(Path(url2pathname(parts.path)), url)
    if scheme in ("http", "https"):
        return _open_http(url, timeout)
    raise ConfigError(f"{url}: unsupported URL scheme {scheme!r} (use http, https, file or a path)")


def _open_file(path: Path, where: str) -> tuple[BinaryIO, int | None, str | None, str, bool]:
    path = path.expanduser().absolute()
    try:
        fh = open(path, "rb")
    except FileNotFoundError as exc:
        raise DownloadError(f"cannot read {where}: no such file ({path})") from exc
    except OSError as exc:
        raise DownloadError(f"cannot read {where}: {_describe(exc)}") from exc
    try:
        size = os.fstat(fh.fileno()).st_size
    except OSError:
        size = None
    return fh, size, None, where, False


def _open_http(url: str, timeout: float) -> tuple[BinaryIO, int | None, str | None, str, bool]:
    # Some hosts refuse urllib's default agent; name ourselves instead.
    request = Request(url, headers={"User-Agent": f"cifarlab/{__version__}"})
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as exc:
        exc.close()
        reason = _bounded(str(exc.reason))  # the server's words
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {reason}") from exc
    except URLError as exc:
        raise DownloadError(f"cannot download {url}: {_describe(exc.reason)}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot download {url}: {_describe(exc)}") from exc
    except ValueError as exc:
        raise ConfigError(f"malformed URL {url!r}: {exc}") from exc
    total: int | None = None
    length = response.headers.get("Content-Length")
    if length is not None:
        try:
            total = int(length)
        except ValueError:
            total = None
    return response, total, response.headers.get("Content-Type"), url, True


def _looks_like_html(content_type: str | None, head: bytes) -> bool:
    if content_type and content_type.split(";", 1)[0].strip().lower() == "text/html":
        return True
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return start.startswith((b"<!doctype", b"<html"))


def _describe(exc: object) -> str:
    """A short human description of a low-level error: 'Connection refused' rather than a repr."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _bounded(str(exc)) or type(exc).__name__


def _bounded(text: str) -> str:
    """``text``, or a quoted prefix of it if long: it may hold what a server sent."""
    return text if len(text) <= 200 else _quote(text, 200)
