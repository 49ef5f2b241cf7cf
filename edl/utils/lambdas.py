"""The deployed Lambda projects (`edl-<instance>-lambdas`) and their invocations.

`edl deploy-lambda` registers a project once its stack is deployed:

    {"name": "example_lambda", "function_name": "edl-local-example_lambda",
     "handler": "handler.handle", "runtime": "python3.12", "timeout": 60, "memory": 256,
     "datasets": {"clinical_trials": "read"}, "environment": {...}, "trigger": "on_update",
     "watches": ["clinical_trials"], "schedule": "", "code_hash": "<sha256>",
     "package": "s3://<artifacts>/lambdas/<name>/package-<sha>.zip", "role_arn": "…", …}

On the local cloud an invocation is an item of the jobs table (`type: lambda`, `queued →
running → succeeded | failed`) holding the event; the runtime's Lambda runner runs the handler
with it and writes back the function's result, error and log. Triggers queue the same items:
`queue_triggered_invocations` for a complete update of a watched dataset (under a job id made
of the project, the dataset and the update, written only if absent: never twice for one
update) and `queue_scheduled_invocation` for a schedule's time (one id per minute).

The events are the ones Lambda would get in AWS: an EventBridge event of source `edl.lake`,
detail-type `EDL Update Complete` for an update, and EventBridge's `Scheduled Event`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from edl.errors import EdlError
from edl.utils.metadata import read_all
from edl.utils.pipelines import queue_run

LAMBDA_JOB = "lambda"
UPDATE_EVENT_SOURCE = "edl.lake"
UPDATE_EVENT_TYPE = "EDL Update Complete"


class UnknownLambdaError(EdlError):
    exit_code = 3


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LambdaStore:
    """The Lambda projects table of one instance (a boto3 DynamoDB resource's Table)."""

    def __init__(self, table, instance: str) -> None:
        self.table = table
        self.instance = instance

    def put(self, registration: dict[str, Any]) -> None:
        self.table.put_item(Item=registration)

    def get(self, name: str) -> dict[str, Any]:
        item = self.table.get_item(Key={"name": name}, ConsistentRead=True).get("Item")
        if item is None:
            raise UnknownLambdaError(
                f"Lambda project {name!r} is not deployed in instance {self.instance!r}",
                hint=f"deploy it first: edl deploy-lambda projects/{name} "
                f"--instance {self.instance}")
        return item

    def all(self) -> list[dict[str, Any]]:
        return sorted(read_all(self.table.scan, ConsistentRead=True), key=lambda i: i["name"])

    def watching(self, dataset: str) -> list[dict[str, Any]]:
        return [p for p in self.all()
                if p.get("trigger") == "on_update" and dataset in p.get("watches", [])]

    def scheduled(self) -> list[dict[str, Any]]:
        return [p for p in self.all() if p.get("trigger") == "schedule" and p.get("schedule")]


def invocation_item(name: str, event: Any, *, job_id: str | None = None, trigger: str = "invoke",
                    requested_by: str = "") -> dict[str, Any]:
    """The jobs-table item of one invocation, queued; the event is kept as JSON text."""
    return {"job_id": job_id or f"lambda-{name}-{secrets.token_hex(6)}", "status": "queued",
            "type": LAMBDA_JOB, "lambda": name, "created_at": _now(), "trigger": trigger,
            "requested_by": requested_by, "event": json.dumps(event)}


def update_event(*, account: str, region: str, instance: str, dataset: str, update_id: str,
                 kind: str = "", rows: int | None = None) -> dict[str, Any]:
    """The EventBridge event of a complete update, as an on_update function receives it."""
    detail: dict[str, Any] = {"instance": instance, "dataset": dataset, "update_id": update_id,
                              "kind": kind}
    if rows is not None:
        detail["rows"] = int(rows)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": UPDATE_EVENT_TYPE,
            "source": UPDATE_EVENT_SOURCE, "account": account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [], "detail": detail}


def scheduled_event(*, account: str, region: str, rule: str, at: datetime) -> dict[str, Any]:
    """EventBridge's `Scheduled Event` for `rule` at time `at`."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": account,
            "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [f"arn:aws:events:{region}:{account}:rule/{rule}"], "detail": {}}


def schedule_rule_name(function_name: str) -> str:
    return f"{function_name}-schedule"[:64]


def triggered_job_id(name: str, dataset: str, update_id: str) -> str:
    digest = hashlib.sha256(f"{name}\0{dataset}\0{update_id}".encode()).hexdigest()[:16]
    return f"lambda-{name}-on-{digest}"


def queue_triggered_invocations(store: LambdaStore, jobs_table, *, account: str, region: str,
                                dataset: str, update_id: str, kind: str = "",
                                rows: int | None = None) -> list[str]:
    """Queue one invocation of every project watching `dataset` for its complete update;
    → the job ids queued now (never twice for the same update)."""
    queued = []
    for registration in store.watching(dataset):
        name = registration["name"]
        event = update_event(account=account, region=region, instance=store.instance,
                             dataset=dataset, update_id=update_id, kind=kind, rows=rows)
        item = invocation_item(name, event, job_id=triggered_job_id(name, dataset, update_id),
                               trigger=f"on_update {dataset} {update_id}",
                               requested_by="on_update")
        if queue_run(jobs_table, item):
            queued.append(item["job_id"])
    return queued


def queue_scheduled_invocation(jobs_table, registration: dict[str, Any], *, account: str,
                               region: str, at: datetime) -> str | None:
    """Queue the invocation a schedule makes at `at` (one per minute at most, whoever asks);
    → its job id, or None if it was queued before."""
    name = registration["name"]
    job_id = f"lambda-{name}-at-{at.astimezone(UTC):%Y%m%dT%H%M}"
    event = scheduled_event(account=account, region=region, at=at,
                            rule=schedule_rule_name(registration["function_name"]))
    item = invocation_item(name, event, job_id=job_id,
                           trigger=f"schedule {registration['schedule']}",
                           requested_by="schedule")
    return job_id if queue_run(jobs_table, item) else None
