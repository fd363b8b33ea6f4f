"""read_cifar10_archive(): exact round trip, and a clear ArchiveError for every bad archive."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
import tracemalloc
from collections.abc import Iterable
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
    gnu_sparse_header,
    hardlink_member,
    header_block,
    in_folder,
    long_name_header,
    make_batches,
    make_records,
    meta_bytes,
    pax_header,
    raw_member,
    records_to_bytes,
    symlink_member,
    write_raw_tar_gz,
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
    assert_refused(path, str(path), "is empty (0 bytes)", "not a CIFAR-10 archive")


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


# --- hostile tar metadata: capped before it is read, names quoted bounded ------------------------

# What a refusal may cost: tarfile reads a GNU long-name or pax header's whole payload, so an
# uncapped reader holds (several copies of) the announced size.
PEAK_BYTES = 4 * 1024 * 1024
# Beside the archive's path, which the message starts with.
MESSAGE_CHARS = 400
BIG = 20_000_000
A_MEMBER = raw_member(in_folder("data_batch_1.bin"), b"\x00" * 3073)


def refused_with_peak(path: Path, *words: str) -> tuple[str, int]:
    """Like ``assert_refused``; also the peak of Python allocations while reading, in bytes."""
    tracemalloc.start()
    try:
        message = assert_refused(path, *words)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(message.replace(str(path), "")) < MESSAGE_CHARS, message[:1000]
    assert "\n" not in message
    return message, peak


def header_chain(count: int, header: Iterable[bytes]) -> bytes:
    return b"".join(header) * count


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (long_name_header(BIG), ["GNU long-name header", "b'L'"]),
        (long_name_header(BIG, tarfile.GNUTYPE_LONGLINK), ["GNU long-link header"]),
        (pax_header(BIG), ["pax extended header", "b'x'"]),
        (pax_header(BIG, tarfile.XGLTYPE), ["pax global header", "b'g'"]),
        (pax_header(BIG, tarfile.SOLARIS_XHDTYPE), ["Solaris extended header"]),
    ],
    ids=["gnu-long-name", "gnu-long-link", "pax-extended", "pax-global", "solaris-extended"],
)
def test_huge_metadata_header_refused_before_reading(
    path: Path, header: Iterable[bytes], words: list[str]
) -> None:
    write_raw_tar_gz(path, header, A_MEMBER)
    _, peak = refused_with_peak(path, *words, "20,000,000 bytes", "16,384 allowed", "byte 0")
    assert peak < PEAK_BYTES


def test_huge_long_name_issue_case_in_a_subprocess(path: Path) -> None:
    """The reported archive: 389 KB holding a 400 MB GNU long name took 1.27 GB RSS to refuse."""
    write_raw_tar_gz(path, long_name_header(400_000_000), A_MEMBER, compresslevel=9)
    assert path.stat().st_size < 500_000
    child = (
        "import json, resource, sys\n"
        "from cifarlab.data.archive import read_cifar10_archive\n"
        "from cifarlab.errors import ArchiveError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    read_cifar10_archive(sys.argv[1])\n"
        "except ArchiveError as exc:\n"
        "    message = str(exc)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'grew_kib': after - before, 'message': message}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["grew_kib"] < 50 * 1024, result["grew_kib"]
    assert "400,000,000 bytes" in result["message"]
    assert len(result["message"].replace(str(path), "")) < MESSAGE_CHARS


@pytest.mark.parametrize(
    ("chain", "words"),
    [
        (header_chain(9, long_name_header(100)), ["header number 9", "more than the 8 allowed"]),
        (header_chain(5000, long_name_header(100)), ["header number 9"]),
        (header_chain(5000, pax_header(100)), ["pax extended header", "header number 9"]),
        (header_chain(3, pax_header(8000)), ["8,000 bytes (24,000 in all)", "16,384 allowed"]),
    ],
    ids=["one-too-many", "deep-long-names", "deep-pax", "many-small-add-up"],
)
def test_endless_metadata_chain_refused(path: Path, chain: bytes, words: list[str]) -> None:
    # Each header recurses into the next inside tarfile: uncapped, 5000 end in a RecursionError.
    write_raw_tar_gz(path, chain, A_MEMBER)
    _, peak = refused_with_peak(path, *words)
    assert peak < PEAK_BYTES


@pytest.mark.parametrize(
    "pieces",
    [
        # Old GNU sparse: 100,000 extension blocks of (offset, length) pairs, read without end.
        [gnu_sparse_header(in_folder("data_batch_1.bin"), 100_000)],
        # pax GNU sparse 1.0: a map announcing 10^9 pairs, read block after block.
        [
            pax_header(
                records={
                    "GNU.sparse.major": "1",
                    "GNU.sparse.minor": "0",
                    "GNU.sparse.name": in_folder("test_batch.bin"),
                    "GNU.sparse.realsize": "3073",
                }
            ),
            header_block(in_folder("test_batch.bin"), tarfile.REGTYPE, 0),
            b"999999999\n" + b"1\n" * 251,
            [b"1\n" * 256 * 2048] * 10,
        ],
        [pax_header(records={"GNU.sparse.map": "0,1", "GNU.sparse.size": "1"}), A_MEMBER],
    ],
    ids=["old-gnu-extension-blocks", "pax-1.0-map", "pax-0.x-map"],
)
def test_sparse_members_refused_before_their_map(path: Path, pieces: list[object]) -> None:
    write_raw_tar_gz(path, *pieces)  # type: ignore[arg-type]
    _, peak = refused_with_peak(path, "sparse file", "only regular files")
    assert peak < PEAK_BYTES


def test_malformed_pax_number_is_an_archive_error(path: Path) -> None:
    # tarfile itself raises ValueError here (int("abc")): one line, no traceback.
    write_raw_tar_gz(path, pax_header(records={"GNU.sparse.size": "abc"}, type_=b"g"), A_MEMBER)
    refused_with_peak(path, "not a valid tar.gz", "ValueError")


def test_negative_size_refused(path: Path) -> None:
    header = header_block(in_folder("data_batch_1.bin"), tarfile.REGTYPE, -5)
    write_raw_tar_gz(path, header)
    refused_with_peak(path, "negative size")


@pytest.mark.parametrize(
    ("pieces", "words"),
    [
        ([pax_header(10_000), A_MEMBER], ["lies outside", "characters)"]),
        ([long_name_header(in_folder("d/" * 4000 + "x")), A_MEMBER], ["lies outside"]),
        ([long_name_header("../" + "a" * 9000), A_MEMBER], ["path traversal"]),
        (
            [
                long_name_header("/" + "b" * 8000, tarfile.GNUTYPE_LONGLINK),
                symlink_member(in_folder("l"), "x")[0].tobuf(format=tarfile.GNU_FORMAT),
            ],
            ["symbolic link to '/bbbb", "characters)"],
        ),
    ],
    ids=["pax-path", "deep-folders", "long-traversal", "long-link-target"],
)
def test_long_names_are_quoted_bounded(path: Path, pieces: list[object], words: list[str]) -> None:
    write_raw_tar_gz(path, *pieces)  # type: ignore[arg-type]
    refused_with_peak(path, *words)


def test_meta_with_huge_names_is_quoted_bounded(path: Path) -> None:
    build_archive(path, meta="\n".join(["x" * 5000] * 11))
    refused_with_peak(path, "batches.meta.txt", "found 11", "characters)")
    build_archive(path, meta="\n".join(["y" * 6000] * 10))
    refused_with_peak(path, "batches.meta.txt", "not distinct", "characters)")


def test_pax_and_long_name_metadata_within_the_caps_accepted(path: Path) -> None:
    """A re-packed archive: a pax global header, per-member pax times and xattrs, a GNU long
    name for one member (whose own header holds a cut name) all parse as before."""
    batches = make_batches(3, 2, seed=5)
    pieces: list[object] = [pax_header(records={"comment": "re-packed"}, type_=b"g")]
    for name, (X, y) in batches.items():
        xattrs = {"mtime": "1244000000.5", "SCHILY.xattr.user.origin": "o" * 4000}
        pieces += [pax_header(records=xattrs), raw_member(in_folder(name), records_to_bytes(X, y))]
    pieces += [
        long_name_header(in_folder("batches.meta.txt")),
        raw_member("././@LongLink-cut", meta_bytes()),
    ]
    write_raw_tar_gz(path, *pieces)  # type: ignore[arg-type]
    archive = read_cifar10_archive(path)
    assert archive.class_names == CLASS_NAMES
    np.testing.assert_array_equal(archive.test[1], batches["test_batch.bin"][1])
