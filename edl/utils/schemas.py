"""Schemas of updates: unifying the files of one update, and describing a schema to others.

The unification rule (one rule for the files of an update and for batches within a file):

- equal types stay; a column missing from a file is null there (columns are matched by name,
  in the order they first appear);
- `null` (a column with no value yet) takes the other side's type;
- integers widen to the widest integer, and integer + floating point to `double`;
- `date` + `timestamp` widen to `timestamp`; timestamps of different units to the finer one
  (their time zones must agree); `string` + `large_string` to `string`;
- anything else is a conflict, *including anything + string*: a column that is a number in one
  file and text in another is almost always a shifted or mislabelled column, and turning it into
  text silently would change the type readers see. The ingest fails and names the files and
  columns; fix the files, or ingest them as separate updates.

A schema is stored with each update as base64 Arrow IPC (exact) and as a readable list of
`{name, type}`; `glue_type` and `spark_schema` translate it for the catalog and for Spark.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence

import pyarrow as pa

from edl.errors import EdlError


class SchemaConflictError(EdlError):
    """Files (or parts of a file) of one update disagree on a column's type."""


_TS_UNITS = ("s", "ms", "us", "ns")


def widen_type(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type both `a` and `b` convert to without loss, or None if there is none."""
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        if pa.types.is_signed_integer(a) != pa.types.is_signed_integer(b):
            return pa.int64()
        return a if a.bit_width >= b.bit_width else b
    if _is_number(a) and _is_number(b):
        return pa.float64()
    if _is_stringish(a) and _is_stringish(b):
        return pa.string()
    if _is_temporal(a) and _is_temporal(b):
        tz_a = getattr(a, "tz", None)
        tz_b = getattr(b, "tz", None)
        if pa.types.is_timestamp(a) and pa.types.is_timestamp(b) and tz_a != tz_b:
            return None
        if pa.types.is_date(a) and pa.types.is_date(b):
            return pa.date32()
        units = [t.unit for t in (a, b) if pa.types.is_timestamp(t)]
        unit = max(units, key=_TS_UNITS.index)
        return pa.timestamp(unit, tz=tz_a or tz_b)
    return None


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_stringish(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def unify_schemas(labelled: Sequence[tuple[str, pa.Schema]], what: str = "files") -> pa.Schema:
    """One schema for all `(label, schema)` pairs, or a `SchemaConflictError` naming every
    conflicting column with the labels (file names) and types on each side."""
    fields: dict[str, pa.DataType] = {}
    first_seen: dict[str, tuple[str, pa.DataType]] = {}
    conflicts: dict[str, list[str]] = {}
    for label, schema in labelled:
        for f in schema:
            if f.name not in fields:
                fields[f.name] = f.type
                first_seen[f.name] = (label, f.type)
                continue
            wider = widen_type(fields[f.name], f.type)
            if wider is None:
                seen_label, seen_type = first_seen[f.name]
                conflicts.setdefault(f.name, [f"{seen_label} ({seen_type})"])
                conflicts[f.name].append(f"{label} ({f.type})")
            else:
                fields[f.name] = wider
    if conflicts:
        lines = "; ".join(f"column {name!r}: {' vs '.join(sides)}"
                          for name, sides in conflicts.items())
        raise SchemaConflictError(
            f"the {what} disagree on column types: {lines}",
            hint="numbers only widen to double and text never mixes with other types; fix the "
            "files or ingest them as separate updates",
        )
    return pa.schema([pa.field(name, t) for name, t in fields.items()])


def conform_batch(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """`batch` with `target`'s columns, order and types (missing columns are null). Every cast
    is checked except a timestamp's unit: a nanosecond column read into Spark's microseconds
    keeps its instant to the microsecond."""
    if batch.schema.equals(target):
        return batch
    import pyarrow.compute as pc  # here: importing it costs 0.07 s, most commands never cast

    columns = []
    for f in target:
        index = batch.schema.get_field_index(f.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, f.type))
        else:
            column = batch.column(index)
            columns.append(column if column.type.equals(f.type) else pc.cast(
                column, options=pc.CastOptions(f.type, allow_time_truncate=True)))
    return pa.RecordBatch.from_arrays(columns, schema=target)


def check_column_names(names: Iterable[str], label: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name == "":
            raise SchemaConflictError(f"{label}: a column has an empty name",
                                      hint="give every column a header")
        if name in seen:
            raise SchemaConflictError(f"{label}: column {name!r} appears twice",
                                      hint="give every column a distinct header")
        seen.add(name)


def schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def describe_schema(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def _is_byte(t: pa.DataType) -> bool:
    return pa.types.is_int8(t) or pa.types.is_uint8(t)


def _is_short(t: pa.DataType) -> bool:
    return pa.types.is_int16(t) or pa.types.is_uint16(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


# (Arrow type test, Glue/Hive name, Trino name); the first test that holds wins. Athena reads
# Parquet timestamps as `timestamp(3)`.
_SCALARS = (
    (pa.types.is_boolean, "boolean", "boolean"),
    (_is_byte, "tinyint", "tinyint"),
    (_is_short, "smallint", "smallint"),
    (pa.types.is_int32, "int", "integer"),
    (pa.types.is_integer, "bigint", "bigint"),
    (pa.types.is_float32, "float", "real"),
    (pa.types.is_floating, "double", "double"),
    (pa.types.is_date, "date", "date"),
    (pa.types.is_timestamp, "timestamp", "timestamp(3)"),
    (_is_binary, "binary", "varbinary"),
)


def glue_type(t: pa.DataType) -> str:
    """The Hive/Athena type for an Arrow type, as the Glue catalog wants it."""
    for test, glue, _trino in _SCALARS:
        if test(t):
            return glue
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array<{glue_type(t.value_type)}>"
    if pa.types.is_struct(t):
        inner = ",".join(f"{t.field(i).name}:{glue_type(t.field(i).type)}"
                         for i in range(t.num_fields))
        return f"struct<{inner}>"
    return "string"   # null columns and anything else


def trino_type(t: pa.DataType) -> str:
    """The Trino (Athena engine 3) type of a column whose Glue type is `glue_type(t)`: what a
    Presto view's column list declares."""
    for test, _glue, trino in _SCALARS:
        if test(t):
            return trino
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array({trino_type(t.value_type)})"
    if pa.types.is_struct(t):
        inner = ", ".join(f'"{t.field(i).name.replace(chr(34), chr(34) * 2)}" '
                          f"{trino_type(t.field(i).type)}" for i in range(t.num_fields))
        return f"row({inner})"
    return "varchar"


def spark_schema(schema: pa.Schema):
    """The Spark StructType for an Arrow schema, through `spark_holdable` (null columns become
    strings, unsigned integers signed or decimal; naive timestamps `TimestampNTZType`, which
    pyspark 4 does by default and pyspark 3.5 only when asked)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(spark_holdable(schema), prefer_timestamp_ntz=True)


def arrow_schema_of_spark(struct) -> pa.Schema:
    """Spark's own Arrow schema for a Spark StructType, timestamps labelled UTC: pyspark 4 is
    told the zone, pyspark 3.5 (Glue 5) takes the schema alone and labels UTC itself."""
    from pyspark.sql.pandas.types import to_arrow_schema

    try:
        return to_arrow_schema(struct, timezone="UTC", prefers_large_types=False)
    except TypeError:
        return to_arrow_schema(struct)


def sparkable_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of the batches Spark accepts for `spark_schema(schema)`.

    It is Spark's own translation back (`to_arrow_schema`), so the declared schema and the
    batches agree by construction — a Python data source refuses a batch whose Arrow schema is
    not exactly this one (`DATA_SOURCE_RETURN_SCHEMA_MISMATCH`). What that means for values:

    - timestamps are microseconds (Spark holds no other unit): seconds and milliseconds widen
      exactly; nanoseconds are truncated to the microsecond (`conform_batch` allows that cast
      and no other lossy one);
    - a timestamp with a time zone is an instant: Spark's `TimestampType`, carried as UTC (the
      same instant, whatever zone the file named);
    - a naive timestamp is a wall-clock reading: Spark's `TimestampNTZType`. As a
      `TimestampType` it would be taken for UTC and shown shifted into the session's time zone;
      as NTZ it reads back as the very digits the file held;
    - `large_string` is `string`, `date64` is `date32`, lists and structs are translated
      member by member (list items are named `element`)."""
    return arrow_schema_of_spark(spark_schema(schema))


def spark_holdable(schema: pa.Schema) -> pa.Schema:
    """`schema` with the types Spark has no counterpart for replaced by ones it has:
    null → string, unsigned 64-bit → decimal(20,0), other unsigned → int64, date64 → date32,
    decimal256 → decimal128 (Spark's decimals stop at 38 digits; wider ones → string)."""
    return pa.schema([pa.field(f.name, _holdable(f.type), nullable=f.nullable) for f in schema])


def _holdable(t: pa.DataType) -> pa.DataType:
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_uint64(t):
        return pa.decimal128(20, 0)
    if pa.types.is_unsigned_integer(t):
        return pa.int64()
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_decimal256(t):
        return pa.decimal128(t.precision, t.scale) if t.precision <= 38 else pa.string()
    if pa.types.is_dictionary(t):
        return _holdable(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(pa.field(t.value_field.name, _holdable(t.value_type),
                                 nullable=t.value_field.nullable))
    if pa.types.is_map(t):
        return pa.map_(_holdable(t.key_type), _holdable(t.item_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, _holdable(t.field(i).type),
                                   nullable=t.field(i).nullable) for i in range(t.num_fields)])
    return t
