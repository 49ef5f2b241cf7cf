"""A Spark data source that reads an update's parquet parts from S3 with pyarrow.

Spark here has no `s3a://` (DESIGN §8), so reading goes through a pyspark Python data source:
the driver lists the parts (from the update records: part names are fixed, no S3 listing), each
part becomes one input partition, and each task streams its part with pyarrow's S3 filesystem and
hands Spark Arrow record batches. The same code runs on Glue/EMR (executors use their role) and
locally (executors get the local cloud's endpoint and credentials in the options, which Spark
redacts in plans because of their names).

With `with_meta`, every row also carries `_edl_order` (its update's position in commit order,
among the updates read) and `_edl_row` (its position within the update: part number × 2**40 +
row in part), which is what "last write wins" orders by when deltas are applied.

Each part is checked against the SHA-256 recorded in its update's manifest at commit: the task
streams the part once into a spooled temporary file (memory up to 64 MiB, then local disk),
hashing it on the way, and parses it from there only if the digest matches; a mismatch fails the
read with `ChecksumMismatchError` naming the dataset, the update and the part. Parts of updates
written before checksums were recorded are read unchecked.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from edl.utils.schemas import conform_batch, schema_from_text
from edl.utils.staging import ChecksumMismatchError
from edl.utils.storage import S3Access

SOURCE_NAME = "edl_parts"
ORDER_COLUMN = "_edl_order"
ROW_COLUMN = "_edl_row"
_PART_SHIFT = 40
_SPOOL_BYTES = 64 << 20
_CHUNK = 8 << 20


class EdlPartsDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        return StructType.fromJson(json.loads(self.options["spark_schema"]))

    def reader(self, schema: StructType) -> EdlPartsReader:
        return EdlPartsReader(dict(self.options))


class EdlPartsReader(DataSourceReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.parts = [tuple(p) for p in json.loads(options["parts"])]
        self.arrow_schema = options["arrow_schema"]
        self.with_meta = options.get("with_meta") == "1"
        self.dataset = options.get("dataset", "")
        self.access = S3Access(
            region=options["region"], endpoint_url=options.get("endpoint_url") or None,
            access_key=options.get("aws_access_key_id") or None,
            secret_key=options.get("aws_secret_access_key") or None,
            session_token=options.get("aws_session_token") or None)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(part) for part in self.parts]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        bucket, key, update_id, ordinal, order, sha256 = partition.value
        target = schema_from_text(self.arrow_schema)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as local:
            self._fetch_checked(bucket, key, update_id, sha256, local)
            offset = 0
            for batch in pq.ParquetFile(local).iter_batches(batch_size=65536):
                batch = conform_batch(batch, target)
                if self.with_meta:
                    n = batch.num_rows
                    base = (int(ordinal) << _PART_SHIFT) + offset
                    batch = pa.RecordBatch.from_arrays(
                        [*batch.columns, pa.array([int(order)] * n, pa.int64()),
                         pa.array(range(base, base + n), pa.int64())],
                        names=[*batch.schema.names, ORDER_COLUMN, ROW_COLUMN])
                    offset += n
                yield batch

    def _fetch_checked(self, bucket: str, key: str, update_id: str, sha256: str, local) -> None:
        """Copy the part into `local`, failing unless its SHA-256 is the recorded one."""
        digest = hashlib.sha256()
        with self.access.filesystem().open_input_stream(f"{bucket}/{key}") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
                local.write(chunk)
        local.seek(0)
        if sha256 and digest.hexdigest() != sha256:
            raise ChecksumMismatchError(
                f"{self.dataset} update {update_id}: part {key.rsplit('/', 1)[-1]} "
                f"(s3://{bucket}/{key}) does not match the SHA-256 recorded at commit",
                hint="the part was changed after its update completed; restore it from the "
                "bucket's versions, or ingest the data again")


def read_options(dataset: str, parts: list[tuple[str, str, str, int, int, str]],
                 arrow_schema_text: str, spark_schema_json: str, access: S3Access,
                 with_meta: bool) -> dict[str, str]:
    """The data source's options; each part is (bucket, key, update id, part number, the
    update's position in commit order, the part's recorded SHA-256 or "")."""
    options = {
        "dataset": dataset, "parts": json.dumps(parts), "arrow_schema": arrow_schema_text,
        "spark_schema": spark_schema_json, "with_meta": "1" if with_meta else "0",
        "region": access.region, "endpoint_url": access.endpoint_url or "",
    }
    if access.access_key:
        options.update(aws_access_key_id=access.access_key,
                       aws_secret_access_key=access.secret_key or "",
                       aws_session_token=access.session_token or "")
    return options
