"""Planning and running a query (`edl.utils.query`): what is sent to Athena, what is refused
before anything is sent, and how the result CSV is read back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from edl.config import get_config
from edl.errors import UsageError
from edl.utils.metadata import DatasetRecord, DeltaConvention, UnknownDatasetError
from edl.utils.query import (
    AthenaQueries,
    QueryError,
    QueryTimeout,
    plan,
    read_result_csv,
    reading_dataset,
)
from edl.utils.schemas import schema_to_text
from edl.utils.updates import UpdateRecord

DATASETS = {
    "trials": DatasetRecord("trials", "sensitive", "alice", "us-east-1",
                            delta=DeltaConvention(key_columns=("trial_id",), op_column="op",
                                                  delete_marker="D")),
    "sites": DatasetRecord("sites", "internal", "alice", "us-east-1"),
    "visits": DatasetRecord("visits", "internal", "carol", "us-east-1"),
    "labs": DatasetRecord("labs", "restricted", "carol", "us-east-1"),
}


class FakeMetadata:
    def get_dataset(self, name: str) -> DatasetRecord:
        if name not in DATASETS:
            raise UnknownDatasetError(f"dataset {name!r} does not exist in instance 'local'")
        return DATASETS[name]


class FakeUpdates:
    def list_updates(self, dataset: str, status: str | None = None) -> list[UpdateRecord]:
        schema = schema_to_text(pa.schema([("trial_id", pa.string()), ("n", pa.int64()),
                                           ("op", pa.string())]))
        return [UpdateRecord.from_item({
            "dataset": dataset, "update_id": f"{n:010d}", "kind": kind, "status": "complete",
            "source": "s3://x/y", "bucket": "b", "commit_seq": n, "arrow_schema": schema,
            "rows": 1, "part_count": 1}) for n, kind in ((1, "snapshot"), (2, "delta"))]


@dataclass
class FakeContext:
    instance: str = "local"
    config: object = field(default_factory=get_config)
    metadata: FakeMetadata = field(default_factory=FakeMetadata)
    updates: FakeUpdates = field(default_factory=FakeUpdates)


def test_a_dataset_name_is_qualified_with_its_tiers_database_and_workgroup():
    planned = plan("SELECT site, count(*) AS n FROM trials GROUP BY site", FakeContext())
    assert '"edl_local_sensitive"."trials"' in planned.sql or \
        "edl_local_sensitive.trials" in planned.sql
    assert planned.workgroup == "edl-sensitive"
    assert planned.database == "edl_local_sensitive"
    assert [d.dataset for d in planned.datasets] == ["trials"]


def test_ctes_are_not_datasets_and_the_highest_tier_picks_the_workgroup():
    planned = plan("WITH s AS (SELECT * FROM sites) "
                   "SELECT * FROM s JOIN labs ON s.site = labs.site", FakeContext())
    assert {d.dataset for d in planned.datasets} == {"sites", "labs"}
    assert planned.workgroup == "edl-restricted"
    assert reading_dataset(planned, FakeContext()).dataset == "labs"


def test_internal_datasets_read_through_one_session_two_higher_tiers_do_not():
    internal = plan("SELECT * FROM sites UNION ALL SELECT * FROM visits", FakeContext())
    assert reading_dataset(internal, FakeContext()).tier == "internal"
    two = plan("SELECT * FROM trials, labs", FakeContext())
    with pytest.raises(QueryError, match="labs, trials"):
        reading_dataset(two, FakeContext())


@pytest.mark.parametrize("sql, word", [
    ("CREATE TABLE x AS SELECT 1", "CREATE"),
    ("INSERT INTO trials SELECT * FROM trials", "INSERT"),
    ("DROP TABLE trials", "DROP"),
    ("DELETE FROM trials", "DELETE"),
])
def test_ddl_and_writes_are_refused_before_anything_is_sent(sql, word):
    with pytest.raises(QueryError, match=f"{word} is refused: the lake's SQL is read-only"):
        plan(sql, FakeContext())


def test_a_syntax_error_names_its_line_and_column():
    with pytest.raises(QueryError) as caught:
        plan("SELECT *\nFROM trials\nWHERE (", FakeContext())
    assert "syntax error at line 3" in caught.value.message
    assert "column" in caught.value.message


def test_an_unknown_dataset_is_named():
    with pytest.raises(UnknownDatasetError, match="'nope' does not exist"):
        plan("SELECT * FROM nope", FakeContext())


def test_a_table_outside_the_lakes_databases_is_refused():
    with pytest.raises(QueryError, match=r"other_db\.trials is not in the lake"):
        plan("SELECT * FROM other_db.trials", FakeContext())


def test_as_of_puts_the_dataset_as_of_that_update_first_among_the_ctes():
    planned = plan("WITH mine AS (SELECT * FROM trials) SELECT count(*) FROM mine",
                   FakeContext(), as_of={"trials": "0000000001"})
    sql = planned.sql
    assert sql.index('"trials" AS') < sql.index("mine AS")
    assert '"commit_seq" <= 1' in sql
    assert "edl_local_sensitive_updates" in sql


def test_as_of_of_a_dataset_the_query_does_not_read_is_a_usage_error():
    with pytest.raises(UsageError, match="sites"):
        plan("SELECT * FROM trials", FakeContext(), as_of={"sites": "0000000001"})


def test_the_result_csv_is_typed_by_athenas_columns_and_keeps_nulls_apart_from_empty_text():
    body = ('"name","n","price","day","at","ok","tags"\n'
            '"Zoë","1","12.50","2024-02-29","2024-02-29 13:14:15.123","true","[a, b]"\n'
            '"",,,,,,\n').encode()
    columns = (("name", "varchar"), ("n", "bigint"), ("price", "decimal(10,2)"),
               ("day", "date"), ("at", "timestamp"), ("ok", "boolean"),
               ("tags", "array(varchar)"))
    rows = read_result_csv(body, columns).to_pylist()
    assert rows[0] == {"name": "Zoë", "n": 1, "price": Decimal("12.50"), "day": date(2024, 2, 29),
                       "at": datetime(2024, 2, 29, 13, 14, 15, 123000), "ok": True,
                       "tags": "[a, b]"}
    assert rows[1] == {"name": "", "n": None, "price": None, "day": None, "at": None,
                       "ok": None, "tags": None}


class FakeAthena:
    """Athena's API for one query; its result is 42, 12.50 - in one page, or (`paged`) longer
    than a page, so the client reads the result object."""

    def __init__(self, states: list[str], reason: str = "", *, paged: bool = False) -> None:
        self.states = states
        self.reason = reason
        self.paged = paged
        self.stopped: list[str] = []

    def start_query_execution(self, **kwargs):
        self.started = kwargs
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, QueryExecutionId):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"QueryExecution": {
            "Status": {"State": state, "StateChangeReason": self.reason},
            "ResultConfiguration": {"OutputLocation": "s3://results/sensitive/q-1.csv"},
            "Statistics": {"TotalExecutionTimeInMillis": 1500, "DataScannedInBytes": 2048}}}

    def stop_query_execution(self, QueryExecutionId):
        self.stopped.append(QueryExecutionId)

    def get_query_results(self, QueryExecutionId, MaxResults):
        assert MaxResults == 1000
        rows = [{"Data": [{"VarCharValue": "n"}, {"VarCharValue": "dose"}]},
                {"Data": [{"VarCharValue": "42"}, {"VarCharValue": "12.50"}]},
                {"Data": [{}, {"VarCharValue": 'say "a"'}]}]
        page = {"ResultSet": {"Rows": rows, "ResultSetMetadata": {"ColumnInfo": [
            {"Name": "n", "Type": "bigint"},
            {"Name": "dose", "Type": "varchar"}]}}}
        if self.paged:
            page["NextToken"] = "more"
        return page


class FakeS3:
    def __init__(self) -> None:
        self.read: list[str] = []

    def get_object(self, Bucket, Key):
        import io
        self.read.append(f"s3://{Bucket}/{Key}")
        return {"Body": io.BytesIO(b'"n","dose"\n"42","12.50"\n,"say ""a"""\n"7",""\n')}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _planned():
    return plan("SELECT count(*) AS n FROM trials", FakeContext())


def test_a_query_is_followed_to_its_end_and_a_short_result_read_from_its_page():
    athena, clock, seen, s3 = FakeAthena(["QUEUED", "RUNNING", "SUCCEEDED"]), Clock(), [], []
    result = AthenaQueries(athena, lambda: s3.append("made"), sleep=clock.sleep,
                           clock=clock).run(_planned(),
                                            progress=lambda state, s, stats: seen.append(state))
    assert result.table.to_pylist() == [{"n": 42, "dose": "12.50"},
                                        {"n": None, "dose": 'say "a"'}]
    assert result.columns == (("n", "bigint"), ("dose", "varchar"))
    assert (result.seconds, result.bytes_scanned) == (1.5, 2048)
    assert seen == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert athena.started["WorkGroup"] == "edl-sensitive"
    assert s3 == []                        # no S3 client is even made


def test_a_result_longer_than_a_page_is_read_from_the_result_object():
    s3 = FakeS3()
    result = AthenaQueries(FakeAthena(["SUCCEEDED"], paged=True), lambda: s3,
                           sleep=Clock().sleep, clock=Clock()).run(_planned())
    assert s3.read == ["s3://results/sensitive/q-1.csv"]
    assert result.table.to_pylist() == [{"n": 42, "dose": "12.50"},
                                        {"n": None, "dose": 'say "a"'}, {"n": 7, "dose": ""}]


def test_polling_is_every_10_ms_at_first_and_within_50_ms_for_the_first_second():
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        clock.sleep(seconds)

    AthenaQueries(FakeAthena(["RUNNING"] * 60 + ["SUCCEEDED"]), FakeS3, sleep=sleep,
                  clock=clock).run(_planned())
    sums = _running_sums(slept)
    assert {s for s, at in zip(slept, sums, strict=True) if at < 0.25} == {0.01}
    assert max(s for s, at in zip(slept, sums, strict=True) if at < 1) == 0.05
    assert slept[-1] > 0.05                # backing off after the first second


def _running_sums(values: list[float]) -> list[float]:
    total, sums = 0.0, []
    for value in values:
        sums.append(total)
        total += value
    return sums


def test_a_failed_query_is_an_error_with_athenas_reason():
    athena, clock = FakeAthena(["RUNNING", "FAILED"], "TABLE_NOT_FOUND: x"), Clock()
    with pytest.raises(QueryError, match="q-1 failed: TABLE_NOT_FOUND: x"):
        AthenaQueries(athena, FakeS3, sleep=clock.sleep, clock=clock).run(_planned())


def test_a_query_past_its_timeout_is_stopped():
    athena, clock = FakeAthena(["RUNNING"]), Clock()
    with pytest.raises(QueryTimeout, match="timeout of 3 s"):
        AthenaQueries(athena, FakeS3, sleep=clock.sleep, clock=clock).run(_planned(),
                                                                         timeout=3)
    assert athena.stopped == ["q-1"]
