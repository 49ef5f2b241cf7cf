"""Unpacking what a source delivers into the update's raw folder, safely.

Every file of the source goes through `Unpacker.add`. A plain file is written as is; an archive
is replaced by its contents, in the folder where the archive was (`batch1.zip` holding
`sites/a.csv` gives `sites/a.csv`; `sub/x.csv.gz` gives `sub/x.csv`), recursively for archives
inside archives. Kinds, by name: `.zip`, `.tar`, `.tar.gz`/`.tgz`, `.gz`.

Safety:

- member paths are refused when absolute (`/etc/x`, `C:\\x`), when they climb (`..`), or hold
  control characters; tar links and devices are refused; two files landing on one path are refused;
- zip bombs: an archive may expand to at most `max_ratio` times its compressed size once it has
  produced more than `ratio_grace_bytes` (so small, very compressible files pass), one file to
  at most `max_file_bytes`, nested at most `max_depth` deep; a whole update to at most
  `max_total_bytes` and `max_members` files (`check_update_totals`: the job checks the source's
  listing before it reads anything, and the raw files once every source file is in). Limits are
  enforced on the bytes actually produced, while streaming (headers can lie), and the sizes
  headers declare (zip entries, tar members) are checked up front as well. Defaults: ratio 200,
  grace 64 MiB, 50 GiB a file, 100 GiB and 100,000 files an update, depth 3;
- tar: a pax or GNU long-name header is read into memory by `tarfile`, so one larger than
  `max_header_bytes` is refused before it is read; the names such headers give are checked like
  any other member path;
- a zip inside an archive is spooled to a temporary file (counted against the outer archive's
  ratio while it is written), never opened in place: an archive member can only seek by
  inflating again from its start, which would inflate it once per member.

A plain file that the storage can copy itself (an S3 object, copied with CopyObject) goes through
`Unpacker.add_copied` instead: the same checks, no byte read here; its sha256 is computed later,
by the conversion that reads the copy (`RawFile.sha256` is empty until then).

Everything streams: a top-level zip is read in place when its stream can seek (S3, SFTP),
otherwise it is spooled to a temporary file first (zip keeps its index at the end); gzip and tar
never need that. The limits and the checks that need no archive open live in `limits.py`.
"""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import re
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from edl.core_resources.pipelines.ingest.errors import (
    ArchiveBombError,
    CorruptArchiveError,
    DuplicatePathError,
    EmptyFileError,
    UnsafeArchivePathError,
)
from edl.core_resources.pipelines.ingest.limits import (
    ArchiveLimits,
    GiB,
    MiB,
    size_text,
    zip_bomb_check,
)

__all__ = ["ArchiveLimits", "GiB", "LocalSink", "MiB", "RawFile", "Unpacker", "archive_kind",
           "safe_member_path"]
CHUNK = 1 * MiB
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, tarfile.TarError,
                gzip.BadGzipFile, RuntimeError, NotImplementedError, ValueError)


@dataclass(frozen=True)
class RawFile:
    """A file written to the raw folder: its path there, size, checksum, and where it came from.
    `sha256` is empty for a file copied server-side until its conversion has read it."""

    path: str
    bytes: int
    sha256: str
    origin: str


class Sink(Protocol):
    def open(self, path: str) -> AbstractContextManager[BinaryIO]:
        """A writable stream for `path` (relative to the update's raw folder)."""


def archive_kind(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith((".tar.gz", ".tgz")):
        return "tgz"
    if lower.endswith(".tar"):
        return "tar"
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(".gz"):
        return "gzip"
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_member_path(folder: str, name: str, archive: str) -> str:
    """`name` (a member of `archive`) placed under `folder`, or `UnsafeArchivePathError`."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise UnsafeArchivePathError(
            f"{archive}: member {name!r} has an absolute path",
            hint="archives must hold relative paths; re-create the archive from its folder")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchivePathError(
            f"{archive}: member {name!r} escapes the archive's folder ('..')",
            hint="archives must not hold '..' in paths; re-create the archive from its folder")
    if not parts or _CONTROL.search(raw):
        raise UnsafeArchivePathError(f"{archive}: member {name!r} has an invalid name",
                                     hint="rename the member")
    return posixpath.join(folder, *parts) if folder else posixpath.join(*parts)


_EXTENDED_HEADERS = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


def _bounded_tarinfo(limit: int, origin: str) -> type[tarfile.TarInfo]:
    """A `TarInfo` that refuses a pax or GNU long-name header over `limit` bytes before
    `tarfile` reads it into memory."""
    class BoundedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tarfile_):
            if self.type in _EXTENDED_HEADERS and self.size > limit:
                raise ArchiveBombError(
                    f"{origin}: a tar extended header of {self.size} bytes (limit {limit}) - "
                    "refused as a possible archive bomb", hint="re-create the archive")
            return super()._proc_member(tarfile_)  # type: ignore[misc]  # private in the stubs
    return BoundedTarInfo


class _CountingReader:
    """Counts the (compressed) bytes a decompressor has consumed."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.count += len(data)
        return data

    def readable(self) -> bool:
        return True


class _Expansion:
    """The output of one archive so far, checked against its compressed size."""

    def __init__(self, label: str, compressed: Callable[[], int], limits: ArchiveLimits) -> None:
        self.label = label
        self.compressed = compressed
        self.limits = limits
        self.out = 0

    def grow(self, n: int) -> None:
        self.out += n
        if self.out > self.limits.ratio_grace_bytes and \
                self.out > self.limits.max_ratio * max(self.compressed(), 1):
            raise ArchiveBombError(
                f"{self.label}: expands more than {self.limits.max_ratio:g} times its compressed "
                f"size (over {self.out // MiB} MiB so far) - refused as a possible zip bomb",
                hint="if the data is genuine, split it into smaller archives or ingest it "
                "uncompressed")


class Unpacker:
    """Writes a source's files, archives unpacked, into a `Sink`; see the module docstring."""

    def __init__(self, sink: Sink, limits: ArchiveLimits = ArchiveLimits(),
                 tempdir: str | None = None) -> None:
        self.sink = sink
        self.limits = limits
        self.tempdir = tempdir
        self.files: list[RawFile] = []
        self._paths: dict[str, str] = {}
        self._total = 0
        self._expansions: list[_Expansion] = []

    def add(self, stream: BinaryIO, path: str, origin: str, depth: int = 0,
            size: int | None = None) -> None:
        kind = archive_kind(path)
        if kind is None:
            self._write(stream, path, origin, inside_archive=depth > 0)
            return
        if depth >= self.limits.max_depth:
            raise ArchiveBombError(
                f"{origin}: archives nested more than {self.limits.max_depth} deep",
                hint="unpack the inner archives before ingesting")
        folder = posixpath.dirname(path)
        if kind == "zip":
            self._zip(stream, folder, origin, depth, size)
        elif kind == "gzip":
            self._gzip(stream, path[:-3], origin, depth)
        else:
            self._tar(stream, folder, origin, depth)

    # -- kinds -------------------------------------------------------------------------------

    def _zip(self, stream: BinaryIO, folder: str, origin: str, depth: int,
             size: int | None) -> None:
        """A source's own zip is read in place if it can seek; a zip inside an archive, or one
        that cannot seek, from a spooled copy."""
        if depth == 0 and getattr(stream, "seekable", lambda: False)():
            self._zip_in_place(stream, folder, origin, depth, size)
            return
        with tempfile.TemporaryFile(dir=self.tempdir) as spool:
            size = self._spool(stream, spool, origin)
            spool.seek(0)
            self._zip_in_place(spool, folder, origin, depth, size)

    def _zip_in_place(self, stream: BinaryIO, folder: str, origin: str, depth: int,
                      size: int | None) -> None:
        if size is None:
            size = stream.seek(0, 2)
            stream.seek(0)
        try:
            archive = zipfile.ZipFile(stream)
            members = [i for i in archive.infolist() if not i.is_dir()]
        except _READ_ERRORS as exc:
            raise CorruptArchiveError(f"{origin}: not a readable zip archive ({exc})",
                                      hint="check the file is complete, or re-create it") from None
        self._check_members(origin, len(members))
        zip_bomb_check(archive, size, self.limits, origin)
        self._expansions.append(_Expansion(origin, lambda: size, self.limits))
        try:
            for info in members:
                path = safe_member_path(folder, info.filename, origin)
                try:
                    member = archive.open(info)
                except _READ_ERRORS as exc:
                    raise CorruptArchiveError(f"{origin}: cannot read member {info.filename!r} "
                                              f"({exc})", hint="re-create the archive") from None
                with member:
                    self.add(member, path, f"{origin}!{info.filename}", depth + 1,  # type: ignore[arg-type]
                             size=info.file_size)
        finally:
            self._expansions.pop()

    def _gzip(self, stream: BinaryIO, path: str, origin: str, depth: int) -> None:
        counted = _CountingReader(stream)
        self._expansions.append(_Expansion(origin, lambda: counted.count, self.limits))
        try:
            with gzip.GzipFile(fileobj=counted, mode="rb") as unzipped:  # type: ignore[call-overload]
                self.add(unzipped, path, f"{origin}!{posixpath.basename(path)}", depth + 1)
        finally:
            self._expansions.pop()

    def _tar(self, stream: BinaryIO, folder: str, origin: str, depth: int) -> None:
        counted = _CountingReader(stream)
        self._expansions.append(_Expansion(origin, lambda: counted.count, self.limits))
        try:
            try:
                archive = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115 - `with` below
                    fileobj=counted, mode="r|*",
                    tarinfo=_bounded_tarinfo(self.limits.max_header_bytes, origin))
            except _READ_ERRORS as exc:
                raise CorruptArchiveError(f"{origin}: not a readable tar archive ({exc})",
                                          hint="check the file is complete, or re-create it") \
                    from None
            with archive:
                members = 0
                while True:
                    try:
                        info = archive.next()
                    except _READ_ERRORS as exc:
                        raise CorruptArchiveError(f"{origin}: damaged tar archive ({exc})",
                                                  hint="re-create the archive") from None
                    if info is None:
                        break
                    if info.isdir():
                        continue
                    path = safe_member_path(folder, info.name, origin)
                    if not info.isfile():
                        raise UnsafeArchivePathError(
                            f"{origin}: member {info.name!r} is a link or device, not a file",
                            hint="archive the files themselves (tar --dereference)")
                    members += 1
                    self._check_members(origin, members)
                    self._check_declared(info.size, f"{origin}!{info.name}")
                    member = archive.extractfile(info)
                    self.add(member, path, f"{origin}!{info.name}", depth + 1, size=info.size)
        finally:
            self._expansions.pop()

    # -- writing -----------------------------------------------------------------------------

    def _check_declared(self, size: int, origin: str) -> None:
        """Refuse a member whose header declares more than one file or the update may hold."""
        if size > self.limits.max_file_bytes or self._total + size > self.limits.max_total_bytes:
            raise ArchiveBombError(
                f"{origin}: declares {size_text(size)} (limits: "
                f"{size_text(self.limits.max_file_bytes)} a file, "
                f"{size_text(self.limits.max_total_bytes)} an update) - refused as a possible "
                "archive bomb", hint="split the source into several updates")

    def _check_members(self, origin: str, count: int) -> None:
        if count + len(self.files) > self.limits.max_members:
            raise ArchiveBombError(
                f"{origin}: more than {self.limits.max_members} files",
                hint="split the source into several updates")

    def _read(self, stream: BinaryIO, origin: str, inside_archive: bool) -> bytes:
        if not inside_archive:
            return stream.read(CHUNK)
        try:
            return stream.read(CHUNK)
        except _READ_ERRORS as exc:
            raise CorruptArchiveError(f"{origin}: damaged archive member ({exc})",
                                      hint="check the archive is complete, or re-create it") \
                from None

    def _grow(self, n: int, origin: str) -> None:
        self._total += n
        if self._total > self.limits.max_total_bytes:
            raise ArchiveBombError(
                f"{origin}: the source expands beyond {size_text(self.limits.max_total_bytes)}",
                hint="split the source into several updates")
        for expansion in self._expansions:
            expansion.grow(n)

    def _spool(self, stream: BinaryIO, spool: BinaryIO, origin: str) -> int:
        """Copy `stream` to `spool`; what an outer archive produces this way counts against its
        ratio (its contents count again when they are written)."""
        size = 0
        while chunk := self._read(stream, origin, inside_archive=True):
            size += len(chunk)
            if size > self.limits.max_file_bytes:
                raise ArchiveBombError(f"{origin}: larger than "
                                       f"{size_text(self.limits.max_file_bytes)}",
                                       hint="split the source into several updates")
            for expansion in self._expansions:
                expansion.grow(len(chunk))
            spool.write(chunk)
        return size

    def add_copied(self, path: str, origin: str, size: int) -> None:
        """A plain (not archive) file of `size` bytes that the storage copies to `path` itself
        (server-side), once this has accepted it: checked like a written file, recorded without
        its sha256."""
        self._claim(path, origin)
        if size == 0:
            raise EmptyFileError(f"{origin} is empty (0 bytes)",
                                 hint="remove the empty file from the source, or fill it")
        if size > self.limits.max_file_bytes:
            raise ArchiveBombError(f"{origin}: larger than {size_text(self.limits.max_file_bytes)}",
                                   hint="split the file, or ingest it as several updates")
        self._grow(size, origin)
        self.files.append(RawFile(path=path, bytes=size, sha256="", origin=origin))

    def _claim(self, path: str, origin: str) -> None:
        if path in self._paths:
            raise DuplicatePathError(
                f"{origin} and {self._paths[path]} would both be stored as {path!r}",
                hint="rename one of them, or ingest them as separate updates")
        self._paths[path] = origin

    def _write(self, stream: BinaryIO, path: str, origin: str, inside_archive: bool) -> None:
        self._claim(path, origin)
        digest, size = hashlib.sha256(), 0
        with self.sink.open(path) as out:
            while chunk := self._read(stream, origin, inside_archive):
                self._grow(len(chunk), origin)
                digest.update(chunk)
                size += len(chunk)
                if size > self.limits.max_file_bytes:
                    raise ArchiveBombError(
                        f"{origin}: larger than {size_text(self.limits.max_file_bytes)}",
                        hint="split the file, or ingest it as several updates")
                out.write(chunk)
        if size == 0:
            raise EmptyFileError(f"{origin} is empty (0 bytes)",
                                 hint="remove the empty file from the source, or fill it")
        self.files.append(RawFile(path=path, bytes=size, sha256=digest.hexdigest(),
                                  origin=origin))


class LocalSink:
    """A `Sink` into a local folder (tests, tools)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def open(self, path: str):
        import os

        target = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return open(target, "wb")

