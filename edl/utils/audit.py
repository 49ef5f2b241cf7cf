"""The audit log: append-only, one item an event, in `edl-<instance>-audit`.

Keys: `subject` (HASH) is the dataset's name (`LAKE_SUBJECT` for events about no dataset);
`event_id` (RANGE) is `"<ISO-8601 UTC with ms>Z#<8 hex>"`, so events sort by time and a
`--since` is a key range. Every event is written with `attribute_not_exists(event_id)` and is
never updated or deleted (the roles that write it have neither right).

An event: `event_id, at, dataset, action, actor, grant_id, level, decision, reason, detail`.
Actions: `request`, `approve`, `reject`, `revoke`, `expire`, `vend`, `break_glass` (a platform
admin's credentials without a grant), `run` (a pipeline run started through the API, one event
per output it will write) and `refuse` (any refused request; the action tried is
`detail.tried`). `decision` is `allowed`, or `refused` for `refuse`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

ACTIONS = ("request", "approve", "reject", "revoke", "expire", "vend", "break_glass", "run",
           "refuse")
ALLOWED, REFUSED = "allowed", "refused"
# Events about no dataset (a refused listing of all grants, say): a dataset name never starts
# with "_", so this subject is nobody's.
LAKE_SUBJECT = "_lake"
EVENT_KEYS = ("event_id", "at", "dataset", "action", "actor", "grant_id", "level", "decision",
              "reason", "detail")


def event_time(seconds: float) -> str:
    """`"2026-12-02T07:30:07.123Z"`: what an event id starts with."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def since_key(seconds: float) -> str:
    """The smallest event id at or after `seconds` (for a `--since` key range)."""
    return f"{event_time(max(0.0, seconds))}#"


@dataclass
class AuditLog:
    """Appends events to a boto3 Table (`edl-<instance>-audit`) and reads them back."""

    table: Any
    clock: Callable[[], float] = field(default=time.time)
    suffix: Callable[[], str] = field(default=lambda: secrets.token_hex(4))

    def record(self, *, dataset: str | None, action: str, actor: str,
               decision: str = ALLOWED, grant_id: str | None = None, level: str | None = None,
               reason: str | None = None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one event and return it (as the API shows it)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        at = event_time(self.clock())
        event = {"at": at, "dataset": dataset, "action": action, "actor": actor,
                 "grant_id": grant_id, "level": level, "decision": decision,
                 "reason": reason, "detail": detail or {}}
        for _ in range(5):   # a clash of two events in one millisecond: a new suffix
            event["event_id"] = f"{at}#{self.suffix()}"
            try:
                self.table.put_item(Item={"subject": dataset or LAKE_SUBJECT, **event},
                                    ConditionExpression="attribute_not_exists(event_id)")
                return event_view(event)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        raise RuntimeError("could not find a free audit event id")

    def query(self, dataset: str, since: float | None = None) -> dict[str, Any]:
        """Keyword arguments of a `table.query` over one dataset's events, oldest first."""
        condition = Key("subject").eq(dataset)
        if since is not None:
            condition = condition & Key("event_id").gte(since_key(since))
        return {"KeyConditionExpression": condition, "ConsistentRead": True}

    def events(self, dataset: str, since: float | None = None) -> list[dict[str, Any]]:
        kwargs = self.query(dataset, since)
        events: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            events += [event_view(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return events
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def event_view(item: dict[str, Any]) -> dict[str, Any]:
    """An event (an item, or what `record` wrote) with exactly the keys the API returns."""
    return {key: item.get(key) for key in EVENT_KEYS}
