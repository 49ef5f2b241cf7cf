"""The per-dataset commit lock that orders commits (see `edl.utils.updates`).

It is three attributes of the dataset's item: `committing` (the update being committed),
`committing_since` (when, in seconds since the epoch) and `commit_seq` (the last position
handed out). `acquire` takes the lock and the next position in one conditional write; `release`
removes the lock only if it is still the caller's. A holder past its lease
(`COMMIT_LEASE_SECONDS`, far above the two small writes a commit takes and any clock skew
between machines) is taken to be dead: its update is fenced (failed, if still pending) before
the lock is taken over, so no update can complete at a position below one already readable.
A position taken by a holder that died is a gap, which readers ignore; no position is ever
handed out twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from edl.utils.metadata import UnknownDatasetError

COMMIT_LEASE_SECONDS = 60.0


class CommitLock:
    def __init__(self, datasets_table, *, is_pending: Callable[[str, str], bool],
                 fence: Callable[[str, str, str], None],
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._table = datasets_table
        self._is_pending = is_pending
        self._fence = fence
        self._clock = clock
        self._sleep = sleep

    def acquire(self, dataset: str, update_id: str) -> int:
        """Take the dataset's commit lock for `update_id`; → its commit position."""
        holder: str | None = None
        delay = 0.05
        while True:
            condition = "attribute_not_exists(committing) OR committing = :me"
            values: dict[str, Any] = {":me": update_id, ":one": 1,
                                      ":now": Decimal(f"{self._clock():.3f}")}
            if holder is not None:
                condition = "committing = :holder"
                values[":holder"] = holder
            try:
                attributes = self._table.update_item(
                    Key={"dataset": dataset},
                    UpdateExpression="SET committing = :me, committing_since = :now "
                    "ADD commit_seq :one",
                    ConditionExpression=f"attribute_exists(dataset) AND ({condition})",
                    ExpressionAttributeValues=values, ReturnValues="UPDATED_NEW")["Attributes"]
                return int(attributes["commit_seq"])
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            holder = self._stale_holder(dataset)
            if holder is None:
                self._sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)

    def release(self, dataset: str, update_id: str) -> None:
        try:
            self._table.update_item(
                Key={"dataset": dataset}, UpdateExpression="REMOVE committing, committing_since",
                ConditionExpression="committing = :me",
                ExpressionAttributeValues={":me": update_id})
        except ClientError as exc:
            # Taken over after our lease ran out: the lock is no longer ours to release.
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def _stale_holder(self, dataset: str) -> str | None:
        """The update holding the lock if it may be taken over, else None (free again, or held
        within its lease). A holder whose lease ran out is fenced first."""
        item = self._table.get_item(Key={"dataset": dataset}, ConsistentRead=True).get("Item")
        if item is None:
            raise UnknownDatasetError(f"dataset {dataset!r} does not exist")
        holder = item.get("committing")
        if holder is None:
            return None
        if not self._is_pending(dataset, holder):
            return holder   # it committed (or failed) but did not get to release the lock
        if self._clock() - float(item.get("committing_since", 0)) < COMMIT_LEASE_SECONDS:
            return None
        self._fence(dataset, holder, "abandoned while committing: its job held the commit "
                    f"lock for more than {COMMIT_LEASE_SECONDS:.0f} s")
        return holder
