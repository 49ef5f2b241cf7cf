"""A Spark data source that writes a DataFrame as parquet parts to S3 with pyarrow (pyspark 4).

The writing twin of `edl.utils.lake_source`, for the same reason (no `s3://` here, DESIGN §8):
each Spark task gets its partition as Arrow record batches (`DataSourceArrowWriter`: no row
becomes a Python object) and streams them with pyarrow's S3 filesystem into one part,
`<prefix>task-<partition>-<attempt>.parquet` (`edl.utils.part_io`); an empty partition writes
nothing. When every task has succeeded, the job's commit writes the list of parts that count -
one per partition, from the attempts Spark kept - to `<prefix>_edl_tasks.json`, which
`written_parts` reads back; an aborted job deletes what its tasks wrote. Parts left by a failed
attempt are not listed, and go with the staging folder they were written to.

    frame.write.format(SINK_NAME).mode("append").options(**sink_options(...)).save()
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

from edl.utils.lake_source import access_from_options, access_options
from edl.utils.part_io import task_part_key, write_part
from edl.utils.schemas import schema_from_text
from edl.utils.storage import S3Access

SINK_NAME = "edl_parts_sink"
TASKS_FILE = "_edl_tasks.json"


@dataclass
class PartWritten(WriterCommitMessage):
    partition: int
    key: str
    rows: int
    bytes: int


def sink_options(bucket: str, prefix: str, arrow_schema_text: str,
                 access: S3Access) -> dict[str, str]:
    return {"bucket": bucket, "prefix": prefix, "arrow_schema": arrow_schema_text,
            **access_options(access)}


def written_parts(access: S3Access, bucket: str, prefix: str) -> list[dict]:
    """The parts a committed write left under `prefix`, in partition order: `partition`,
    `key`, `rows`, `bytes`."""
    body = access.client().get_object(Bucket=bucket, Key=f"{prefix}{TASKS_FILE}")["Body"].read()
    return sorted(json.loads(body)["parts"], key=lambda p: p["partition"])


class EdlPartsSink(DataSource):
    @classmethod
    def name(cls) -> str:
        return SINK_NAME

    def writer(self, schema: StructType, overwrite: bool) -> EdlPartsWriter:
        return EdlPartsWriter(dict(self.options))


class EdlPartsWriter(DataSourceArrowWriter):
    def __init__(self, options: dict[str, str]) -> None:
        self.bucket = options["bucket"]
        self.prefix = options["prefix"]
        self.arrow_schema = options["arrow_schema"]
        self.options = options

    def write(self, iterator: Iterator[pa.RecordBatch]) -> PartWritten:
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        attempt = context.attemptNumber() if context is not None else 0
        written = write_part(access_from_options(self.options), self.bucket,
                             task_part_key(self.prefix, partition, attempt),
                             schema_from_text(self.arrow_schema), iterator, partition)
        return PartWritten(partition, written.key or "", written.rows, written.bytes)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        parts = [{"partition": m.partition, "key": m.key, "rows": m.rows, "bytes": m.bytes}
                 for m in messages if isinstance(m, PartWritten) and m.rows]
        access_from_options(self.options).client().put_object(
            Bucket=self.bucket, Key=f"{self.prefix}{TASKS_FILE}",
            Body=json.dumps({"parts": parts}).encode())

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        client = access_from_options(self.options).client()
        for m in messages:
            if isinstance(m, PartWritten) and m.key:
                client.delete_object(Bucket=self.bucket, Key=m.key)
