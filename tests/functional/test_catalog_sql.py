"""The catalog's SQL returns what `lake.read` returns, as of every update.

A dataset is ingested for real (snapshots and deltas: updates, deletes, a schema that grows,
dates, timestamps, decimals, nulls, non-ASCII text), registered by the ingest's commit step; then
its physical table is rebuilt in DuckDB from what Glue holds (every partition's Parquet files and
partition values), and the view's SQL (decoded from Glue) and the time-travel SQL run there,
transpiled from Trino with sqlglot, as the local Athena runs them.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot

from edl.utils import lake as lakeapi
from edl.utils.catalog import as_of_sql, decode_presto_view
from tests.functional.ingest_helpers import DATASET, ingest

VIEWS, TABLES = "edl_local_sensitive", "edl_local_sensitive_updates"
PRICE = pa.decimal128(10, 2)
MS = pa.timestamp("ms")


def at(day: int, ms: int = 0) -> dt.datetime:
    return dt.datetime(2024, 3, day, 12, 30, 15) + dt.timedelta(milliseconds=ms)


def table(columns: dict[str, tuple[pa.DataType, list]]) -> pa.Table:
    return pa.table({name: pa.array(values, type=t) for name, (t, values) in columns.items()})


HISTORY = [
    ("snapshot", table({
        "id": (pa.int64(), [1, 2, 3]),
        "name": (pa.string(), ["Zoë", "東京", None]),
        "born": (pa.date32(), [dt.date(1990, 1, 2), None, dt.date(2001, 12, 31)]),
        "seen": (MS, [at(1, 123), at(2), None]),
        "price": (PRICE, [Decimal("12.30"), None, Decimal("-0.05")])})),
    ("delta", table({
        "id": (pa.int64(), [2, 3, 4]),
        "name": (pa.string(), ["Tōkyō", None, "Ærø"]),
        "born": (pa.date32(), [None, None, dt.date(1970, 1, 1)]),
        "seen": (MS, [at(3, 5), None, at(4)]),
        "price": (PRICE, [Decimal("1.00"), None, Decimal("99999999.99")]),
        "op": (pa.string(), ["U", "D", "I"])})),
    ("delta", table({            # the schema grows by a column
        "id": (pa.int64(), [1, 5]),
        "name": (pa.string(), ["Zoé", None]),
        "price": (PRICE, [Decimal("12.31"), Decimal("0.00")]),
        "score": (pa.float64(), [0.5, None]),
        "op": (pa.string(), ["U", "I"])})),
    ("snapshot", table({         # a new snapshot without some earlier columns
        "id": (pa.int64(), [10, 11]),
        "name": (pa.string(), ["naïve", "çà"]),
        "score": (pa.float64(), [1.25, -2.0])})),
    ("delta", table({
        "id": (pa.int64(), [10, 11, 12]),
        "name": (pa.string(), [None, "ça va", "🙂"]),
        "score": (pa.float64(), [None, 3.0, None]),
        "op": (pa.string(), ["D", "U", "I"])})),
]


def parquet(data: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(data, buf)
    return buf.getvalue()


def physical_table(lake) -> pa.Table:
    """The updates table as an engine sees it: every registered partition's Parquet files (not
    the `_`-files beside them) with its partition values, columns matched by name."""
    parts = []
    for partition in lake.glue.get_partitions(DatabaseName=TABLES,
                                              TableName=DATASET)["Partitions"]:
        commit_seq, update_id, kind = partition["Values"]
        bucket, prefix = partition["StorageDescriptor"]["Location"][5:].split("/", 1)
        for key in lake.keys(prefix):
            if key.rsplit("/", 1)[1].startswith("_"):
                continue
            body = lake.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            data = pq.read_table(io.BytesIO(body))
            n = data.num_rows
            parts.append(data.append_column("commit_seq", pa.array([int(commit_seq)] * n))
                         .append_column("update_id", pa.array([update_id] * n))
                         .append_column("kind", pa.array([kind] * n)))
    return pa.concat_tables(parts, promote_options="permissive")


def run(con, trino_sql: str) -> list[dict]:
    [sql] = sqlglot.transpile(trino_sql, read="trino", write="duckdb")
    result = con.execute(sql)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["id"])


def test_the_view_and_time_travel_match_lake_read(lake, spark):
    for n, (kind, data) in enumerate(HISTORY, start=1):
        source = lake.put(f"u{n}.parquet", parquet(data))
        assert ingest(lake, spark, source, "--kind", kind) == 0
    record = lake.context.metadata.get_dataset(DATASET)
    updates = lakeapi.list_updates(DATASET)
    assert all(u.catalog_registered for u in updates)

    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{TABLES}"')
    con.register("physical", physical_table(lake))
    con.execute(f'CREATE TABLE "{TABLES}"."{DATASET}" AS SELECT * FROM physical')

    view = lake.glue.get_table(DatabaseName=VIEWS, Name=DATASET)["Table"]
    body = decode_presto_view(view["ViewOriginalText"])
    latest = lakeapi.read(spark, DATASET)
    assert [c["name"] for c in body["columns"]] == ["id", "name", "born", "seen", "price",
                                                    "score"]
    assert set(latest.columns) <= {c["name"] for c in body["columns"]}
    got = by_id(run(con, body["originalSql"]))
    assert [{c: r[c] for c in latest.columns} for r in got] == \
        by_id([r.asDict() for r in latest.collect()])
    assert [r["id"] for r in got] == [11, 12]

    checked = []
    for update in updates:
        expected = lakeapi.read(spark, DATASET, as_of=update.update_id)
        rows = by_id(run(con, as_of_sql("local", record, updates, update.update_id)))
        columns = expected.columns
        assert [{c: r[c] for c in columns} for r in rows] == \
            by_id([r.asDict() for r in expected.collect()]), f"as of {update.update_id}"
        # columns of updates before the snapshot in reach, which lake.read leaves out, are null
        assert all(r[c] is None for r in rows for c in r if c not in columns)
        checked.append(len(rows))
    assert checked == [3, 3, 4, 2, 2]
