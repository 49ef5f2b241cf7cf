"""What goes in comes out: every Arrow type the ingest produces reads back through `lake.read`
with the values pyarrow reads from the source file itself."""

from __future__ import annotations

import datetime
import decimal
import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from edl.utils import lake as lakeapi
from tests.functional.ingest_helpers import DATASET, ingest

CSV = (b"id,day,naive,aware,fraction,flag,amount\n"
       b"1,2024-01-02,2024-01-02 03:04:05,2024-01-02T03:04:05Z,2024-01-02T03:04:05.123456,"
       b"true,1.5\n"
       b"2,1999-12-31,1970-01-01 00:00:00,2038-01-19T03:14:08+02:00,1900-01-01T00:00:00.000001,"
       b"false,\n")

JSON_LINES = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [
    {"id": 1, "site": {"city": "Zürich", "beds": 12, "wards": [1, 2, 3]},
     "tags": ["été", "東京"], "seen": "2024-01-02 03:04:05", "note": "naïve – ok"},
    {"id": 2, "site": {"city": "Kraków", "beds": None, "wards": []},
     "tags": [], "seen": None, "note": None},
]).encode()

_WHEN = [datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), datetime.datetime(1970, 1, 1)]
PARQUET = pa.table({
    "id": pa.array([1, 2], pa.int32()),
    "ts_s": pa.array([w.replace(microsecond=0) for w in _WHEN], pa.timestamp("s")),
    "ts_ms": pa.array([w.replace(microsecond=123000) for w in _WHEN], pa.timestamp("ms")),
    "ts_us": pa.array(_WHEN, pa.timestamp("us")),
    "ts_ns": pa.array(_WHEN, pa.timestamp("ns")),
    "ts_paris": pa.array(_WHEN, pa.timestamp("ms", tz="Europe/Paris")),
    "ts_utc_ns": pa.array(_WHEN, pa.timestamp("ns", tz="UTC")),
    "day": pa.array([datetime.date(2024, 2, 29), None], pa.date32()),
    "price": pa.array([decimal.Decimal("12345.67"), decimal.Decimal("-0.01")],
                      pa.decimal128(7, 2)),
    "big": pa.array([decimal.Decimal("1" * 28 + "." + "9" * 10), None], pa.decimal128(38, 10)),
    "flag": pa.array([True, None], pa.bool_()),
    "nothing": pa.nulls(2),
    "small": pa.array([-128, 127], pa.int8()),
    "count": pa.array([0, 4_294_967_295], pa.uint32()),
    "ratio": pa.array([0.5, None], pa.float32()),
    "long_text": pa.array(["x" * 100_000, "ünïcödé" * 10], pa.large_string()),
    "blob": pa.array([b"\x00\x01", None], pa.binary()),
    "nested": pa.array([{"a": [1, 2], "b": {"c": "d"}}, None],
                       pa.struct([("a", pa.list_(pa.int64())),
                                  ("b", pa.struct([("c", pa.string())]))])),
})


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


CASES = {
    "csv with ISO dates and timestamps": ("types.csv", CSV,
                                          lambda b: pacsv.read_csv(io.BytesIO(b))),
    "JSON lines with nested objects, lists and non-ASCII text": (
        "types.jsonl", JSON_LINES, lambda b: pajson.read_json(io.BytesIO(b))),
    "parquet with every unit, time zones, decimals, nulls and a 100k-char string": (
        "types.parquet", _parquet_bytes(PARQUET), lambda b: pq.read_table(io.BytesIO(b))),
}


def _comparable(value):
    """Values as Python compares them: aware datetimes as UTC instants, structs as dicts."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if hasattr(value, "to_pydatetime"):      # a pandas Timestamp from a nanosecond column
        return _comparable(value.to_pydatetime())
    return value


def _rows(table: pa.Table) -> list[dict]:
    return sorted(({k: _comparable(v) for k, v in row.items()} for row in table.to_pylist()),
                  key=lambda row: row["id"])


@pytest.mark.parametrize("case", list(CASES))
def test_every_type_reads_back_with_the_values_of_the_source(lake, spark, case):
    name, body, read_source = CASES[case]
    assert ingest(lake, spark, lake.put(name, body)) == 0

    frame = lakeapi.read(spark, DATASET)
    expected = read_source(body)
    assert frame.columns == expected.column_names
    assert _rows(frame.toArrow()) == _rows(expected)


def test_a_file_without_a_known_extension_ingests_with_its_format_given(lake, spark, capsys):
    source = lake.put("export.dat", b"id,name\n1,a\n2,b\n")
    assert ingest(lake, spark, source, "--format", "csv") == 0
    assert sorted(tuple(r) for r in lakeapi.read(spark, DATASET).collect()) == [(1, "a"),
                                                                                (2, "b")]
    [update] = lakeapi.list_updates(DATASET)
    detail = lakeapi.get_update(DATASET, update.update_id, files=True)  # from the manifest
    assert [f.format for f in detail.files] == ["csv"]
