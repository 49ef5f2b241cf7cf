"""Unpacking sources into the raw folder: layout, checksums, and every unsafe archive refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from edl.core_resources.pipelines.ingest.archives import (
    ArchiveLimits,
    LocalSink,
    Unpacker,
    safe_member_path,
)
from edl.core_resources.pipelines.ingest.errors import (
    ArchiveBombError,
    CorruptArchiveError,
    DuplicatePathError,
    EmptyFileError,
    UnsafeArchivePathError,
)
from edl.core_resources.pipelines.ingest.limits import GiB, MiB, check_update_totals


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buf.getvalue()


def make_tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buf.getvalue()


class NonSeekable(io.RawIOBase):
    """A stream like an HTTPS body: readable, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self._inner.read(len(b))
        b[:len(chunk)] = chunk
        return len(chunk)


DEFAULT_LIMITS = ArchiveLimits()


def unpack(tmp_path: Path, name: str, data: bytes, limits=DEFAULT_LIMITS, seekable=True):
    unpacker = Unpacker(LocalSink(str(tmp_path / "raw")), limits)
    stream = io.BytesIO(data) if seekable else io.BufferedReader(NonSeekable(data))
    unpacker.add(stream, name, f"s3://drop/{name}")
    return unpacker


def test_zip_with_folders_and_a_nested_zip_and_gz_lands_in_place(tmp_path):
    inner = make_zip({"deep/c.csv": b"id\n3\n"})
    data = make_zip({"sites/a.csv": b"id\n1\n", "sites/eu/b.csv.gz": gzip.compress(b"id\n2\n"),
                     "more/inner.zip": inner, "folder/": b""})
    unpacker = unpack(tmp_path, "batch1.zip", data)
    paths = sorted(f.path for f in unpacker.files)
    assert paths == ["more/deep/c.csv", "sites/a.csv", "sites/eu/b.csv"]
    raw = tmp_path / "raw"
    assert (raw / "sites/eu/b.csv").read_bytes() == b"id\n2\n"
    assert (raw / "more/deep/c.csv").read_bytes() == b"id\n3\n"
    record = next(f for f in unpacker.files if f.path == "sites/a.csv")
    assert record.sha256 == hashlib.sha256(b"id\n1\n").hexdigest()
    assert record.bytes == 5
    assert record.origin == "s3://drop/batch1.zip!sites/a.csv"


def test_zip_from_a_stream_that_cannot_seek_is_spooled(tmp_path):
    unpacker = unpack(tmp_path, "x.zip", make_zip({"a.csv": b"id\n1\n"}), seekable=False)
    assert [f.path for f in unpacker.files] == ["a.csv"]


def test_tar_gz_and_gzip(tmp_path):
    unpacker = unpack(tmp_path, "in/batch.tar.gz", make_tar_gz({"x/a.csv": b"a\n1\n",
                                                               "b.csv": b"a\n2\n"}))
    assert sorted(f.path for f in unpacker.files) == ["in/b.csv", "in/x/a.csv"]
    single = unpack(tmp_path / "2", "data.jsonl.gz", gzip.compress(b'{"a":1}\n'))
    assert [f.path for f in single.files] == ["data.jsonl"]
    assert (tmp_path / "2/raw/data.jsonl").read_bytes() == b'{"a":1}\n'


@pytest.mark.parametrize("name, data", [
    ("broken.zip", b"PK\x03\x04 this is not really a zip"),
    ("cut.zip", make_zip({"a.csv": b"x" * 5000})[:-30]),
    ("broken.gz", b"\x1f\x8b\x08\x00garbage-not-deflate"),
    ("broken.tar.gz", gzip.compress(b"not a tar at all" * 10)),
], ids=["broken.zip", "cut.zip", "broken.gz", "broken.tar.gz"])  # the bytes hold timestamps
def test_corrupt_archives_are_refused(tmp_path, name, data):
    with pytest.raises(CorruptArchiveError, match=name.replace(".", r"\.")):
        unpack(tmp_path, name, data)


@pytest.mark.parametrize("member", ["../evil.csv", "a/../../evil.csv", "/etc/passwd",
                                    "C:\\windows\\evil.csv", "..\\evil.csv"])
def test_members_escaping_the_folder_are_refused(tmp_path, member):
    with pytest.raises(UnsafeArchivePathError) as err:
        unpack(tmp_path, "slip.zip", make_zip({member: b"id\n1\n"}))
    assert "slip.zip" in str(err.value)
    assert not (tmp_path / "evil.csv").exists()


def test_tar_links_are_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        info = tarfile.TarInfo("link.csv")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(UnsafeArchivePathError, match="link"):
        unpack(tmp_path, "links.tar", buf.getvalue())


def test_safe_member_path_keeps_nested_folders():
    assert safe_member_path("in", "./a/b\\c.csv", "x.zip") == "in/a/b/c.csv"


def test_zip_bomb_is_refused_by_declared_sizes(tmp_path):
    bomb = make_zip({"zeros.csv": b"0" * (8 << 20)})
    limits = ArchiveLimits(max_ratio=100, ratio_grace_bytes=1 << 20)
    with pytest.raises(ArchiveBombError, match="zip bomb"):
        unpack(tmp_path, "bomb.zip", bomb, limits)


def test_gzip_bomb_is_stopped_while_streaming(tmp_path):
    bomb = gzip.compress(b"\0" * (16 << 20))
    limits = ArchiveLimits(max_ratio=100, ratio_grace_bytes=2 << 20)
    with pytest.raises(ArchiveBombError, match="100 times"):
        unpack(tmp_path, "bomb.csv.gz", bomb, limits)
    written = (tmp_path / "raw" / "bomb.csv").stat().st_size
    assert written < 4 << 20   # stopped soon after the grace, not after 16 MiB


def test_nesting_deeper_than_the_limit_is_refused(tmp_path):
    data = make_zip({"a.csv": b"a\n1\n"})
    for level in range(3):
        data = make_zip({f"level{level}.zip": data})
    with pytest.raises(ArchiveBombError, match="nested"):
        unpack(tmp_path, "deep.zip", data, ArchiveLimits(max_depth=3))


def test_too_many_members_is_refused(tmp_path):
    data = make_zip({f"f{i}.csv": b"a\n1\n" for i in range(6)})
    with pytest.raises(ArchiveBombError, match="more than 5 files"):
        unpack(tmp_path, "many.zip", data, ArchiveLimits(max_members=5))


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(EmptyFileError, match=re.escape("empty.csv")):
        unpack(tmp_path, "batch.zip", make_zip({"ok.csv": b"a\n1\n", "empty.csv": b""}))


def test_two_files_on_one_path_are_refused(tmp_path):
    data = make_zip({"a.csv": b"a\n1\n", "a.csv.gz": gzip.compress(b"a\n2\n")})
    with pytest.raises(DuplicatePathError, match=re.escape("a.csv")):
        unpack(tmp_path, "dup.zip", data)


def test_a_server_side_copy_is_checked_like_a_written_file(tmp_path):
    unpacker = Unpacker(LocalSink(str(tmp_path)), ArchiveLimits(max_total_bytes=100))
    unpacker.add_copied("a.csv", "s3://drop/a.csv", 10)
    assert [(f.path, f.bytes, f.sha256) for f in unpacker.files] == [("a.csv", 10, "")]
    with pytest.raises(DuplicatePathError):
        unpacker.add_copied("a.csv", "s3://drop/other/a.csv", 10)
    with pytest.raises(EmptyFileError, match=r"s3://drop/e.csv is empty \(0 bytes\)"):
        unpacker.add_copied("e.csv", "s3://drop/e.csv", 0)
    with pytest.raises(ArchiveBombError, match="expands beyond"):
        unpacker.add_copied("big.csv", "s3://drop/big.csv", 200)
    assert len(unpacker.files) == 1


# -- tar extended headers, nested zips, per-update totals -------------------------------------

def make_tar(members: dict[str, bytes], fmt: int, declared: dict[str, int] | None = None) -> bytes:
    """A plain tar in `fmt` (pax or GNU); `declared` overrides a member's header size (the
    body written stays the real one, as a crafted archive would)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as archive:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = (declared or {}).get(name, len(body))
            buf.write(info.tobuf(fmt, "utf-8", "surrogateescape"))
            buf.write(body + b"\0" * (-len(body) % tarfile.BLOCKSIZE))
            archive.offset = buf.tell()
    return buf.getvalue()


LONG = "folder-" * 20


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_a_long_name_header_climbing_out_of_the_folder_is_refused(tmp_path, fmt):
    data = make_tar({f"{LONG}/../../../evil.csv": b"id\n1\n"}, fmt)
    with pytest.raises(UnsafeArchivePathError, match="escapes the archive's folder"):
        unpack(tmp_path, "batch.tar", data)
    assert not (tmp_path / "evil.csv").exists()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_a_long_name_header_lands_in_place_within_the_header_limit(tmp_path, fmt):
    unpacker = unpack(tmp_path, "batch.tar", make_tar({f"{LONG}/a.csv": b"id\n1\n"}, fmt))
    assert [f.path for f in unpacker.files] == [f"{LONG}/a.csv"]
    with pytest.raises(ArchiveBombError, match="extended header"):
        unpack(tmp_path / "small", "batch.tar", make_tar({f"{LONG}/a.csv": b"id\n1\n"}, fmt),
               ArchiveLimits(max_header_bytes=64))


def test_a_tar_member_declaring_a_huge_size_is_refused_before_it_is_read(tmp_path):
    data = make_tar({"huge.csv": b"id\n1\n"}, tarfile.PAX_FORMAT, declared={"huge.csv": 60 * GiB})
    with pytest.raises(ArchiveBombError, match=re.escape("huge.csv: declares 60 GiB")):
        unpack(tmp_path, "batch.tar", data)
    assert not (tmp_path / "raw" / "huge.csv").exists()


def test_a_zip_inside_a_zip_is_spooled_not_inflated_again_per_member(tmp_path, monkeypatch):
    inner = make_zip({f"part{i}.csv": b"id\n%d\n" % i for i in range(5)})
    read = []
    original = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = original(self, n)
        if self.name == "inner.zip":
            read.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    unpacker = unpack(tmp_path, "outer.zip", make_zip({"inner.zip": inner}))
    assert sorted(f.path for f in unpacker.files) == [f"part{i}.csv" for i in range(5)]
    assert sum(read) == len(inner)          # the inner archive's bytes were inflated once


def test_a_nested_zip_bomb_is_refused(tmp_path):
    inner = make_zip({"zeros.csv": b"0" * (8 * MiB)})
    limits = ArchiveLimits(ratio_grace_bytes=1 * MiB)
    with pytest.raises(ArchiveBombError, match=re.escape("inner.zip: declares 8 MiB")):
        unpack(tmp_path, "outer.zip", make_zip({"inner.zip": inner}), limits)
    assert not (tmp_path / "raw" / "zeros.csv").exists()


def test_one_file_larger_than_the_per_file_limit_is_refused_while_streaming(tmp_path):
    limits = ArchiveLimits(max_file_bytes=3 * MiB)
    with pytest.raises(ArchiveBombError, match="larger than 3 MiB"):
        unpack(tmp_path, "big.csv.gz", gzip.compress(b"1\n" * (2 * MiB)), limits)


@pytest.mark.parametrize("sizes, limits, message", [
    ([10, 10, 10], ArchiveLimits(max_members=2), "3 files, more than 2 in one update"),
    ([60, 50], ArchiveLimits(max_total_bytes=100), "110 bytes, more than 100 bytes in one update"),
])
def test_an_update_is_limited_in_files_and_bytes_across_all_its_files(sizes, limits, message):
    check_update_totals(sizes[:-1], limits, "batch")      # within the limits
    with pytest.raises(ArchiveBombError, match=f"batch: {message}"):
        check_update_totals(sizes, limits, "batch")
