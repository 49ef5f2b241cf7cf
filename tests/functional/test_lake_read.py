"""Reading a dataset as of any update: snapshots, deltas applied in order, deletes, time travel."""

from __future__ import annotations

import pytest

from edl.utils import lake as lakeapi
from edl.utils.updates import UnknownUpdateError
from tests.functional.ingest_helpers import DATASET, EXPECTED, HISTORY, ingest


def as_dict(df) -> dict:
    return {r["id"]: r["val"] for r in df.collect()}


def test_time_travel_across_three_snapshots_and_four_deltas(lake, spark):
    for n, (kind, body) in enumerate(HISTORY, start=1):
        assert ingest(lake, spark, lake.put(f"u{n}.csv", body), "--kind", kind) == 0

    updates = lakeapi.list_updates(DATASET, instance="local")
    assert [(u.update_id, u.kind, u.status) for u in updates] == [
        (f"{n:010d}", kind, "complete") for n, (kind, _) in enumerate(HISTORY, start=1)]

    latest = lakeapi.read(spark, DATASET)
    assert latest.columns == ["id", "val"]           # the op column is not part of the data
    assert as_dict(latest) == EXPECTED[7]
    for n, expected in EXPECTED.items():
        assert as_dict(lakeapi.read(spark, DATASET, as_of=str(n))) == expected, f"as of {n}"


def test_deltas_are_applied_in_one_window(lake, spark):
    """However many deltas there are, the read is one union and one window (one shuffle)."""
    assert ingest(lake, spark, lake.put("s.csv", HISTORY[0][1])) == 0
    for n in range(4):
        body = f"id,val,op\n{n},v{n},U\n".encode()
        assert ingest(lake, spark, lake.put(f"d{n}.csv", body), "--kind", "delta") == 0
    df = lakeapi.read(spark, DATASET)
    plan = df._jdf.queryExecution().executedPlan().toString()
    assert plan.count("Window [") == 1
    assert as_dict(df) == {0: "v0", 1: "v1", 2: "v2", 3: "v3"}


def test_reading_a_failed_update_is_refused(lake, spark):
    assert ingest(lake, spark, lake.put("ok.csv", b"id,val\n1,a\n")) == 0
    assert ingest(lake, spark, lake.put("bad.csv", b"id,val\n1,a,extra\n")) != 0
    with pytest.raises(UnknownUpdateError, match="is failed"):
        lakeapi.read(spark, DATASET, as_of="2")
    assert as_dict(lakeapi.read(spark, DATASET)) == {1: "a"}
