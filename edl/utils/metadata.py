"""The lake's metadata tables (DynamoDB, deployed by `deploy-core` from metadata.yaml).

Tables and keys (`edl-<instance>-<table>`):

- datasets: HASH `dataset`. One item a dataset: tier, owner, description, home region, the delta
  convention, and `update_seq`, the counter update ids are allocated from.
- updates:  HASH `dataset`, RANGE `update_id` (zero-padded, so ids sort lexically in numeric order).
- grants:   HASH `dataset`, RANGE `grant_id`; index `by-principal` (HASH `principal`, RANGE `dataset`).
- audit:    HASH `subject`, RANGE `event_id` (ISO time + random suffix); append-only.
- jobs:     HASH `job_id`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from edl import naming
from edl.errors import EdlError


def read_all(operation: Callable[..., dict], **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a DynamoDB `query` or `scan` (of a boto3 Table) returns, page by page."""
    items: list[dict[str, Any]] = []
    while True:
        page = operation(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def plain(value: Any) -> Any:
    """DynamoDB's Decimals (and sets) as JSON-friendly ints, floats and lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


class UnknownDatasetError(EdlError):
    exit_code = 3


@dataclass(frozen=True)
class DeltaConvention:
    """How a delta update encodes changes: key columns, and the column that marks deletes."""

    key_columns: tuple[str, ...]
    op_column: str | None = None
    delete_marker: str | None = None


@dataclass(frozen=True)
class DatasetRecord:
    dataset: str
    tier: str
    owner: str
    home_region: str
    description: str = ""
    delta: DeltaConvention | None = None
    created_at: float = field(default_factory=time.time)

    def to_item(self) -> dict[str, Any]:
        item = asdict(self)
        item["created_at"] = str(self.created_at)
        if self.delta is None:
            item.pop("delta")
        else:
            item["delta"] = {k: v for k, v in asdict(self.delta).items() if v is not None}
            item["delta"]["key_columns"] = list(self.delta.key_columns)
        return {k: v for k, v in item.items() if v not in (None, "")}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> DatasetRecord:
        delta = item.get("delta")
        return cls(
            dataset=item["dataset"],
            tier=item["tier"],
            owner=item["owner"],
            home_region=item["home_region"],
            description=item.get("description", ""),
            delta=DeltaConvention(
                key_columns=tuple(delta["key_columns"]),
                op_column=delta.get("op_column"),
                delete_marker=delta.get("delete_marker"),
            ) if delta else None,
            created_at=float(item.get("created_at", 0)),
        )


_BATCH_ATTEMPTS = 6


class Tables:
    """`tables("grants")`: the instance's boto3 Table of that name, made once. Making one builds
    its resource class from boto3's models, which costs more than the call it is made for; once
    made, a Table's calls are its client's, which threads may share."""

    def __init__(self, dynamodb, instance: str) -> None:
        self.instance = instance
        self._dynamodb = dynamodb
        self._made: dict[str, Any] = {}
        self._lock = threading.Lock()   # resources are made one at a time, as boto3 needs

    def __call__(self, name: str):
        table = self._made.get(name)
        if table is None:
            with self._lock:
                table = self._made.get(name)
                if table is None:
                    table = self._made[name] = self._dynamodb.Table(
                        naming.table_name(self.instance, name))
        return table


class MetadataStore:
    """Reads and writes the metadata tables of one instance through a boto3 DynamoDB resource."""

    def __init__(self, dynamodb, instance: str) -> None:
        self.instance = instance
        self._dynamodb = dynamodb
        self.table = Tables(dynamodb, instance)

    def put_dataset(self, record: DatasetRecord) -> None:
        """Create or update a dataset's record, keeping its update counter untouched."""
        item = record.to_item()
        names = {f"#{k}": k for k in item if k != "dataset"}
        values = {f":{k}": v for k, v in item.items() if k != "dataset"}
        sets = ", ".join(f"#{k} = :{k}" for k in item if k != "dataset")
        remove = "" if record.delta is not None else " REMOVE #delta"
        if record.delta is None:
            names["#delta"] = "delta"
        self.table("datasets").update_item(
            Key={"dataset": record.dataset},
            UpdateExpression=f"SET {sets}{remove}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def get_dataset(self, dataset: str) -> DatasetRecord:
        return self.dataset_from(dataset, self.table("datasets").get_item(
            Key={"dataset": dataset}).get("Item"))

    def dataset_from(self, dataset: str, item: dict[str, Any] | None) -> DatasetRecord:
        """The record of the dataset's item as read, or the error that it does not exist."""
        if item is None:
            raise UnknownDatasetError(
                f"dataset {dataset!r} does not exist in instance {self.instance!r}",
                hint=f"deploy it first: edl deploy-dataset {dataset} --instance {self.instance} ...",
            )
        return DatasetRecord.from_item(item)

    def get_many(self, keys: dict[str, list[dict[str, Any]]], *,
                 consistent: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
        """The items of several tables in one BatchGetItem: `{"datasets": [key], "grants":
        [key, key]}` -> the items found, by table (strongly consistent for the tables named in
        `consistent`). Keys DynamoDB leaves unprocessed are asked for again."""
        names = {naming.table_name(self.instance, short): short for short in keys}
        request = {full: {"Keys": keys[short], "ConsistentRead": short in consistent}
                   for full, short in names.items() if keys[short]}
        found: dict[str, list[dict[str, Any]]] = {short: [] for short in keys}
        for attempt in range(_BATCH_ATTEMPTS):
            if not request:
                return found
            if attempt:
                time.sleep(0.05 * 2 ** attempt)
            answer = self._dynamodb.batch_get_item(RequestItems=request)
            for full, items in answer.get("Responses", {}).items():
                found[names[full]] += items
            request = answer.get("UnprocessedKeys") or {}
        raise EdlError(f"DynamoDB left keys of {', '.join(sorted(request))} unread "
                       f"{_BATCH_ATTEMPTS} times", hint="try again in a moment")

    def list_datasets(self) -> list[DatasetRecord]:
        items = read_all(self.table("datasets").scan)
        return sorted((DatasetRecord.from_item(i) for i in items), key=lambda r: r.dataset)
