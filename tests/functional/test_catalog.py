"""The Glue items registration writes (moto in-process): the physical table and its partitions,
the view and its Presto encoding, concurrent commits, and the migration of the old layout."""

from __future__ import annotations

from dataclasses import replace

import boto3
import pyarrow as pa
import pytest

from edl.utils.catalog import CatalogError, GlueCatalog, decode_presto_view
from edl.utils.metadata import DatasetRecord, DeltaConvention
from edl.utils.schemas import schema_to_text
from edl.utils.updates import UpdateRecord, format_update_id

VIEWS, TABLES = "edl_local_sensitive", "edl_local_sensitive_updates"
BUCKET = "sanofi-datalake-local-sensitive-us-east-1"
TRIALS = DatasetRecord(dataset="trials", tier="sensitive", owner="alice", home_region="us-east-1",
                       description="trials", delta=DeltaConvention(("id",), "op", "D"))


def update(n: int, kind: str, seq: int, schema: pa.Schema, status: str = "complete",
           registered: bool = False) -> UpdateRecord:
    return UpdateRecord(dataset="trials", update_id=format_update_id(n), kind=kind,
                        status=status, source="s3://drop/x", bucket=BUCKET, commit_seq=seq,
                        rows=n, arrow_schema=schema_to_text(schema),
                        catalog_registered=registered)


BASE = pa.schema([("id", pa.int64()), ("val", pa.string())])
DELTA = pa.schema([("id", pa.int64()), ("val", pa.string()), ("op", pa.string())])
GROWN = pa.schema([("id", pa.int64()), ("val", pa.string()), ("op", pa.string()),
                   ("at", pa.timestamp("us")), ("price", pa.decimal128(10, 2))])


class Updates:
    """The updates table as registration sees it: the dataset's updates, read consistently."""

    def __init__(self, *records: UpdateRecord) -> None:
        self.records = list(records)

    def list_updates(self, dataset: str, status: str | None = None) -> list[UpdateRecord]:
        return [r for r in sorted(self.records, key=lambda r: r.update_id)
                if status is None or r.status == status]


@pytest.fixture
def glue(aws):
    return boto3.client("glue", region_name="us-east-1")


def register(glue, updates: Updates, record: UpdateRecord) -> None:
    GlueCatalog(glue, "local", updates).register_update(TRIALS, record)  # type: ignore[arg-type]


def partitions(glue) -> list[dict]:
    return sorted(glue.get_partitions(DatabaseName=TABLES, TableName="trials")["Partitions"],
                  key=lambda p: p["Values"][1])


def view(glue) -> tuple[dict, dict]:
    table = glue.get_table(DatabaseName=VIEWS, Name="trials")["Table"]
    return table, decode_presto_view(table["ViewOriginalText"])


def test_a_complete_update_is_a_partition_and_the_dataset_a_view(glue):
    first = update(1, "snapshot", 1, BASE)
    register(glue, Updates(first), first)

    table = glue.get_table(DatabaseName=TABLES, Name="trials")["Table"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == [{"Name": "commit_seq", "Type": "bigint"},
                                      {"Name": "update_id", "Type": "string"},
                                      {"Name": "kind", "Type": "string"}]
    assert table["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/trials/data/"
    assert table["Parameters"]["classification"] == "parquet"
    [part] = partitions(glue)
    assert part["Values"] == ["1", "0000000001", "snapshot"]
    assert part["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/trials/data/0000000001/"
    assert [(c["Name"], c["Type"]) for c in part["StorageDescriptor"]["Columns"]] == \
        [("id", "bigint"), ("val", "string")]

    table, body = view(glue)
    assert table["TableType"] == "VIRTUAL_VIEW"
    assert table["ViewExpandedText"] == "/* Presto View */"
    assert table["Parameters"]["presto_view"] == "true"
    assert table["Parameters"]["comment"] == "Presto View"
    assert table["ViewOriginalText"].startswith("/* Presto View: ")
    assert (body["catalog"], body["schema"], body["owner"], body["runAsInvoker"]) == \
        ("awsdatacatalog", VIEWS, "alice", True)
    assert body["columns"] == [{"name": "id", "type": "bigint"},
                               {"name": "val", "type": "varchar"}]
    assert f'FROM "{TABLES}"."trials"' in body["originalSql"]
    assert [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]] == \
        [("id", "bigint"), ("val", "string")]


def test_registering_twice_changes_nothing(glue):
    first = update(1, "snapshot", 1, BASE)
    updates = Updates(first)
    register(glue, updates, first)
    before = view(glue)[0]
    register(glue, updates, replace(first, catalog_registered=True))
    after = view(glue)[0]
    assert after["VersionId"] == before["VersionId"]
    assert len(partitions(glue)) == 1


def test_the_view_follows_the_unified_schema_and_the_op_column_is_dropped(glue):
    history = [update(1, "snapshot", 1, BASE, registered=True),
               update(2, "delta", 2, DELTA, registered=True), update(3, "delta", 3, GROWN)]
    register(glue, Updates(*history), history[-1])
    _, body = view(glue)
    assert body["columns"] == [
        {"name": "id", "type": "bigint"}, {"name": "val", "type": "varchar"},
        {"name": "at", "type": "timestamp(3)"}, {"name": "price", "type": "decimal(10,2)"}]
    table = glue.get_table(DatabaseName=TABLES, Name="trials")["Table"]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == \
        ["id", "val", "op", "at", "price"]
    # a new table takes every complete update, whatever their flags say
    assert [p["Values"][1] for p in partitions(glue)] == ["0000000001", "0000000002",
                                                         "0000000003"]


def test_a_snapshot_with_the_op_column_keeps_it(glue):
    snap = update(1, "snapshot", 1, DELTA)
    register(glue, Updates(snap), snap)
    assert [c["name"] for c in view(glue)[1]["columns"]] == ["id", "val", "op"]


def test_pending_and_failed_updates_are_never_registered(glue):
    history = [update(1, "snapshot", 1, BASE), update(2, "delta", 0, DELTA, status="pending"),
               update(3, "delta", 0, GROWN, status="failed"), update(4, "delta", 2, DELTA)]
    register(glue, Updates(*history), history[-1])
    assert [p["Values"][1] for p in partitions(glue)] == ["0000000001", "0000000004"]
    with pytest.raises(Exception, match="only complete updates"):
        register(glue, Updates(*history), history[1])


def test_unregistered_complete_updates_are_registered_with_the_next_one(glue):
    """An update whose registration failed (left to the sweep) is in the table with the next."""
    history = [update(1, "snapshot", 1, BASE), update(2, "delta", 2, DELTA)]
    register(glue, Updates(*history), history[-1])
    assert [p["Values"][1] for p in partitions(glue)] == ["0000000001", "0000000002"]


class RacingGlue:
    """A Glue client that lets another commit register in full just before this client's
    first update of the view: the moment a check-then-write cannot see."""

    def __init__(self, glue, other) -> None:
        self._glue = glue
        self._other = other

    def update_table(self, **kwargs):
        if kwargs["DatabaseName"] == VIEWS and self._other:
            other, self._other = self._other, None
            other()
        return self._glue.update_table(**kwargs)

    def __getattr__(self, name):
        return getattr(self._glue, name)


def test_two_commits_registering_at_once_both_end_registered(glue):
    """A (update 2) lists the updates and decides to update the view; B (update 3) commits and
    registers in full; then A writes its now stale view. A re-reads, sees B, writes again."""
    first, second = update(1, "snapshot", 1, BASE), update(2, "delta", 2, DELTA)
    third = update(3, "delta", 3, GROWN)
    updates = Updates(first)
    register(glue, updates, first)
    updates.records.append(second)

    def b_commits_and_registers():
        updates.records.append(third)
        register(glue, updates, third)

    racing = RacingGlue(glue, b_commits_and_registers)
    GlueCatalog(racing, "local", updates).register_update(TRIALS, second)  # type: ignore[arg-type]
    assert [p["Values"][1] for p in partitions(glue)] == ["0000000001", "0000000002",
                                                         "0000000003"]
    table, body = view(glue)
    assert [c["name"] for c in body["columns"]] == ["id", "val", "at", "price"]
    assert (table["Parameters"]["edl_commit_seq"], table["Parameters"]["edl_updates"]) == \
        ("3", "3")


def test_a_stale_registration_does_not_replace_a_newer_view(glue):
    first = update(1, "snapshot", 1, BASE)
    second = update(2, "delta", 2, GROWN)
    register(glue, Updates(first, second), second)
    newer = view(glue)[0]
    catalog = GlueCatalog(glue, "local", Updates(first))  # type: ignore[arg-type]
    from edl.utils.catalog import define_dataset

    stale = define_dataset("local", TRIALS, [first])
    catalog._put_view(VIEWS, TRIALS, stale)
    assert view(glue)[0]["ViewOriginalText"] == newer["ViewOriginalText"]


def test_the_old_table_is_migrated_to_the_view_on_the_next_registration(glue):
    """Today's layout: one table `<dataset>` in the tier database, partitioned by `update`.
    Its updates are flagged registered; the next registration registers them all anew and the
    view takes the old table's name."""
    glue.create_database(DatabaseInput={"Name": VIEWS})
    glue.create_table(DatabaseName=VIEWS, TableInput={
        "Name": "trials", "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "update", "Type": "string"}],
        "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "bigint"}],
                              "Location": f"s3://{BUCKET}/trials/data/"}})
    glue.create_partition(DatabaseName=VIEWS, TableName="trials", PartitionInput={
        "Values": ["0000000001"],
        "StorageDescriptor": {"Location": f"s3://{BUCKET}/trials/data/0000000001/"}})
    history = [update(1, "snapshot", 1, BASE, registered=True),
               update(2, "delta", 2, DELTA, registered=True), update(3, "delta", 3, DELTA)]
    register(glue, Updates(*history), history[-1])

    assert view(glue)[0]["TableType"] == "VIRTUAL_VIEW"
    assert [p["Values"][1] for p in partitions(glue)] == ["0000000001", "0000000002",
                                                         "0000000003"]


def test_a_column_named_like_a_partition_key_is_refused(glue):
    odd = update(1, "snapshot", 1, pa.schema([("id", pa.int64()), ("kind", pa.string())]))
    with pytest.raises(CatalogError, match="kind"):
        register(glue, Updates(odd), odd)
