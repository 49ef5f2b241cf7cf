"""`GET /datasets/{dataset}/updates[/{update_id}]`: a dataset's updates, oldest first, in every
state (a reader of the data sees complete updates only; this is the record of all of them).

Each summary shows `commit_seq`, the update's position in the order updates became complete
(what time travel follows). One update's view adds its files: an update's item keeps no per-file
detail (it must stay far below DynamoDB's 400 KB whatever the width of an ingest), so they are
read from the update's manifest in S3, checked against the checksum its item recorded. Items
written before manifests carried the detail still hold a `files` list, shown as it is."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from edl.core_resources.rest_api.common import (
    ApiContext,
    Request,
    authorize,
    endpoint,
    module_handler,
    plain,
    read_page,
)
from edl.utils.staging import ChecksumMismatchError, manifest_files, read_manifest
from edl.utils.updates import COMPLETE, UpdateRecord, format_update_id

_SUMMARY = ("dataset", "update_id", "kind", "status", "source", "requested_by", "job_id",
            "created_at", "started_at", "finished_at", "rows", "bytes", "file_count", "reason",
            "commit_seq", "catalog_registered", "lineage")


def update_summary(item: dict[str, Any]) -> dict[str, Any]:
    record = UpdateRecord.from_item(item)
    return {name: getattr(record, name) for name in _SUMMARY}


@endpoint("list_updates")
def list_updates(request: Request, api: ApiContext) -> dict:
    authorize(request.endpoint, request.caller, api.instance)
    dataset = request.dataset_name()
    api.lake.metadata.get_dataset(dataset)  # 404 for an unknown dataset, not an empty list
    status = request.query.get("status")
    query: dict[str, Any] = {"KeyConditionExpression": Key("dataset").eq(dataset),
                             "ConsistentRead": True}
    if status:
        query["FilterExpression"] = Attr("status").eq(status)
    table = api.lake.metadata.table("updates")
    items, next_token = read_page(
        api, request, f"list_updates:{dataset}:{status or ''}",
        lambda **kwargs: table.query(**query, **kwargs), ("dataset", "update_id"))
    return {"dataset": dataset, "updates": [update_summary(i) for i in items],
            "next_token": next_token}


@endpoint("get_update")
def get_update(request: Request, api: ApiContext) -> dict:
    authorize(request.endpoint, request.caller, api.instance)
    dataset = request.dataset_name()
    dataset_record = api.lake.metadata.get_dataset(dataset)
    record = api.lake.updates.get_update(dataset, format_update_id(request.path["update_id"]))
    view = {name: getattr(record, name) for name in _SUMMARY}
    view.update(part_count=record.part_count, bucket=record.bucket, columns=list(record.columns),
                options=plain(record.options), files=[f.to_item() for f in record.files])
    if not record.files and record.status == COMPLETE:
        try:
            client = api.lake.s3_access(dataset_record.home_region).client()
            view["files"] = manifest_files(read_manifest(client, record))
        except (ClientError, BotoCoreError, ChecksumMismatchError) as exc:
            # The record stands without its files; say why they are missing.
            view["files_error"] = f"could not read the update's manifest: {exc}"
    return view


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
