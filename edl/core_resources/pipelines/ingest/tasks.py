"""The work one Spark task does: fetch one source file, convert one raw file, conform one part.

Tasks are plain module functions over small frozen arguments, so Spark ships them by reference
and they run the same on a local Python worker, a Glue executor or an EMR node. Each task opens
its own S3 connections from an `S3Access` and streams S3 → S3; nothing passes through the driver.

Each byte is read once where it can be. A source file that is a plain S3 object (not an archive,
`copyable`) is copied into the raw folder server-side (CopyObject), and its conversion computes
the copy's sha256 and size while it streams it (`HashingReader`); only a parquet file, which is
read at random, is read once more for its checksum. When every file of a source is copyable, the
conversion task makes the copy itself (`ConvertJob.copy_from`), so there is no fetch stage at all.
Archives and HTTPS/SFTP files are streamed through the task into the raw folder, checksummed as
they are written, and then converted from there.

Bad input is an answer, not a crash: a task returns `Outcome(error=…)` for an `IngestError` (or a
schema conflict), so Spark does not retry a file that will never parse and the driver gets the
error with its message intact. Anything else raises and Spark retries it as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from edl.core_resources.pipelines.ingest.archives import (
    ArchiveLimits,
    RawFile,
    Unpacker,
    archive_kind,
)
from edl.core_resources.pipelines.ingest.convert import convert_file
from edl.core_resources.pipelines.ingest.errors import IngestError
from edl.core_resources.pipelines.ingest.formats import FormatOptions
from edl.core_resources.pipelines.ingest.sources import S3Source, SourceFile
from edl.utils.schemas import SchemaConflictError, conform_batch, schema_from_text, schema_to_text
from edl.utils.storage import S3Access, copy_object

MiB = 1 << 20
STREAMED_FORMATS = ("csv", "jsonl", "excel")   # read front to back (Excel: spooled first)


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: Exception | None = None


def guarded(work: Callable[[], Any]) -> Outcome:
    try:
        return Outcome(value=work())
    except (IngestError, SchemaConflictError) as exc:
        return Outcome(error=exc)


@dataclass(frozen=True)
class S3Sink:
    """Writes raw files under `s3://bucket/prefix`."""

    access: S3Access
    bucket: str
    prefix: str

    def open(self, path: str):
        return self.access.filesystem().open_output_stream(f"{self.bucket}/{self.prefix}{path}")

    def copy_in(self, bucket: str, key: str, path: str, size: int) -> None:
        """Copy `s3://bucket/key` to `path` server-side."""
        copy_object(self.access.client(), bucket, key, self.bucket, f"{self.prefix}{path}", size)


def copyable(source, file: SourceFile) -> bool:
    """Whether `file` goes into the raw folder as it is, by a server-side copy."""
    return isinstance(source, S3Source) and file.size is not None and \
        archive_kind(file.path) is None


def fetch(source, file: SourceFile, sink: S3Sink, limits: ArchiveLimits) -> Outcome:
    """Bring one source file into the raw folder, unpacking archives; → list[RawFile]. A plain S3
    object is copied server-side and its `RawFile.sha256` left for the conversion to fill."""
    def work() -> list[RawFile]:
        unpacker = Unpacker(sink, limits)
        if copyable(source, file) and file.size is not None:  # copyable implies a known size
            unpacker.add_copied(file.path, file.url, file.size)
            sink.copy_in(source.bucket, file.locator, file.path, file.size)
            return unpacker.files
        with source.open(file) as stream:
            unpacker.add(stream, file.path, file.url, size=file.size)
        return unpacker.files
    return guarded(work)


class HashingReader:
    """A read-only stream over another that computes the sha256 and size of what it reads.
    It cannot seek, so what it reads is the file's start; `complete` once it has reached the
    end, and then `sha256`/`size` are the whole file's."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = 0
        self.complete = False

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if data:
            self._digest.update(data)
            self.size += len(data)
        elif n != 0:
            self.complete = True
        return data

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def closed(self) -> bool:
        return self._stream.closed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class ConvertJob:
    access: S3Access
    bucket: str
    raw_key: str
    part_key: str
    label: str
    format: str
    options: FormatOptions
    checksum: bool = False   # the raw file's sha256 is not known yet: compute it while reading
    copy_from: tuple[str, str, int] | None = None   # (bucket, key, size): copy it to raw_key first
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)  # what a reader may hold


@dataclass(frozen=True)
class ConvertResult:
    rows: int
    schema: str      # base64 Arrow IPC
    part_bytes: int
    raw_bytes: int | None = None    # with `ConvertJob.checksum`: the raw file's size
    raw_sha256: str | None = None   # … and sha256


def convert(job: ConvertJob) -> Outcome:
    def work() -> ConvertResult:
        fs = job.access.filesystem()
        raw = f"{job.bucket}/{job.raw_key}"
        if job.copy_from is not None:
            bucket, key, size = job.copy_from
            copy_object(job.access.client(), bucket, key, job.bucket, job.raw_key, size)
        readers: list[HashingReader] = []

        def open_input():
            stream = fs.open_input_file(raw)
            if not job.checksum or job.format not in STREAMED_FORMATS:
                return stream
            readers.append(HashingReader(stream))
            return readers[-1]

        converted = convert_file(
            job.format, job.label, open_input,
            lambda: fs.open_output_stream(f"{job.bucket}/{job.part_key}"), job.options,
            job.limits)
        size = fs.get_file_info(f"{job.bucket}/{job.part_key}").size
        result = ConvertResult(converted.rows, schema_to_text(converted.schema), size)
        if not job.checksum:
            return result
        whole = next((r for r in readers if r.complete), None)
        if whole is None:   # read at random (parquet): one more pass, for the checksum only
            with fs.open_input_stream(raw) as stream:
                whole = HashingReader(stream)
                while whole.read(8 * MiB):
                    pass
        return replace(result, raw_bytes=whole.size, raw_sha256=whole.sha256)
    return guarded(work)


def conform(access: S3Access, bucket: str, part_key: str, schema_text: str) -> int:
    """Rewrite a part in the update's unified schema (columns, order, widened types); → bytes.

    S3 keeps serving the old object until the new upload completes, so reading and writing the
    same key is safe, and a task that dies leaves the old part in place for its retry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = access.filesystem()
    target = schema_from_text(schema_text)
    path = f"{bucket}/{part_key}"
    with fs.open_input_file(path) as src:
        parquet = pq.ParquetFile(src)
        with fs.open_output_stream(path) as out, pq.ParquetWriter(out, target,
                                                                  compression="snappy") as w:
            for index in range(parquet.num_row_groups):
                table = parquet.read_row_group(index)
                batches = [conform_batch(b, target) for b in table.to_batches()]
                w.write_table(pa.Table.from_batches(batches, target))
    return fs.get_file_info(path).size
