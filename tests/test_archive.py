"""read_cifar10_archive(): exact round trip, and a clear ArchiveError for every bad archive."""

from __future__ import annotations

import gzip
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from archive_builder import (
    CLASS_NAMES,
    HTML_PAGE,
    build_archive,
    device_member,
    dir_member,
    fifo_member,
    file_member,
    hardlink_member,
    in_folder,
    make_batches,
    make_records,
    records_to_bytes,
    symlink_member,
)

from cifarlab.data import archive as archive_mod
from cifarlab.data.archive import Cifar10Archive, parse_batch, read_cifar10_archive
from cifarlab.errors import ArchiveError, DataError


@pytest.fixture()
def path(tmp_path: Path) -> Path:
    return tmp_path / "cifar-10-binary.tar.gz"


def assert_refused(path: Path, *words: str) -> str:
    """Reading ``path`` raises ArchiveError whose message holds every one of ``words``."""
    with pytest.raises(ArchiveError) as info:
        read_cifar10_archive(path)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# --- valid archives ----------------------------------------------------------------------------


def test_round_trip_is_exact(path: Path) -> None:
    build_archive(path, records_per_batch=7, test_records=11, seed=3)
    expected = make_batches(7, 11, seed=3)
    archive = read_cifar10_archive(path)

    assert isinstance(archive, Cifar10Archive)
    assert archive.class_names == CLASS_NAMES
    assert len(archive.train_batches) == 5
    for i, (X, y) in enumerate(archive.train_batches, start=1):
        X_exp, y_exp = expected[f"data_batch_{i}.bin"]
        assert X.dtype == np.uint8 and y.dtype == np.uint8
        assert X.shape == (7, 3072) and y.shape == (7,)
        np.testing.assert_array_equal(X, X_exp)
        np.testing.assert_array_equal(y, y_exp)
    np.testing.assert_array_equal(archive.test[0], expected["test_batch.bin"][0])
    np.testing.assert_array_equal(archive.test[1], expected["test_batch.bin"][1])

    X_train, y_train = archive.train
    assert X_train.shape == (35, 3072) and X_train.flags.c_contiguous
    np.testing.assert_array_equal(X_train[7:14], expected["data_batch_2.bin"][0])
    np.testing.assert_array_equal(
        y_train, np.concatenate([expected[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    )


def test_pixel_layout_is_label_then_rgb_planes(path: Path) -> None:
    # One record: label 4, then red plane 1s, green plane 2s, blue plane 3s.
    record = bytes([4]) + bytes([1]) * 1024 + bytes([2]) * 1024 + bytes([3]) * 1024
    # A full member name overrides the generated member (no duplicate).
    build_archive(path, batches={in_folder("test_batch.bin"): record})
    X, y = read_cifar10_archive(path).test
    assert y.tolist() == [4]
    np.testing.assert_array_equal(X.reshape(3, 32, 32)[:, 5, 7], [1, 2, 3])


def test_readme_and_directory_entry_accepted(path: Path) -> None:
    build_archive(path, dir_entry=True, readme=True)
    names = tarfile.open(path).getnames()
    assert "cifar-10-batches-bin" in names and in_folder("readme.html") in names
    read_cifar10_archive(path)


def test_mirror_layout_without_dir_entry_or_readme(path: Path) -> None:
    build_archive(path, dir_entry=False, readme=False)
    assert len(read_cifar10_archive(path).train_batches) == 5


def test_any_record_count_and_blank_meta_lines(path: Path) -> None:
    meta = "\n\nairplane\n automobile \nbird\ncat\n\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n\n"
    build_archive(path, records_per_batch=1, test_records=3, meta=meta)
    archive = read_cifar10_archive(path)
    assert [X.shape[0] for X, _ in archive.train_batches] == [1] * 5
    assert archive.test[0].shape == (3, 3072)
    assert archive.class_names == CLASS_NAMES


def test_uses_no_disk(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading (valid or hostile) writes nothing: not in the cwd, the temp dir or beside it."""
    hostile = tmp_path / "hostile.tar.gz"
    build_archive(path)
    build_archive(
        hostile,
        extra_members=[file_member("../evil", b"x"), symlink_member(in_folder("l"), "/etc")],
    )
    cwd = tmp_path / "cwd"
    tmp = tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reader must not extract members")

    for method in ("extract", "extractall", "makefile", "makedir", "makelink"):
        monkeypatch.setattr(tarfile.TarFile, method, no_extraction)
    before = sorted(p.name for p in tmp_path.iterdir())

    read_cifar10_archive(path)
    with pytest.raises(ArchiveError):
        read_cifar10_archive(hostile)

    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- hostile or broken archives ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../evil", ["'../evil'", "path traversal"]),
        ("cifar-10-batches-bin/../../evil", ["path traversal"]),
        ("/etc/passwd", ["'/etc/passwd'", "absolute path"]),
        ("other/data_batch_1.bin", ["lies outside cifar-10-batches-bin/"]),
        ("data_batch_1.bin", ["lies outside"]),
        ("cifar-10-batches-bin/sub/data_batch_1.bin", ["lies outside"]),
    ],
)
def test_path_traversal_refused(path: Path, name: str, words: list[str]) -> None:
    build_archive(path, extra_members=[file_member(name, b"payload")])
    assert_refused(path, *words)


@pytest.mark.parametrize(
    ("member", "words"),
    [
        (symlink_member(in_folder("data_batch_6.bin"), "/etc/passwd"), ["symbolic link"]),
        (symlink_member(in_folder("test_batch.bin"), "../../x"), ["symbolic link", "'../../x'"]),
        (hardlink_member(in_folder("x.bin"), "/etc/passwd"), ["hard link"]),
        (device_member(in_folder("null"), "chr"), ["device"]),
        (device_member(in_folder("sda"), "blk"), ["device"]),
        (fifo_member(in_folder("pipe")), ["FIFO"]),
        (dir_member(in_folder("sub")), ["not a regular file"]),
        (file_member("cifar-10-batches-bin", b""), ["directory entry"]),
    ],
)
def test_non_regular_members_refused(
    path: Path, member: tuple[tarfile.TarInfo, object], words: list[str]
) -> None:
    build_archive(path, extra_members=[member])
    message = assert_refused(path, *words)
    assert member[0].name in message


def test_unexpected_member(path: Path) -> None:
    X, y = make_records(3, np.random.default_rng(0))
    build_archive(path, batches={"data_batch_6.bin": records_to_bytes(X, y)})
    assert_refused(path, "data_batch_6.bin", "unexpected")


def test_missing_member(path: Path) -> None:
    build_archive(path, omit=["test_batch.bin"])
    assert_refused(path, "missing", "cifar-10-batches-bin/test_batch.bin")


def test_duplicate_member(path: Path) -> None:
    X, y = make_records(2, np.random.default_rng(0))
    build_archive(
        path, extra_members=[file_member(in_folder("data_batch_3.bin"), records_to_bytes(X, y))]
    )
    assert_refused(path, "duplicate", "data_batch_3.bin")


def test_short_record(path: Path) -> None:
    X, y = make_records(4, np.random.default_rng(0))
    build_archive(path, batches={"data_batch_2.bin": records_to_bytes(X, y)[:-100]})
    assert_refused(path, "data_batch_2.bin", "3073", "2,973 bytes left over")


def test_label_out_of_range(path: Path) -> None:
    labels = [0, 1, 2, 3, 4, 5, 6, 12, 8, 9]
    X, y = make_records(10, np.random.default_rng(0), labels=labels)
    build_archive(path, batches={"data_batch_4.bin": records_to_bytes(X, y)})
    assert_refused(path, "data_batch_4.bin", "record 7", "label 12")


def test_empty_batch(path: Path) -> None:
    build_archive(path, batches={"test_batch.bin": b""})
    assert_refused(path, "test_batch.bin", "no records")


@pytest.mark.parametrize(
    "meta",
    [
        CLASS_NAMES[:9],
        [*CLASS_NAMES, "extra"],
        "\n\n\n",
        [*CLASS_NAMES[:9], "airplane"],
        b"\xff\xfe not utf-8",
    ],
)
def test_bad_meta(path: Path, meta: object) -> None:
    build_archive(path, meta=meta)  # type: ignore[arg-type]
    assert_refused(path, "batches.meta.txt")


@pytest.mark.parametrize("keep", [0.5, 0.9, -4, -1])
def test_truncated_gzip(path: Path, keep: float) -> None:
    build_archive(path)
    data = path.read_bytes()
    cut = int(len(data) * keep) if keep > 0 else len(data) + int(keep)
    path.write_bytes(data[:cut])
    assert_refused(path, str(path), "truncated")


def test_corrupt_gzip_crc(path: Path) -> None:
    build_archive(path)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 of the trailer
    path.write_bytes(bytes(data))
    assert_refused(path, "corrupt")


def test_html_page_is_not_a_gzip(path: Path) -> None:
    path.write_bytes(HTML_PAGE)
    assert_refused(path, "not a gzip", "HTML")


def test_uncompressed_tar_is_not_a_gzip(path: Path) -> None:
    build_archive(path, mode="w")
    assert_refused(path, "not a gzip")


def test_gzip_of_something_else(path: Path) -> None:
    path.write_bytes(gzip.compress(b"hello, not a tar " * 100))
    assert_refused(path, "not a valid tar")


def test_empty_and_missing_file(path: Path) -> None:
    assert_refused(path, "no such file")
    path.write_bytes(b"")
    assert_refused(path, "not a gzip")


def test_oversized_member_refused_before_reading(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_archive(path, records_per_batch=10)
    monkeypatch.setattr(archive_mod, "MAX_MEMBER_BYTES", 5 * 3073)
    assert_refused(path, "30,730 bytes", "more than")


def test_archive_error_is_a_data_error() -> None:
    assert issubclass(ArchiveError, DataError)


def test_parse_batch_gives_contiguous_copies() -> None:
    X, y = make_records(5, np.random.default_rng(1))
    X2, y2 = parse_batch(records_to_bytes(X, y))
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert X2.flags.c_contiguous and X2.flags.writeable and y2.flags.writeable
