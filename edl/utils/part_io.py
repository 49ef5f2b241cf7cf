"""One update part as a Spark task reads or writes it with pyarrow, whatever runs the task.

The lake's parts are reached from inside Spark tasks in two ways that share this code: pyspark 4's
Python data source and sink (`edl.utils.lake_source`, `edl.utils.lake_sink`, the local runtime's
way), and plain RDD tasks where Spark has neither Python data sources nor an S3 filesystem
(`edl.utils.lake_tasks`: pyspark 3.5 on a laptop, DESIGN §8). Nothing here imports pyspark.

Reading: the task streams the part once into a spooled temporary file (memory up to 64 MiB, then
local disk), hashing it on the way, and parses it from there only if the digest is the SHA-256
recorded in the update's manifest at commit; a mismatch fails the read with
`ChecksumMismatchError` naming the dataset, the update and the part. Parts of updates written
before checksums were recorded ("" as their checksum) are read unchecked. With `with_meta`,
every row also carries `_edl_order` (its update's position in commit order, among the updates
read) and `_edl_row` (part number × 2**40 + row in part), which is what "last write wins"
orders by when deltas are applied.

Writing: one task's batches become one part, `<prefix>task-<partition>-<attempt>.parquet`; a
task with no rows writes nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from edl.utils.schemas import conform_batch
from edl.utils.staging import ChecksumMismatchError
from edl.utils.storage import S3Access

ORDER_COLUMN = "_edl_order"
ROW_COLUMN = "_edl_row"
PART_SHIFT = 40
_SPOOL_BYTES = 64 << 20
_CHUNK = 8 << 20
BATCH_ROWS = 65536


@dataclass(frozen=True)
class PartToRead:
    """One part of an update being read, and where its update stands among those read."""

    bucket: str
    key: str
    update_id: str
    ordinal: int        # the part's number within its update
    order: int          # the update's position in commit order, among the updates read
    sha256: str         # recorded at commit; "" for updates written before checksums

    def as_list(self) -> list:
        return [self.bucket, self.key, self.update_id, self.ordinal, self.order, self.sha256]

    @classmethod
    def from_list(cls, value) -> PartToRead:
        bucket, key, update_id, ordinal, order, sha256 = value
        return cls(bucket, key, update_id, int(ordinal), int(order), sha256)


def checksum_mismatch(dataset: str, part: PartToRead) -> ChecksumMismatchError:
    return ChecksumMismatchError(
        f"{dataset} update {part.update_id}: part {part.key.rsplit('/', 1)[-1]} "
        f"(s3://{part.bucket}/{part.key}) does not match the SHA-256 recorded at commit",
        hint="the part was changed after its update completed; restore it from the "
        "bucket's versions, or ingest the data again")


def read_part(access: S3Access, dataset: str, part: PartToRead, target: pa.Schema,
              with_meta: bool) -> Iterator[pa.RecordBatch]:
    """The part's rows in `target`'s schema (plus the two meta columns with `with_meta`),
    after its bytes matched their recorded SHA-256."""
    import pyarrow.parquet as pq

    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as local:
        _fetch_checked(access, dataset, part, local)
        offset = 0
        for batch in pq.ParquetFile(local).iter_batches(batch_size=BATCH_ROWS):
            batch = conform_batch(batch, target)
            if with_meta:
                n = batch.num_rows
                base = (part.ordinal << PART_SHIFT) + offset
                batch = pa.RecordBatch.from_arrays(
                    [*batch.columns, pa.array([part.order] * n, pa.int64()),
                     pa.array(range(base, base + n), pa.int64())],
                    names=[*batch.schema.names, ORDER_COLUMN, ROW_COLUMN])
                offset += n
            yield batch


def _fetch_checked(access: S3Access, dataset: str, part: PartToRead, local) -> None:
    """Copy the part into `local`, failing unless its SHA-256 is the recorded one."""
    digest = hashlib.sha256()
    with access.filesystem().open_input_stream(f"{part.bucket}/{part.key}") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
            local.write(chunk)
    local.seek(0)
    if part.sha256 and digest.hexdigest() != part.sha256:
        raise checksum_mismatch(dataset, part)


@dataclass(frozen=True)
class PartWrittenInfo:
    """What one task wrote: its partition, the part's key (None: no rows, nothing written)."""

    partition: int
    key: str | None
    rows: int
    bytes: int


def task_part_key(prefix: str, partition: int, attempt: int) -> str:
    return f"{prefix}task-{partition:05d}-{attempt}.parquet"


def write_part(access: S3Access, bucket: str, key: str, schema: pa.Schema,
               batches: Iterable[pa.RecordBatch], partition: int) -> PartWrittenInfo:
    """Write `batches` (cast to `schema`: names and types) as one parquet part at `key`;
    nothing at all if they hold no rows."""
    import pyarrow.parquet as pq

    fs = access.filesystem()
    rows = 0
    stream = writer = None
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if writer is None:
                stream = fs.open_output_stream(f"{bucket}/{key}")
                writer = pq.ParquetWriter(stream, schema, compression="snappy")
            table = pa.Table.from_batches([batch])
            if not table.schema.equals(schema):
                table = table.rename_columns(schema.names).cast(schema)
            writer.write_table(table)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
        if stream is not None:
            stream.close()
    if not rows:
        return PartWrittenInfo(partition, None, 0, 0)
    return PartWrittenInfo(partition, key, rows, fs.get_file_info(f"{bucket}/{key}").size)
