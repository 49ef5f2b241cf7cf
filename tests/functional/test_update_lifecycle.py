"""Complete updates are immutable and reads repeatable (issue #7 §4, §5): staging, commit order,
part checksums, wide ingests, and Glue registration that fails after the commit."""

from __future__ import annotations

import io
import json

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edl.core_resources.pipelines.ingest import job as ingest_job
from edl.utils import lake as lakeapi
from edl.utils.catalog import GlueCatalog
from edl.utils.sweep import Sweeper
from tests.functional.ingest_helpers import DATASET, ingest

STAGING = f"_edl_staging/{DATASET}/"


def as_dict(df) -> dict:
    return {r["id"]: r["val"] for r in df.collect()}


def test_a_pending_update_has_files_in_staging_only(lake, spark, monkeypatch):
    """Until promotion, nothing of the update is under the dataset's prefixes (which the
    dataset roles read); after the commit, nothing is left in staging."""
    seen = {}
    promote = ingest_job.promote

    def spy(client, update, raw, parts):
        seen["dataset"] = lake.keys(f"{DATASET}/")
        seen["staging"] = lake.keys(STAGING)
        return promote(client, update, raw, parts)

    monkeypatch.setattr(ingest_job, "promote", spy)
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    assert seen["dataset"] == []
    assert seen["staging"] == [f"{STAGING}0000000001/data/part-00000.parquet",
                               f"{STAGING}0000000001/raw/a.csv"]
    assert lake.keys(STAGING) == []
    assert lake.keys(f"{DATASET}/") == [f"{DATASET}/data/0000000001/_edl_manifest.json",
                                        f"{DATASET}/data/0000000001/part-00000.parquet",
                                        f"{DATASET}/raw/0000000001/a.csv"]


def test_a_failure_at_the_commit_point_removes_staged_and_promoted_files(lake, spark,
                                                                          monkeypatch):
    def refuse(record):
        raise RuntimeError("DynamoDB went away")

    monkeypatch.setattr(lake.context.updates, "complete_update", refuse)
    with pytest.raises(RuntimeError, match="DynamoDB went away"):
        ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n"))
    update = lakeapi.get_update(DATASET, "1")
    assert update.status == "failed" and "DynamoDB went away" in update.reason
    assert update.files_removed
    assert lake.keys(STAGING) == [] and lake.keys(f"{DATASET}/") == []


def test_an_update_completed_late_does_not_change_earlier_reads(lake, spark):
    """Update 1 is allocated first but completes after update 2: "as of 2" read before and
    after update 1 completes is the same, and the newest data is update 1's."""
    updates = lake.context.updates
    first = updates.allocate_update(DATASET, "snapshot", "s3://x/1.csv", lake.data_bucket)
    second = updates.allocate_update(DATASET, "snapshot", "s3://x/2.csv", lake.data_bucket)
    assert ingest(lake, spark, lake.put("2.csv", b"id,val\n2,second\n"),
                  "--update", second.update_id) == 0
    before = as_dict(lakeapi.read(spark, DATASET, as_of=second.update_id))
    assert ingest(lake, spark, lake.put("1.csv", b"id,val\n1,first\n"),
                  "--update", first.update_id) == 0

    assert before == {2: "second"}
    assert as_dict(lakeapi.read(spark, DATASET, as_of=second.update_id)) == before
    assert as_dict(lakeapi.read(spark, DATASET)) == {1: "first"}
    listed = lakeapi.list_updates(DATASET)
    assert [(u.update_id, u.commit_seq) for u in listed] == [("0000000001", 2),
                                                             ("0000000002", 1)]


def test_deltas_apply_in_commit_order(lake, spark):
    """Two deltas to one key: the one that completed last wins, whatever the ids."""
    updates = lake.context.updates
    assert ingest(lake, spark, lake.put("s.csv", b"id,val\n1,a\n")) == 0
    early = updates.allocate_update(DATASET, "delta", "s3://x/e.csv", lake.data_bucket)
    late = updates.allocate_update(DATASET, "delta", "s3://x/l.csv", lake.data_bucket)
    assert ingest(lake, spark, lake.put("l.csv", b"id,val,op\n1,from_3,U\n"), "--kind", "delta",
                  "--update", late.update_id) == 0
    assert ingest(lake, spark, lake.put("e.csv", b"id,val,op\n1,from_2,U\n"), "--kind", "delta",
                  "--update", early.update_id) == 0
    assert as_dict(lakeapi.read(spark, DATASET)) == {1: "from_2"}
    assert as_dict(lakeapi.read(spark, DATASET, as_of=late.update_id)) == {1: "from_3"}


def test_a_changed_part_fails_the_read_naming_dataset_update_and_part(lake, spark):
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    forged = io.BytesIO()
    pq.write_table(pa.table({"id": [1], "val": ["forged"]}), forged)
    key = f"{DATASET}/data/0000000001/part-00000.parquet"
    lake.s3.put_object(Bucket=lake.data_bucket, Key=key, Body=forged.getvalue())
    with pytest.raises(Exception) as error:
        lakeapi.read(spark, DATASET).collect()
    message = str(error.value)
    assert "ChecksumMismatchError" in message
    assert f"{DATASET} update 0000000001: part part-00000.parquet" in message
    assert "does not match the SHA-256 recorded at commit" in message


def test_a_changed_manifest_fails_the_read(lake, spark):
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    key = f"{DATASET}/data/0000000001/_edl_manifest.json"
    manifest = json.loads(lake.s3.get_object(Bucket=lake.data_bucket, Key=key)["Body"].read())
    manifest["parts"][0]["sha256"] = "0" * 64
    lake.s3.put_object(Bucket=lake.data_bucket, Key=key, Body=json.dumps(manifest).encode())
    with pytest.raises(lakeapi.EdlError, match=r"manifest .* does not match the checksum"):
        lakeapi.read(spark, DATASET)


WIDE_FILES = 40


def test_a_wide_ingest_commits_and_its_item_stays_small(lake, spark):
    """40 files × 300 columns: the item holds the schema once and no per-file detail.

    Per-file columns in the item would be 40 × 300 entries (some 700 KB), far over DynamoDB's
    400 KB; more files would only make the ingest slower (each is a conversion), not the point
    stronger."""
    header = ",".join(["id", *(f"measure_{c:03d}" for c in range(299))])
    for n in range(WIDE_FILES):
        row = ",".join([str(n), *(str(n * c) for c in range(299))])
        lake.put(f"wide/file_{n:03d}.csv", f"{header}\n{row}\n".encode())
    assert ingest(lake, spark, f"s3://{lake.drop_bucket}/wide/") == 0

    dynamodb = boto3.client("dynamodb", endpoint_url=lake.endpoint, region_name="us-east-1")
    raw_item = dynamodb.get_item(
        TableName=lake.context.metadata.table("updates").name,
        Key={"dataset": {"S": DATASET}, "update_id": {"S": "0000000001"}})["Item"]
    size = len(json.dumps(raw_item))
    assert size < 100_000, f"update item is {size} bytes"
    assert "files" not in raw_item and "columns" not in raw_item
    update = lakeapi.get_update(DATASET, "1", files=True)
    assert (update.status, update.file_count, update.rows, len(update.columns)) == \
        ("complete", WIDE_FILES, WIDE_FILES, 300)
    assert len(update.files) == WIDE_FILES and len(update.files[0].columns) == 300
    assert lakeapi.read(spark, DATASET).count() == WIDE_FILES


def test_a_failed_glue_registration_is_a_warning_and_the_sweep_registers_it(
        lake, spark, monkeypatch, capsys):
    register = GlueCatalog.register_update

    def unavailable(self, dataset, update):
        raise RuntimeError("Glue is unavailable")

    monkeypatch.setattr(GlueCatalog, "register_update", unavailable)
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    assert "is not in the Glue catalog yet" in capsys.readouterr().err
    update = lakeapi.get_update(DATASET, "1")
    assert (update.status, update.catalog_registered) == ("complete", False)
    assert as_dict(lakeapi.read(spark, DATASET)) == {1: "a"}

    monkeypatch.setattr(GlueCatalog, "register_update", register)
    report = Sweeper(lake.context).sweep()
    assert report.registered == (f"{DATASET}/0000000001",)
    assert lakeapi.get_update(DATASET, "1").catalog_registered
    [partition] = lake.glue.get_partitions(DatabaseName="edl_local_sensitive_updates",
                                           TableName=DATASET)["Partitions"]
    assert partition["Values"] == ["1", "0000000001", "snapshot"]
    assert Sweeper(lake.context).sweep().registered == ()
