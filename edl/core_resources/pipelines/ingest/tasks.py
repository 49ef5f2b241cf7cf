"""The work one Spark task does: fetch one source file, convert one raw file, conform one part.

Tasks are plain module functions over small frozen arguments, so Spark ships them by reference
and they run the same on a local Python worker, a Glue executor or an EMR node. Each task opens
its own S3 connections from an `S3Access` and streams S3 → S3; nothing passes through the driver.

Bad input is an answer, not a crash: a task returns `Outcome(error=…)` for an `IngestError` (or a
schema conflict), so Spark does not retry a file that will never parse and the driver gets the
error with its message intact. Anything else raises and Spark retries it as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edl.core_resources.pipelines.ingest.archives import ArchiveLimits, RawFile, Unpacker
from edl.core_resources.pipelines.ingest.convert import convert_file
from edl.core_resources.pipelines.ingest.errors import IngestError
from edl.core_resources.pipelines.ingest.formats import FormatOptions
from edl.core_resources.pipelines.ingest.sources import SourceFile
from edl.utils.schemas import (SchemaConflictError, conform_batch, schema_from_text,
                               schema_to_text)
from edl.utils.storage import S3Access


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


def fetch(source, file: SourceFile, sink: S3Sink, limits: ArchiveLimits) -> Outcome:
    """Stream one source file into the raw folder, unpacking archives; → list[RawFile]."""
    def work() -> list[RawFile]:
        unpacker = Unpacker(sink, limits)
        with source.open(file) as stream:
            unpacker.add(stream, file.path, file.url, size=file.size)
        return unpacker.files
    return guarded(work)


@dataclass(frozen=True)
class ConvertJob:
    access: S3Access
    bucket: str
    raw_key: str
    part_key: str
    label: str
    format: str
    options: FormatOptions


@dataclass(frozen=True)
class ConvertResult:
    rows: int
    schema: str      # base64 Arrow IPC
    part_bytes: int


def convert(job: ConvertJob) -> Outcome:
    def work() -> ConvertResult:
        fs = job.access.filesystem()
        converted = convert_file(
            job.format, job.label,
            lambda: fs.open_input_file(f"{job.bucket}/{job.raw_key}"),
            lambda: fs.open_output_stream(f"{job.bucket}/{job.part_key}"),
            job.options)
        size = fs.get_file_info(f"{job.bucket}/{job.part_key}").size
        return ConvertResult(converted.rows, schema_to_text(converted.schema), size)
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
