"""download(): http / file:// / path sources, md5 verification, and clean failure."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest
from archive_builder import build_archive, serve_directory

from cifarlab.data.archive import read_cifar10_archive
from cifarlab.data.download import download, md5_of_file
from cifarlab.errors import ArchiveError, ChecksumError, ConfigError, DownloadError

WRONG_MD5 = "0" * 32


@pytest.fixture()
def source(tmp_path: Path) -> tuple[Path, str]:
    """A small archive in its own folder (served over HTTP by the tests) and its md5."""
    root = tmp_path / "served"
    root.mkdir()
    path = root / "cifar-10-binary.tar.gz"
    return path, build_archive(path)


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    """An empty destination folder, so leftovers (temp files) are easy to spot."""
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_md5_of_file_matches_hashlib(source: tuple[Path, str]) -> None:
    path, md5 = source
    assert md5_of_file(path) == md5 == hashlib.md5(path.read_bytes()).hexdigest()


def test_http_download_verifies_and_writes(source: tuple[Path, str], out_dir: Path) -> None:
    path, md5 = source
    dest = out_dir / "archive.tar.gz"
    with serve_directory(path.parent) as base:
        result = download(base + path.name, dest, md5.upper(), progress=False, chunk_size=4096)
    assert result == dest
    assert dest.read_bytes() == path.read_bytes()
    assert [p.name for p in out_dir.iterdir()] == ["archive.tar.gz"]


def test_file_url_download(source: tuple[Path, str], out_dir: Path) -> None:
    path, md5 = source
    dest = out_dir / "nested" / "archive.tar.gz"  # missing parents are created
    assert download(path.as_uri(), dest, md5, progress=False) == dest
    assert dest.read_bytes() == path.read_bytes()


def test_plain_relative_path_download(
    source: tuple[Path, str], out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, md5 = source
    monkeypatch.chdir(path.parent.parent)
    dest = out_dir / "archive.tar.gz"
    download(f"{path.parent.name}/{path.name}", str(dest), md5, progress=False)
    assert md5_of_file(dest) == md5


def test_progress_bar_is_harmless(
    source: tuple[Path, str], out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, md5 = source
    download(path, out_dir / "a.tar.gz", md5, progress=True, chunk_size=8192)
    assert "a.tar.gz" in capsys.readouterr().err


@pytest.mark.parametrize("via", ["http", "file"])
def test_wrong_md5_names_both_and_leaves_nothing(
    source: tuple[Path, str], out_dir: Path, via: str
) -> None:
    path, md5 = source
    dest = out_dir / "archive.tar.gz"
    with serve_directory(path.parent) as base:
        url = base + path.name if via == "http" else path.as_uri()
        with pytest.raises(ChecksumError) as info:
            download(url, dest, WRONG_MD5, progress=False)
    message = str(info.value)
    assert WRONG_MD5 in message and md5 in message and url in message
    assert "(params.yaml: data.md5)" in message
    assert "HTML" not in message
    assert list(out_dir.iterdir()) == []


def test_existing_dest_untouched_on_failure(source: tuple[Path, str], out_dir: Path) -> None:
    path, _ = source
    dest = out_dir / "archive.tar.gz"
    dest.write_bytes(b"previous")
    with pytest.raises(ChecksumError):
        download(path, dest, WRONG_MD5, progress=False)
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in out_dir.iterdir()] == ["archive.tar.gz"]


def test_html_page_is_reported(source: tuple[Path, str], out_dir: Path) -> None:
    path, md5 = source
    with serve_directory(path.parent) as base:
        with pytest.raises(ChecksumError, match="HTML page, not the archive"):
            url = base + "html/cifar-10-binary.tar.gz"
            download(url, out_dir / "a.tar.gz", md5, progress=False)
    assert list(out_dir.iterdir()) == []


def test_html_file_is_sniffed_without_content_type(tmp_path: Path, out_dir: Path) -> None:
    page = tmp_path / "saved.tar.gz"
    page.write_bytes(b"\n\n  <!doctype html><html><body>Not found</body></html>")
    with pytest.raises(ChecksumError, match="HTML"):
        download(page, out_dir / "a.tar.gz", WRONG_MD5, progress=False)


def test_http_404(source: tuple[Path, str], out_dir: Path) -> None:
    path, md5 = source
    with serve_directory(path.parent) as base:
        url = base + "no-such-file.tar.gz"
        with pytest.raises(DownloadError, match="404") as info:
            download(url, out_dir / "a.tar.gz", md5, progress=False)
    assert url in str(info.value)
    assert list(out_dir.iterdir()) == []


def test_http_500(source: tuple[Path, str], out_dir: Path) -> None:
    path, md5 = source
    with serve_directory(path.parent) as base:
        with pytest.raises(DownloadError, match="500"):
            download(base + "status/500/x", out_dir / "a.tar.gz", md5, progress=False)


def test_truncated_response(source: tuple[Path, str], out_dir: Path) -> None:
    path, md5 = source
    with serve_directory(path.parent) as base:
        with pytest.raises(DownloadError, match="truncated"):
            download(base + "truncated/" + path.name, out_dir / "a.tar.gz", md5, progress=False)
    assert list(out_dir.iterdir()) == []


def test_unreachable_host_fails_fast(out_dir: Path) -> None:
    # A port that was just free and is now closed: the connection is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-binary.tar.gz"
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, out_dir / "a.tar.gz", WRONG_MD5, progress=False, timeout=5)
    assert time.monotonic() - start < 5
    assert url in str(info.value)
    assert list(out_dir.iterdir()) == []


def test_missing_file(tmp_path: Path, out_dir: Path) -> None:
    missing = tmp_path / "nope.tar.gz"
    for url in (missing, str(missing), missing.as_uri()):
        with pytest.raises(DownloadError, match="no such file"):
            download(url, out_dir / "a.tar.gz", WRONG_MD5, progress=False)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("md5", ["", "abc", "g" * 32, "0" * 31, "0" * 33, None, 12345, b"0" * 32])
def test_malformed_md5(source: tuple[Path, str], out_dir: Path, md5: object) -> None:
    path, _ = source
    with pytest.raises(ConfigError, match=r"md5 \(params\.yaml: data\.md5\) must be"):
        download(path, out_dir / "a.tar.gz", md5, progress=False)  # type: ignore[arg-type]
    assert list(out_dir.iterdir()) == []


def test_huge_malformed_md5_is_quoted_bounded(source: tuple[Path, str], out_dir: Path) -> None:
    path, _ = source
    with pytest.raises(ConfigError) as info:
        download(path, out_dir / "a.tar.gz", "z" * 1_000_000, progress=False)
    message = str(info.value)
    assert "data.md5" in message and "characters)" in message and len(message) < 200


@pytest.mark.parametrize("url", ["", "   ", None])
def test_missing_url_names_data_url(out_dir: Path, url: object) -> None:
    with pytest.raises(ConfigError, match=r"url \(params\.yaml: data\.url\) must be"):
        download(url, out_dir / "a.tar.gz", WRONG_MD5, progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk_size", [1 << 20, 4096, 512])
def test_stalled_download_counts_the_bytes_that_arrived(
    source: tuple[Path, str], out_dir: Path, chunk_size: int
) -> None:
    """1,000 bytes arrive, then nothing: the message says 1,000, not 0 (lost in a whole-chunk
    read), and names the stall."""
    path, md5 = source
    with serve_directory(path.parent) as base:
        url = f"{base}stall/1000/{path.name}"
        with pytest.raises(DownloadError) as info:
            download(
                url, out_dir / "a.tar.gz", md5, progress=False, timeout=0.5, chunk_size=chunk_size
            )
    message = str(info.value)
    assert "stalled: no data for 0.5 s after 1,000 bytes" in message and url in message
    assert list(out_dir.iterdir()) == []


def test_long_http_reason_is_quoted_bounded(source: tuple[Path, str], out_dir: Path) -> None:
    path, md5 = source
    with serve_directory(path.parent) as base:
        with pytest.raises(DownloadError) as info:
            download(base + "reason/60000", out_dir / "a.tar.gz", md5, progress=False)
    message = str(info.value)
    assert "HTTP 500 'rrrr" in message and "characters)" in message
    assert len(message) < 400 and "\n" not in message


def test_zero_byte_archive_is_downloaded_then_refused_by_the_reader(
    tmp_path: Path, out_dir: Path
) -> None:
    """md5 is all download checks: an empty file with its own md5 passes it, and the reader
    (the prepare stage) refuses it with a message saying so, not "not a gzip"."""
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    dest = download(empty, out_dir / "a.tar.gz", hashlib.md5(b"").hexdigest(), progress=False)
    assert dest.stat().st_size == 0
    with pytest.raises(ArchiveError, match=r"is empty \(0 bytes\): not a CIFAR-10 archive"):
        read_cifar10_archive(dest)


def test_unsupported_scheme(out_dir: Path) -> None:
    with pytest.raises(ConfigError, match="scheme"):
        download("ftp://example.org/a.tar.gz", out_dir / "a.tar.gz", WRONG_MD5, progress=False)
