"""A Spark data source that reads an update's parquet parts from S3 with pyarrow (pyspark 4).

Where Spark has no `s3://` of its own (the local runtime, DESIGN §8) and has Python data sources
(pyspark 4), reading goes through this data source: the driver lists the parts (from the update
records: part names are fixed, no S3 listing), each part becomes one input partition, and each
task streams its part with pyarrow's S3 filesystem, checks it against its recorded SHA-256 and
hands Spark Arrow record batches (`edl.utils.part_io`). Executors get the local cloud's endpoint
and credentials in the options, which Spark redacts in plans because of their names. Importing
this module needs pyspark 4; `edl.utils.lake_paths` picks it only where it exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from edl.utils.part_io import PartToRead, read_part
from edl.utils.schemas import schema_from_text
from edl.utils.storage import S3Access

SOURCE_NAME = "edl_parts"


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
        self.access = access_from_options(options)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(part) for part in self.parts]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        yield from read_part(self.access, self.dataset, PartToRead.from_list(partition.value),
                             schema_from_text(self.arrow_schema), self.with_meta)


def access_from_options(options: dict[str, str]) -> S3Access:
    return S3Access(region=options["region"], endpoint_url=options.get("endpoint_url") or None,
                    access_key=options.get("aws_access_key_id") or None,
                    secret_key=options.get("aws_secret_access_key") or None,
                    session_token=options.get("aws_session_token") or None)


def access_options(access: S3Access) -> dict[str, str]:
    """How tasks reach S3, as data source options (credentials only on the local cloud)."""
    options = {"region": access.region, "endpoint_url": access.endpoint_url or ""}
    if access.access_key:
        options.update(aws_access_key_id=access.access_key,
                       aws_secret_access_key=access.secret_key or "",
                       aws_session_token=access.session_token or "")
    return options


def read_options(dataset: str, parts: list[tuple[str, str, str, int, int, str]],
                 arrow_schema_text: str, spark_schema_json: str, access: S3Access,
                 with_meta: bool) -> dict[str, str]:
    """The data source's options; each part is (bucket, key, update id, part number, the
    update's position in commit order, the part's recorded SHA-256 or "")."""
    return {
        "dataset": dataset, "parts": json.dumps(parts), "arrow_schema": arrow_schema_text,
        "spark_schema": spark_schema_json, "with_meta": "1" if with_meta else "0",
        **access_options(access),
    }
