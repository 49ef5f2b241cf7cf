"""A Spark data source that writes a DataFrame as parquet parts to S3 with pyarrow.

The writing twin of `edl.utils.lake_source`, for the same reason (no `s3a://` here, DESIGN §8):
each Spark task gets its partition as Arrow record batches (`DataSourceArrowWriter`: no row
becomes a Python object) and streams them with pyarrow's S3 filesystem into one part,
`<prefix>task-<partition>-<attempt>.parquet`; an empty partition writes nothing. When every
task has succeeded, the job's commit writes the list of parts that count - one per partition,
from the attempts Spark kept - to `<prefix>_edl_tasks.json`, which `written_parts` reads back;
an aborted job deletes what its tasks wrote. Parts left by a failed attempt are not listed, and
go with the staging folder they were written to.

    frame.write.format(SINK_NAME).mode("append").options(**sink_options(...)).save()
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

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
    options = {"bucket": bucket, "prefix": prefix, "arrow_schema": arrow_schema_text,
               "region": access.region, "endpoint_url": access.endpoint_url or ""}
    if access.access_key:
        options.update(aws_access_key_id=access.access_key,
                       aws_secret_access_key=access.secret_key or "",
                       aws_session_token=access.session_token or "")
    return options


def written_parts(access: S3Access, bucket: str, prefix: str) -> list[dict]:
    """The parts a committed write left under `prefix`, in partition order: `partition`,
    `key`, `rows`, `bytes`."""
    body = access.client().get_object(Bucket=bucket, Key=f"{prefix}{TASKS_FILE}")["Body"].read()
    return sorted(json.loads(body)["parts"], key=lambda p: p["partition"])


def _access(options: dict[str, str]) -> S3Access:
    return S3Access(region=options["region"], endpoint_url=options.get("endpoint_url") or None,
                    access_key=options.get("aws_access_key_id") or None,
                    secret_key=options.get("aws_secret_access_key") or None,
                    session_token=options.get("aws_session_token") or None)


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
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        attempt = context.attemptNumber() if context is not None else 0
        key = f"{self.prefix}task-{partition:05d}-{attempt}.parquet"
        schema = schema_from_text(self.arrow_schema)
        fs = _access(self.options).filesystem()
        rows = 0
        stream = writer = None
        try:
            for batch in iterator:
                if batch.num_rows == 0:
                    continue
                if writer is None:
                    stream = fs.open_output_stream(f"{self.bucket}/{key}")
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
            return PartWritten(partition, "", 0, 0)
        return PartWritten(partition, key, rows, fs.get_file_info(f"{self.bucket}/{key}").size)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        parts = [{"partition": m.partition, "key": m.key, "rows": m.rows, "bytes": m.bytes}
                 for m in messages if isinstance(m, PartWritten) and m.rows]
        _access(self.options).client().put_object(
            Bucket=self.bucket, Key=f"{self.prefix}{TASKS_FILE}",
            Body=json.dumps({"parts": parts}).encode())

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        client = _access(self.options).client()
        for m in messages:
            if isinstance(m, PartWritten) and m.key:
                client.delete_object(Bucket=self.bucket, Key=m.key)
