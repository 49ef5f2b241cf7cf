"""Unifying the schemas of an update's files, and translating them for Glue and Spark."""

from __future__ import annotations

import pyarrow as pa
import pytest

from edl.utils.schemas import (
    SchemaConflictError,
    conform_batch,
    glue_type,
    schema_from_text,
    schema_to_text,
    sparkable_schema,
    unify_schemas,
    widen_type,
)


@pytest.mark.parametrize("a, b, wider", [
    (pa.int32(), pa.int64(), pa.int64()),
    (pa.int64(), pa.float64(), pa.float64()),
    (pa.null(), pa.string(), pa.string()),
    (pa.date32(), pa.timestamp("s"), pa.timestamp("s")),
    (pa.timestamp("ms"), pa.timestamp("us"), pa.timestamp("us")),
    (pa.string(), pa.large_string(), pa.string()),
    (pa.int64(), pa.string(), None),
    (pa.bool_(), pa.int64(), None),
    (pa.timestamp("us", tz="UTC"), pa.timestamp("us"), None),
])
def test_widen_type(a, b, wider):
    result = widen_type(a, b)
    assert (result is None and wider is None) or result.equals(wider)


def test_unify_matches_columns_by_name_and_keeps_first_order():
    schema = unify_schemas([
        ("a.csv", pa.schema([("id", pa.int64()), ("score", pa.int64())])),
        ("b.json", pa.schema([("score", pa.float64()), ("id", pa.int64()), ("new", pa.string())])),
    ])
    assert schema.names == ["id", "score", "new"]
    assert schema.field("score").type == pa.float64()


def test_conflict_names_files_and_columns():
    with pytest.raises(SchemaConflictError) as err:
        unify_schemas([("sites/a.csv", pa.schema([("id", pa.int64()), ("x", pa.bool_())])),
                       ("sites/b.csv", pa.schema([("id", pa.string()), ("x", pa.bool_())]))])
    message = str(err.value)
    assert "column 'id'" in message
    assert "sites/a.csv (int64)" in message and "sites/b.csv (string)" in message
    assert "'x'" not in message


def test_conform_batch_adds_missing_columns_and_casts():
    target = pa.schema([("id", pa.int64()), ("v", pa.float64()), ("extra", pa.string())])
    batch = pa.record_batch({"v": pa.array([1, 2]), "id": pa.array([3, 4])})
    out = conform_batch(batch, target)
    assert out.schema.equals(target)
    assert out.column(1).to_pylist() == [1.0, 2.0]
    assert out.column(2).to_pylist() == [None, None]


def test_schema_text_round_trip_and_glue_types():
    schema = pa.schema([("a", pa.int64()), ("t", pa.timestamp("us")), ("l", pa.list_(pa.int32())),
                        ("s", pa.struct([("x", pa.float64())]))])
    assert schema_from_text(schema_to_text(schema)).equals(schema)
    assert [glue_type(f.type) for f in schema] == ["bigint", "timestamp", "array<int>",
                                                   "struct<x:double>"]


@pytest.mark.parametrize("arrow, spark_arrow", [
    (pa.timestamp("s"), pa.timestamp("us")),                      # naive: wall clock (NTZ)
    (pa.timestamp("ns", tz="Europe/Paris"), pa.timestamp("us", tz="UTC")),   # an instant
    (pa.date64(), pa.date32()),
    (pa.null(), pa.string()),
    (pa.large_string(), pa.string()),
    (pa.uint64(), pa.decimal128(20, 0)),
    (pa.decimal128(38, 10), pa.decimal128(38, 10)),
    (pa.struct([("a", pa.list_(pa.uint8()))]),
     pa.struct([("a", pa.list_(pa.field("element", pa.int64())))])),
])
def test_the_arrow_schema_given_to_spark_is_the_one_spark_declares(arrow, spark_arrow):
    assert sparkable_schema(pa.schema([("c", arrow)])).field("c").type == spark_arrow


def test_nanoseconds_are_read_to_the_microsecond_and_other_casts_stay_checked():
    ns = pa.record_batch({"t": pa.array([1_000_001_999], pa.timestamp("ns"))})
    out = conform_batch(ns, pa.schema([("t", pa.timestamp("us"))]))
    assert out.column(0).to_pylist()[0].microsecond == 1
    with pytest.raises(pa.ArrowInvalid):
        conform_batch(pa.record_batch({"n": pa.array([300])}), pa.schema([("n", pa.int8())]))
