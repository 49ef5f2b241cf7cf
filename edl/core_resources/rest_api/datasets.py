"""`GET /datasets` and `GET /datasets/{dataset}`: the lake's datasets, open to every
authenticated caller of the instance's account (grants will narrow what `get` shows later)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from edl.core_resources.rest_api.common import (
    ApiContext,
    Request,
    authorize,
    endpoint,
    module_handler,
    plain,
    read_page,
)
from edl.utils.metadata import DatasetRecord
from edl.utils.updates import COMPLETE, format_update_id, item_columns


def dataset_view(item: dict[str, Any]) -> dict[str, Any]:
    """A dataset's item as the API shows it: its record, and how many updates it has had."""
    record = DatasetRecord.from_item(item)
    seq = int(item.get("update_seq", 0))
    return {
        "dataset": record.dataset, "tier": record.tier, "owner": record.owner,
        "home_region": record.home_region, "description": record.description,
        "delta": None if record.delta is None else {
            "key_columns": list(record.delta.key_columns),
            "op_column": record.delta.op_column, "delete_marker": record.delta.delete_marker},
        "created_at": record.created_at,
        "updates": seq,                     # ids allocated so far: complete, pending and failed
        "last_update": format_update_id(seq) if seq else None,
    }


@endpoint("list_datasets")
def list_datasets(request: Request, api: ApiContext) -> dict:
    authorize(request.endpoint, request.caller, api.instance)
    table = api.lake.metadata.table("datasets")
    items, next_token = read_page(api, request, "list_datasets", table.scan, ("dataset",))
    return {"datasets": [dataset_view(i) for i in items], "next_token": next_token}


@endpoint("get_dataset")
def get_dataset(request: Request, api: ApiContext) -> dict:
    authorize(request.endpoint, request.caller, api.instance)
    name = request.dataset_name()
    item = api.lake.metadata.table("datasets").get_item(Key={"dataset": name}).get("Item")
    if item is None:
        api.lake.metadata.get_dataset(name)  # raises the lake's own "does not exist" error
    view = dataset_view(item)
    newest = newest_complete_update(api, name)
    view["newest_update"] = None if newest is None else {
        "update_id": newest["update_id"], "kind": newest.get("kind"),
        "finished_at": newest.get("finished_at"), "rows": plain(newest.get("rows", 0)),
        "columns": item_columns(newest),
    }
    return view


def newest_complete_update(api: ApiContext, dataset: str) -> dict | None:
    """The newest complete update's item, reading backwards from the newest id."""
    table = api.lake.metadata.table("updates")
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": Key("dataset").eq(dataset),
        "FilterExpression": Attr("status").eq(COMPLETE),
        "ScanIndexForward": False, "Limit": 25, "ConsistentRead": True,
        "ProjectionExpression": "update_id, kind, finished_at, #r, #c, arrow_schema",
        "ExpressionAttributeNames": {"#r": "rows", "#c": "columns"},
    }
    while True:
        page = table.query(**kwargs)
        if page["Items"]:
            return page["Items"][0]
        if "LastEvaluatedKey" not in page:
            return None
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
