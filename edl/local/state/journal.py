"""The write-ahead journal of the local cloud: framed, checksummed records, fsync'd on append.

A journal file is a header followed by records:

    b"EDLJRNL1\\n" <header JSON> b"\\n"          (format, sequence, edl and moto versions)
    <length: 4 bytes big-endian> <crc32 of payload: 4 bytes> <payload: length bytes>   ...

`append()` writes one record with a single `write` and fsyncs before it returns, so a record
that was acknowledged to a client is on disk. A crash can only tear the *last* record (a short
frame, or a frame whose checksum does not match and that ends the file): `read_journal()` drops
it - it was never acknowledged - and says so. A bad checksum followed by more data is not a
torn write but corruption, and so is a header that is not ours: both raise `CorruptStateError`,
and the file is left as it is.

The payload is opaque bytes here; the recorder decides what a record holds.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

JOURNAL_MAGIC = b"EDLJRNL1\n"
_FRAME = struct.Struct(">II")
MAX_RECORD_BYTES = 1 << 30  # a length above this is not a length we wrote


class CorruptStateError(Exception):
    """A state file that is not what EDL wrote (bad magic, checksum or framing)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class JournalContents:
    header: dict
    records: tuple[bytes, ...]
    valid_bytes: int     # where the last whole record ends: appends continue from here
    torn_bytes: int      # bytes of a torn last record, dropped (0 after a clean stop)


def frame(payload: bytes) -> bytes:
    """One record as it is written: length, checksum, payload."""
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def header_bytes(header: dict) -> bytes:
    return JOURNAL_MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n"


def _parse_header(path: Path, data: bytes) -> tuple[dict, int]:
    if not data.startswith(JOURNAL_MAGIC):
        raise CorruptStateError(path, "not an EDL journal (its first bytes are not EDLJRNL1)")
    end = data.find(b"\n", len(JOURNAL_MAGIC))
    if end < 0:
        raise CorruptStateError(path, "its header is cut short")
    try:
        header = json.loads(data[len(JOURNAL_MAGIC):end])
    except ValueError:
        raise CorruptStateError(path, "its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CorruptStateError(path, "its header is not a JSON object")
    return header, end + 1


def read_journal(path: Path) -> JournalContents:
    """Every whole record of a journal, in order; a torn last record is dropped."""
    data = path.read_bytes()
    header, offset = _parse_header(path, data)
    records: list[bytes] = []
    while offset < len(data):
        if len(data) - offset < _FRAME.size:
            break  # a frame cut short: the torn tail of a crash
        length, checksum = _FRAME.unpack_from(data, offset)
        start, end = offset + _FRAME.size, offset + _FRAME.size + length
        if length > MAX_RECORD_BYTES:
            raise CorruptStateError(path, f"record {len(records) + 1} has an impossible length")
        if end > len(data):
            break  # the payload cut short: torn
        payload = data[start:end]
        if zlib.crc32(payload) != checksum:
            if end == len(data):
                break  # the last record, half-written over old bytes: torn
            raise CorruptStateError(
                path, f"record {len(records) + 1} (at byte {offset}) fails its checksum")
        records.append(payload)
        offset = end
    return JournalContents(header, tuple(records), offset, len(data) - offset)


class JournalWriter:
    """Appends records to one journal file; each `append()` is on disk when it returns."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.records = 0
        self.bytes = os.fstat(fd).st_size

    @classmethod
    def create(cls, path: Path, header: dict) -> JournalWriter:
        """A new, empty journal (the header is fsync'd, and so is its folder entry)."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, header_bytes(header))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_folder(path.parent)
        return cls.open(path, valid_bytes=None)

    @classmethod
    def open(cls, path: Path, valid_bytes: int | None) -> JournalWriter:
        """Continue an existing journal, cutting a torn tail at `valid_bytes` first."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if valid_bytes is not None and os.fstat(fd).st_size != valid_bytes:
            os.ftruncate(fd, valid_bytes)
            os.fsync(fd)
        return cls(path, fd)

    def append(self, payload: bytes) -> None:
        record = frame(payload)
        written = os.write(self._fd, record)
        if written != len(record):  # a full disk can write part of it
            os.ftruncate(self._fd, self.bytes)
            raise OSError(f"short write to {self.path} ({written} of {len(record)} bytes)")
        os.fsync(self._fd)
        self.records += 1
        self.bytes += len(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
