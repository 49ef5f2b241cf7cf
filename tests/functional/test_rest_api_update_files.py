"""`GET /datasets/{dataset}/updates/{id}` shows an update's files from its manifest (the item
keeps none) and its commit position; a manifest that does not match its checksum is reported,
not shown."""

from __future__ import annotations

from dataclasses import replace

import boto3

from edl.core_resources.rest_api import updates
from edl.utils.staging import write_manifest
from edl.utils.updates import FileRecord
from tests.functional.rest_api_helpers import REGION, call, event

BUCKET = "sanofi-datalake-local-internal-us-east-1"
FILES = (FileRecord(path="a.csv", format="csv", rows=2, bytes=10, sha256="1" * 64,
                    part="part-00000.parquet", columns=({"name": "id", "type": "int64"},)),)


def completed(api_lake, *, tamper: bool = False):
    api_lake.add_dataset("sales")
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    update = api_lake.updates.allocate_update("sales", "snapshot", "s3://x/a.csv", BUCKET)
    digest = write_manifest(s3, update, FILES, ["s3://x/a.csv"], ["2" * 64], [100])
    if tamper:
        s3.put_object(Bucket=BUCKET, Key=update.manifest_key, Body=b'{"files": []}')
    api_lake.updates.complete_update(replace(update, rows=2, file_count=1, part_count=1,
                                         files=FILES, manifest_sha256=digest))
    return update


def test_one_update_shows_its_files_from_the_manifest_and_its_commit_position(api_lake):
    update = completed(api_lake)
    status, body = call(updates.get_update, event(
        "get_update", path={"dataset": "sales", "update_id": update.update_id}))
    assert status == 200 and body["commit_seq"] == 1
    assert [(f["path"], f["rows"], f["sha256"], f["origin"]) for f in body["files"]] == [
        ("a.csv", 2, "1" * 64, "s3://x/a.csv")]
    assert body["files"][0]["columns"] == [{"name": "id", "type": "int64"}]
    status, listed = call(updates.list_updates, event("list_updates", path={"dataset": "sales"}))
    assert [u["commit_seq"] for u in listed["updates"]] == [1]


def test_a_manifest_that_does_not_match_its_checksum_is_reported_not_shown(api_lake):
    update = completed(api_lake, tamper=True)
    status, body = call(updates.get_update, event(
        "get_update", path={"dataset": "sales", "update_id": update.update_id}))
    assert status == 200 and body["files"] == []
    assert "does not match the checksum recorded at commit" in body["files_error"]
