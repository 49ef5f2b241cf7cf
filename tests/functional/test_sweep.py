"""The sweep finishes what dead jobs left: overdue pending updates, their files, stray staging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edl.utils import lake as lakeapi
from edl.utils.sweep import PENDING_DEADLINE, Sweeper
from tests.functional.ingest_helpers import DATASET, ingest

STAGING = f"_edl_staging/{DATASET}/"


def later(delta: timedelta):
    return lambda: datetime.now(UTC) + delta


def stage(lake, update_id: str) -> None:
    """What a job that died mid-ingest leaves: staged files and a half-promoted part."""
    for key in (f"{STAGING}{update_id}/raw/a.csv", f"{STAGING}{update_id}/data/part-00000.parquet",
                f"{DATASET}/data/{update_id}/part-00000.parquet"):
        lake.s3.put_object(Bucket=lake.data_bucket, Key=key, Body=b"x")


def test_an_overdue_pending_update_is_failed_with_the_reason_and_its_files_removed(lake):
    updates = lake.context.updates
    dead = updates.allocate_update(DATASET, "snapshot", "s3://x/a.csv", lake.data_bucket)
    updates.claim_update(DATASET, dead.update_id, "job-dead")
    stage(lake, dead.update_id)

    assert Sweeper(lake.context).sweep().failed == ()        # within its deadline: untouched
    assert updates.get_update(DATASET, dead.update_id).status == "pending"

    report = Sweeper(lake.context, now=later(PENDING_DEADLINE + timedelta(minutes=1))).sweep()
    assert report.failed == (f"{DATASET}/{dead.update_id}",) and report.errors == ()
    swept = updates.get_update(DATASET, dead.update_id)
    assert swept.status == "failed" and "still pending 48.25 h after it started" in swept.reason
    assert swept.files_removed
    assert lake.keys(STAGING) == [] and lake.keys(f"{DATASET}/") == []


def test_the_files_of_a_failed_update_are_removed_once(lake):
    updates = lake.context.updates
    update = updates.allocate_update(DATASET, "snapshot", "s3://x/a.csv", lake.data_bucket)
    updates.fail_update(DATASET, update.update_id, "its job died before cleaning up")
    stage(lake, update.update_id)

    assert Sweeper(lake.context).sweep().cleaned == (f"{DATASET}/{update.update_id}",)
    assert lake.keys(STAGING) == [] and lake.keys(f"{DATASET}/") == []
    assert updates.get_update(DATASET, update.update_id).files_removed
    assert Sweeper(lake.context).sweep().cleaned == ()


def test_staging_left_by_a_complete_update_is_deleted_and_its_data_kept(lake, spark):
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    lake.s3.put_object(Bucket=lake.data_bucket, Key=f"{STAGING}0000000001/raw/a.csv", Body=b"x")
    kept = lake.keys(f"{DATASET}/")

    assert Sweeper(lake.context).sweep().cleaned == (f"{DATASET}/0000000001",)
    assert lake.keys(STAGING) == [] and lake.keys(f"{DATASET}/") == kept
    assert {r["id"]: r["val"] for r in lakeapi.read(spark, DATASET).collect()} == {1: "a"}


def test_the_sweeper_lambda_sweeps_the_instance_named_by_its_environment(lake):
    from edl.core_resources.rest_api import sweep

    updates = lake.context.updates
    update = updates.allocate_update(DATASET, "snapshot", "s3://x/a.csv", lake.data_bucket)
    updates.fail_update(DATASET, update.update_id, "its job died before cleaning up")
    stage(lake, update.update_id)

    report = sweep.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)

    assert report == {"failed": [], "cleaned": [f"{DATASET}/{update.update_id}"],
                      "registered": [], "expired": [], "errors": []}
    assert lake.keys(STAGING) == [] and lake.keys(f"{DATASET}/") == []


def test_an_update_registered_in_the_old_catalog_layout_is_moved_to_the_view(lake, spark):
    """A lake kept from before the SQL catalog: its updates are flagged registered (no layout)
    and the tier database holds the old table mixing every update. The sweep registers them
    again: the dataset's name becomes the view over its table of updates."""
    from edl import naming

    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    record = lake.context.metadata.get_dataset(DATASET)
    views = naming.glue_database("local", record.tier)
    lake.glue.delete_table(DatabaseName=views, Name=DATASET)
    lake.glue.create_table(DatabaseName=views, TableInput={
        "Name": DATASET, "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "update", "Type": "string"}],
        "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "bigint"}],
                              "Location": f"s3://{lake.data_bucket}/{DATASET}/data/"}})
    lake.context.metadata.table("updates").update_item(
        Key={"dataset": DATASET, "update_id": "0000000001"}, UpdateExpression="REMOVE #l",
        ExpressionAttributeNames={"#l": "catalog_layout"})
    assert not lakeapi.get_update(DATASET, "1", context=lake.context).catalog_registered

    assert Sweeper(lake.context).sweep().registered == (f"{DATASET}/0000000001",)
    table = lake.glue.get_table(DatabaseName=views, Name=DATASET)["Table"]
    assert table["TableType"] == "VIRTUAL_VIEW"
    assert lakeapi.get_update(DATASET, "1", context=lake.context).catalog_registered
    assert Sweeper(lake.context).sweep().registered == ()


def test_a_backlog_of_registrations_is_worked_off_a_bounded_number_per_sweep(lake, spark):
    """Three complete updates not in the catalog (a lake kept from an older layout) and a
    sweep that registers two at most: two now, the third at the next sweep, then none."""
    for n in range(3):
        assert ingest(lake, spark, lake.put(f"{n}.csv", f"id,val\n{n},v\n".encode())) == 0
    for n in (1, 2, 3):
        lake.context.metadata.table("updates").update_item(
            Key={"dataset": DATASET, "update_id": f"{n:010d}"}, UpdateExpression="REMOVE #l",
            ExpressionAttributeNames={"#l": "catalog_layout"})
    sweeps = [Sweeper(lake.context, register_limit=2).sweep().registered for _ in range(3)]
    assert [len(s) for s in sweeps] == [2, 1, 0]
    assert sorted(sweeps[0] + sweeps[1]) == [f"{DATASET}/{n:010d}" for n in (1, 2, 3)]
