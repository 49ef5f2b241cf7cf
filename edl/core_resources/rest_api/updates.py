"""`GET /datasets/{dataset}/updates[/{update_id}]`: a dataset's updates, oldest first, in every
state (a reader of the data sees complete updates only; this is the record of all of them)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from edl.core_resources.rest_api.common import (ApiContext, Request, authorize, endpoint,
                                                module_handler, plain, read_page)
from edl.utils.updates import UpdateRecord, format_update_id

_SUMMARY = ("dataset", "update_id", "kind", "status", "source", "requested_by", "job_id",
            "created_at", "started_at", "finished_at", "rows", "bytes", "file_count", "reason")


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
    api.lake.metadata.get_dataset(dataset)
    record = api.lake.updates.get_update(dataset, format_update_id(request.path["update_id"]))
    view = {name: getattr(record, name) for name in _SUMMARY}
    view.update(part_count=record.part_count, bucket=record.bucket,
                files=[f.to_item() for f in record.files], columns=list(record.columns),
                options=plain(record.options))
    return view


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
