"""The local jobs table (`edl-<instance>-jobs`): the job items the job runner takes and finishes.

    queued → running → succeeded | failed

Every change of state is one conditional update, so two runners never take the same job and a
sweep never overwrites an outcome. A claim records the claiming runner (`runner_id`), which is
how a sweep tells a job whose runner is gone (see `edl.local.job_runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from edl.utils.metadata import read_all

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JobsTable:
    """The job items of one instance's jobs table (a boto3 DynamoDB Table)."""

    def __init__(self, table, now: Callable[[], str] = _now) -> None:
        self.table = table
        self._now = now

    def queued(self) -> list[dict]:
        """Queued jobs, oldest first."""
        from boto3.dynamodb.conditions import Attr

        items = read_all(self.table.scan, FilterExpression=Attr("status").eq(QUEUED),
                         ConsistentRead=True)
        return sorted(items, key=lambda i: (str(i.get("created_at", "")), i["job_id"]))

    def running(self) -> list[dict]:
        """Jobs marked running (by this runner or by one that is gone)."""
        from boto3.dynamodb.conditions import Attr

        return read_all(self.table.scan, FilterExpression=Attr("status").eq(RUNNING),
                        ConsistentRead=True)

    def claim(self, job_id: str, runner_id: str = "") -> dict | None:
        """Mark a queued job running, by `runner_id`; None if someone else took it first."""
        try:
            return self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET #s = :running, started_at = :now, progress = :progress, "
                "runner_id = :runner",
                ConditionExpression="#s = :queued",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":running": RUNNING, ":queued": QUEUED,
                                           ":now": self._now(), ":progress": "started",
                                           ":runner": runner_id},
                ReturnValues="ALL_NEW")["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise

    def progress(self, job_id: str, text: str) -> None:
        self.table.update_item(
            Key={"job_id": job_id}, UpdateExpression="SET progress = :p",
            ExpressionAttributeValues={":p": text[:1000]})

    def finish(self, job_id: str, status: str, fields: dict[str, Any]) -> None:
        values = {"status": status, "finished_at": self._now(), **fields}
        self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
            ExpressionAttributeNames={f"#{k}": k for k in values},
            ExpressionAttributeValues={f":{k}": v for k, v in values.items()})

    def fail_abandoned(self, item: dict, reason: str) -> bool:
        """Fail a running job left by a runner that is gone; only if it is still running under
        that runner (so a sweep never overwrites an outcome). → whether it was failed."""
        try:
            self.table.update_item(
                Key={"job_id": item["job_id"]},
                UpdateExpression="SET #s = :failed, finished_at = :now, #e = :reason, "
                "progress = :failed",
                ConditionExpression="#s = :running AND (attribute_not_exists(runner_id) OR "
                "runner_id = :runner)",
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues={":failed": FAILED, ":now": self._now(),
                                           ":reason": reason, ":running": RUNNING,
                                           ":runner": item.get("runner_id", "")})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
