"""How Spark reaches an update's parts, chosen by what the Spark at hand can do.

`lake.read` and the pipeline wrapper's outputs read and write parts through one of three paths,
all with the same results (the rows, their types, every part checked against its recorded
SHA-256, nothing visible outside the staging folder until the commit):

- `SparkFilesystemPath` (`edl.utils.lake_spark_fs`): Spark reads `s3://` itself - Glue and EMR,
  whose EMRFS needs no help - and the tasks reach S3 as their own role. Parts are read with
  `spark.read.parquet` and outputs written with Spark's parquet writer.
- `DataSourcePath`: pyspark 4's Python data source and sink (`edl.utils.lake_source`,
  `edl.utils.lake_sink`); tasks stream parts with pyarrow. The local runtime's path.
- `TaskPath` (`edl.utils.lake_tasks`): plain RDD tasks doing the same with pyarrow, where
  Spark has neither an S3 filesystem nor Python data sources (pyspark 3.5 on a laptop).

`parts_path` takes the first that applies: Spark's own filesystem only when Spark has one for
`s3://` and the tasks need no endpoint or credentials of ours (which Spark's filesystem would not
use); else the Python data source where pyspark has it; else the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from edl.utils.part_io import ORDER_COLUMN, ROW_COLUMN, PartToRead
from edl.utils.storage import S3Access


@dataclass(frozen=True)
class UpdateParts:
    """The parts of one update to read, with the update's own schema (as committed)."""

    update_id: str
    schema: pa.Schema
    parts: tuple[PartToRead, ...]


@dataclass(frozen=True)
class WrittenPart:
    """A part a write left in the staging folder: its key, rows and bytes."""

    key: str
    rows: int
    bytes: int


class PartsPath(Protocol):
    name: str

    def read(self, dataset: str, updates: list[UpdateParts], schema: pa.Schema,
             with_meta: bool):
        """The updates' rows as one DataFrame in `schema` (a `sparkable_schema`), plus
        `_edl_order` and `_edl_row` with `with_meta`."""
        ...

    def write(self, frame, bucket: str, prefix: str, schema: pa.Schema) -> list[WrittenPart]:
        """Write `frame` as parquet parts under `prefix` (a staging folder), in `schema`;
        → the parts that count, in partition order (none: the frame had no rows)."""
        ...


def with_meta_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([*schema, pa.field(ORDER_COLUMN, pa.int64()),
                      pa.field(ROW_COLUMN, pa.int64())])


def parts_path(spark, access: S3Access) -> PartsPath:
    """The way this Spark reaches the parts `access` describes (see the module's docstring)."""
    if has_python_data_sources(spark):
        python: PartsPath = DataSourcePath(spark, access)
    else:
        from edl.utils.lake_tasks import TaskPath

        python = TaskPath(spark, access)
    if access.endpoint_url is None and access.access_key is None \
            and spark_has_filesystem(spark, "s3"):
        from edl.utils.lake_spark_fs import SparkFilesystemPath

        return SparkFilesystemPath(spark, access, fallback=python)
    return python


def has_python_data_sources(spark) -> bool:
    """pyspark 4's `spark.dataSource.register` (classic and Spark Connect); 3.5 has none."""
    return hasattr(spark, "dataSource")


def spark_has_filesystem(spark, scheme: str) -> bool:
    """Whether Spark's Hadoop configuration has a filesystem for `scheme` (EMRFS for `s3` on
    Glue and EMR; none in pip's pyspark). A Spark Connect client cannot tell: no."""
    jvm = getattr(spark, "_jvm", None)
    jsc = getattr(spark, "_jsc", None)
    if jvm is None or jsc is None:
        return False
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, jsc.hadoopConfiguration())
    except Exception:  # noqa: BLE001 - py4j's error for UnsupportedFileSystemException
        return False
    return True


class DataSourcePath:
    """pyspark 4's Python data source and sink, tasks streaming with pyarrow."""

    name = "python data source"

    def __init__(self, spark, access: S3Access) -> None:
        self.spark = spark
        self.access = access

    def read(self, dataset: str, updates: list[UpdateParts], schema: pa.Schema,
             with_meta: bool):
        from edl.utils import lake_source
        from edl.utils.schemas import schema_to_text, spark_schema

        self.spark.dataSource.register(lake_source.EdlPartsDataSource)
        declared = with_meta_schema(schema) if with_meta else schema
        parts = [tuple(p.as_list()) for u in updates for p in u.parts]
        options = lake_source.read_options(dataset, parts, schema_to_text(schema),
                                           spark_schema(declared).json(), self.access,
                                           with_meta)
        return self.spark.read.format(lake_source.SOURCE_NAME).options(**options).load()

    def write(self, frame, bucket: str, prefix: str, schema: pa.Schema) -> list[WrittenPart]:
        from edl.utils.lake_sink import SINK_NAME, EdlPartsSink, sink_options, written_parts
        from edl.utils.schemas import schema_to_text

        self.spark.dataSource.register(EdlPartsSink)
        _make_active(self.spark)
        frame.write.format(SINK_NAME).mode("append").options(
            **sink_options(bucket, prefix, schema_to_text(schema), self.access)).save()
        return [WrittenPart(p["key"], int(p["rows"]), int(p["bytes"]))
                for p in written_parts(self.access, bucket, prefix)]


def _make_active(spark) -> None:
    """Spark finds a Python data source to write to in the *active* session of the calling
    thread, not in the DataFrame's (reads resolve through their reader's session). The local
    runtime runs jobs in a thread of its own, where no session is active: make it this one."""
    jvm = getattr(spark, "_jvm", None)
    session = getattr(spark, "_jsparkSession", None)
    if jvm is not None and session is not None:
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(session)
