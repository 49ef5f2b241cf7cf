"""Data goes into the lake on the local cloud, under IAM enforcement, the way an operator does it.

`edl deploy-core` and `edl deploy-dataset` run as processes; files are dropped into the drop
bucket; the ingest job runs as `python -m edl.core_resources.pipelines.ingest --instance local`,
which on the local instance assumes the ingest job role (as Glue would run it as that role); the
result is read back with `lake.read`.

Reading goes through the dataset's *read* role (S3) with the metadata read as the caller, which is
what a user granted read access gets: it proves the job wrote data that the read grant alone can
read, and that no reader needs the ingest role's write rights. The many small updates of the
time-travel check run the same job in-process (one Spark JVM per process is the cost of the
command), also as the ingest role.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from edl.utils import lake
from tests.e2e.helpers import (
    DATA,
    DROP,
    client,
    deploy,
    ingest_in_process,
    ingest_process,
    reader,
    rows,
)
from tests.functional.ingest_helpers import (
    EVENTS,
    EXPECTED,
    EXTRA_CSV,
    HISTORY,
    INNER_ZIP,
    SITES_CSV,
    gzip_bytes,
    zip_bytes,
)

BATCHES, HISTORY_DATASET = "e2e_batches", "e2e_history"


def test_drop_ingest_and_read_back_as_the_read_role(local_cloud, spark, capsys):
    deploy(BATCHES)
    drop = client(local_cloud, "s3")                    # the admin through the deploy role
    drop.put_object(Bucket=DROP, Key="batch1/batch1.zip",
                    Body=zip_bytes({"sites/a.csv": SITES_CSV, "sites/nested/inner.zip": INNER_ZIP}))
    drop.put_object(Bucket=DROP, Key="batch1/extra.csv.gz", Body=gzip_bytes(EXTRA_CSV))
    drop.put_object(Bucket=DROP, Key="batch1/logs/events.jsonl", Body=EVENTS)
    # Users cannot write drop buckets themselves (the REST API uploads for them).
    with pytest.raises(ClientError) as denied:
        client(local_cloud, "s3", user="alice", role=False).put_object(
            Bucket=DROP, Key="batch1/mine.csv", Body=b"id\n1\n")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"

    done = ingest_process(BATCHES, f"s3://{DROP}/batch1")
    assert done.returncode == 0, done.stderr
    assert "update 0000000001 complete: 4 file(s), 5 rows" in done.stdout

    as_reader = reader(BATCHES)
    [listed] = lake.list_updates(BATCHES, instance="local")
    # the files are in the update's manifest, which the read role reads
    update = lake.get_update(BATCHES, listed.update_id, files=True, context=as_reader)
    assert (update.status, update.rows, [f.path for f in update.files]) == (
        "complete", 5, ["extra.csv", "logs/events.jsonl", "sites/a.csv", "sites/nested/eu/c.csv"])
    df = lake.read(spark, BATCHES, context=as_reader)
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == \
        [("id", "bigint"), ("name", "string"), ("score", "double")]
    assert sorted(tuple(r) for r in df.collect()) == [
        (1, "Smith, J.", 1.5), (2, "two\nlines", 2.0), (3, "carol", 3.25), (4, "dan", 4.0),
        (5, "eve", 5.0)]
    # Written as the ingest job role; registered in the catalog for Athena.
    admin_s3 = client(local_cloud, "s3")
    raw = admin_s3.get_object(Bucket=DATA, Key=f"{BATCHES}/raw/0000000001/sites/a.csv")
    assert raw["Body"].read() == SITES_CSV
    glue = client(local_cloud, "glue")
    partitions = glue.get_partitions(DatabaseName="edl_local_sensitive_updates",
                                     TableName=BATCHES)
    assert [p["Values"] for p in partitions["Partitions"]] == [["1", "0000000001", "snapshot"]]
    view = glue.get_table(DatabaseName="edl_local_sensitive", Name=BATCHES)["Table"]
    assert view["TableType"] == "VIRTUAL_VIEW"

    # A zip that climbs out of its folder: the update fails with that reason, nothing readable.
    drop.put_object(Bucket=DROP, Key="bad/evil.zip", Body=zip_bytes({"../evil.csv": b"id\n1\n"}))
    capsys.readouterr()
    assert ingest_in_process(spark, BATCHES, f"s3://{DROP}/bad/evil.zip") == 1
    assert "escapes the archive's folder" in capsys.readouterr().err
    failed = lake.get_update(BATCHES, "2", instance="local")
    assert failed.status == "failed" and "escapes the archive's folder" in failed.reason
    listing = admin_s3.list_objects_v2(Bucket=DATA, Prefix=f"{BATCHES}/")
    assert not [o["Key"] for o in listing["Contents"] if "/0000000002/" in o["Key"]]
    assert lake.read(spark, BATCHES, context=as_reader).count() == 5   # still update 1


def test_time_travel_across_three_snapshots_and_four_deltas(local_cloud, spark):
    deploy(HISTORY_DATASET)
    drop = client(local_cloud, "s3")
    for n, (kind, body) in enumerate(HISTORY, start=1):
        key = f"history/u{n}.csv"
        drop.put_object(Bucket=DROP, Key=key, Body=body)
        assert ingest_in_process(spark, HISTORY_DATASET, f"s3://{DROP}/{key}", "--kind", kind) == 0

    updates = lake.list_updates(HISTORY_DATASET, instance="local")
    assert [(u.kind, u.status) for u in updates] == [(k, "complete") for k, _ in HISTORY]
    as_reader = reader(HISTORY_DATASET)
    assert lake.read(spark, HISTORY_DATASET, context=as_reader).columns == ["id", "val"]
    for n, expected in EXPECTED.items():
        assert dict(rows(spark, as_reader, HISTORY_DATASET, as_of=str(n))) == expected, \
            f"as of {n}"


def test_the_read_role_of_one_dataset_cannot_read_another(local_cloud):
    deploy(BATCHES)
    other = reader(HISTORY_DATASET).s3_access("us-east-1").client()
    with pytest.raises(ClientError) as denied:
        other.get_object(Bucket=DATA, Key=f"{BATCHES}/raw/0000000001/extra.csv")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
