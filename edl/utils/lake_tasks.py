"""Parts read and written by plain RDD tasks with pyarrow: Spark without an S3 filesystem and
without Python data sources (pyspark 3.5 on a laptop; `edl.utils.lake_paths`).

The tasks do what pyspark 4's data source and sink do (`edl.utils.part_io`): a read is one task
per part, which streams the part from S3, checks its SHA-256 and parses it; a write is one task
per partition, which writes its rows as one part of the staging folder, and the driver collects
what each kept attempt wrote. What differs is the hand-over: pyspark 3.5 moves Arrow batches
between Spark and Python only through pandas (`mapInArrow` needs it, and no pandas is
installed), so rows cross as Python objects - slower, the reason this is the last resort. The
crossing keeps every type: values go to Spark through its own `toInternal` (an aware UTC
datetime for a timestamp, a naive one for `timestamp_ntz`, `Decimal`, `date`, dicts for structs
and maps), and come back from Spark's rows with the one conversion Spark's rows need: a
`TimestampType` arrives as a naive datetime in the worker's local time zone, which is turned
back into the instant it was.
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from edl.utils.lake_paths import UpdateParts, WrittenPart, with_meta_schema
from edl.utils.part_io import (
    BATCH_ROWS,
    PartToRead,
    read_part,
    task_part_key,
    write_part,
)
from edl.utils.schemas import schema_from_text, schema_to_text, spark_schema
from edl.utils.storage import S3Access


class TaskPath:
    """Parts read and written in RDD tasks with pyarrow, rows crossing as Python objects."""

    name = "rdd tasks"

    def __init__(self, spark, access: S3Access) -> None:
        self.spark = spark
        self.access = access

    def read(self, dataset: str, updates: list[UpdateParts], schema: pa.Schema,
             with_meta: bool):
        declared = with_meta_schema(schema) if with_meta else schema
        parts = [p.as_list() for u in updates for p in u.parts]
        task = functools.partial(_read_parts, self.access, dataset, schema_to_text(schema),
                                 with_meta)
        rows = self.spark.sparkContext.parallelize(parts, max(1, len(parts))).mapPartitions(task)
        return self.spark.createDataFrame(rows, spark_schema(declared), verifySchema=False)

    def write(self, frame, bucket: str, prefix: str, schema: pa.Schema) -> list[WrittenPart]:
        task = functools.partial(_write_partition, self.access, bucket, prefix,
                                 frame.schema.json(), schema_to_text(schema))
        written = frame.rdd.mapPartitionsWithIndex(task).collect()
        return [WrittenPart(key, rows, size)
                for _partition, key, rows, size in sorted(written) if rows]


# -- in the tasks ---------------------------------------------------------------------------------

def _read_parts(access: S3Access, dataset: str, schema_text: str, with_meta: bool,
                parts: Iterable[list]) -> Iterator[tuple]:
    target = schema_from_text(schema_text)
    for value in parts:
        for batch in read_part(access, dataset, PartToRead.from_list(value), target, with_meta):
            yield from zip(*(_spark_values(column) for column in batch.columns), strict=True)


def _spark_values(column: pa.Array) -> list:
    """A column's values as Spark's `toInternal` takes them: pyarrow's own, except maps, which
    pyarrow gives as lists of pairs and Spark wants as dicts."""
    if not _has_map(column.type):
        return column.to_pylist()
    return [_with_dict_maps(v, column.type) for v in column.to_pylist()]


def _has_map(t: pa.DataType) -> bool:
    if pa.types.is_map(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_map(t.value_type)
    if pa.types.is_struct(t):
        return any(_has_map(t.field(i).type) for i in range(t.num_fields))
    return False


def _with_dict_maps(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_map(t):
        return {_with_dict_maps(k, t.key_type): _with_dict_maps(v, t.item_type)
                for k, v in value}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [_with_dict_maps(v, t.value_type) for v in value]
    if pa.types.is_struct(t):
        return {t.field(i).name: _with_dict_maps(value[t.field(i).name], t.field(i).type)
                for i in range(t.num_fields)}
    return value


def _write_partition(access: S3Access, bucket: str, prefix: str, spark_schema_json: str,
                     schema_text: str, partition: int, rows: Iterable) -> Iterator[tuple]:
    from pyspark import TaskContext
    from pyspark.sql.types import StructType

    context = TaskContext.get()
    attempt = context.attemptNumber() if context is not None else 0
    struct = StructType.fromJson(json.loads(spark_schema_json))
    schema = schema_from_text(schema_text)
    written = write_part(access, bucket, task_part_key(prefix, partition, attempt), schema,
                         _arrow_batches(rows, struct, schema), partition)
    yield (partition, written.key, written.rows, written.bytes)


def _arrow_batches(rows: Iterable, struct, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Spark's rows (tuples) as Arrow batches in `schema`, BATCH_ROWS rows at a time."""
    converters = [_from_spark(f.dataType) for f in struct.fields]
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= BATCH_ROWS:
            yield _batch(chunk, converters, schema)
            chunk = []
    if chunk:
        yield _batch(chunk, converters, schema)


def _batch(rows: list, converters: list[Callable | None], schema: pa.Schema) -> pa.RecordBatch:
    columns = []
    for index, (convert, field) in enumerate(zip(converters, schema, strict=True)):
        values = [row[index] for row in rows]
        if convert is not None:
            values = [convert(v) for v in values]
        columns.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _from_spark(dtype) -> Callable[[Any], Any] | None:
    """What a value of Spark type `dtype` in a Python row needs before pyarrow takes it (None:
    nothing): timestamps are made aware (Spark hands them naive, in the worker's local time),
    structs (Rows) become dicts, all the way down."""
    from pyspark.sql.types import ArrayType, MapType, StructType, TimestampType

    if isinstance(dtype, TimestampType):
        return _aware
    if isinstance(dtype, ArrayType):
        item = _from_spark(dtype.elementType)
        if item is None:
            return None
        return lambda v: None if v is None else [item(x) for x in v]
    if isinstance(dtype, MapType):
        key, value = _from_spark(dtype.keyType), _from_spark(dtype.valueType)
        if key is None and value is None:
            return None
        keep = _keep
        return lambda v: None if v is None else {
            (key or keep)(k): (value or keep)(x) for k, x in v.items()}
    if isinstance(dtype, StructType):
        fields = [(f.name, _from_spark(f.dataType) or _keep) for f in dtype.fields]
        return lambda v: None if v is None else {
            name: convert(v[i]) for i, (name, convert) in enumerate(fields)}
    return None


def _aware(value: datetime.datetime | None) -> datetime.datetime | None:
    # A naive datetime's astimezone() reads it in the local zone: the very zone Spark's
    # TimestampType.fromInternal used to make it in this process.
    return None if value is None else value.astimezone(datetime.UTC)


def _keep(value: Any) -> Any:
    return value
