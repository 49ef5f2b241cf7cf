"""A Spark data source that reads an update's parquet parts from S3 with pyarrow.

Spark here has no `s3a://` (DESIGN §8), so reading goes through a pyspark Python data source:
the driver lists the parts (from the update records: part names are fixed, no S3 listing), each
part becomes one input partition, and each task streams its part with pyarrow's S3 filesystem and
hands Spark Arrow record batches. The same code runs on Glue/EMR (executors use their role) and
locally (executors get the local cloud's endpoint and credentials in the options, which Spark
redacts in plans because of their names).

With `with_meta`, every row also carries `_edl_update` (its update id) and `_edl_row` (its
position within the update: part number × 2**40 + row in part), which is what "last write wins"
orders by when deltas are applied.
"""

from __future__ import annotations

import json
from typing import Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from edl.utils.schemas import conform_batch, schema_from_text
from edl.utils.storage import S3Access

SOURCE_NAME = "edl_parts"
UPDATE_COLUMN = "_edl_update"
ROW_COLUMN = "_edl_row"
_PART_SHIFT = 40


class EdlPartsDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        return StructType.fromJson(json.loads(self.options["spark_schema"]))

    def reader(self, schema: StructType) -> "EdlPartsReader":
        return EdlPartsReader(dict(self.options))


class EdlPartsReader(DataSourceReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.parts = [tuple(p) for p in json.loads(options["parts"])]
        self.arrow_schema = options["arrow_schema"]
        self.with_meta = options.get("with_meta") == "1"
        self.access = S3Access(
            region=options["region"], endpoint_url=options.get("endpoint_url") or None,
            access_key=options.get("aws_access_key_id") or None,
            secret_key=options.get("aws_secret_access_key") or None,
            session_token=options.get("aws_session_token") or None)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(part) for part in self.parts]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        bucket, key, update_id, ordinal = partition.value
        target = schema_from_text(self.arrow_schema)
        with self.access.filesystem().open_input_file(f"{bucket}/{key}") as handle:
            offset = 0
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=65536):
                batch = conform_batch(batch, target)
                if self.with_meta:
                    n = batch.num_rows
                    base = (int(ordinal) << _PART_SHIFT) + offset
                    batch = pa.RecordBatch.from_arrays(
                        [*batch.columns, pa.array([update_id] * n, pa.string()),
                         pa.array(range(base, base + n), pa.int64())],
                        names=[*batch.schema.names, UPDATE_COLUMN, ROW_COLUMN])
                    offset += n
                yield batch


def read_options(parts: list[tuple[str, str, str, int]], arrow_schema_text: str, spark_schema_json: str,
                 access: S3Access, with_meta: bool) -> dict[str, str]:
    options = {
        "parts": json.dumps(parts), "arrow_schema": arrow_schema_text,
        "spark_schema": spark_schema_json, "with_meta": "1" if with_meta else "0",
        "region": access.region, "endpoint_url": access.endpoint_url or "",
    }
    if access.access_key:
        options.update(aws_access_key_id=access.access_key,
                       aws_secret_access_key=access.secret_key or "",
                       aws_session_token=access.session_token or "")
    return options
