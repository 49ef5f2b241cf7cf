"""The thin, low-level CloudFormation client: one region, as the privileged deploy role.

It knows how to get one stack from where it is to where its template says, and nothing about
which stacks make up the lake (that is `stack_manager`). Every deploy goes through a change set
whose `ChangeSetType` is always given. A change set that finds nothing to change is success.
Templates over 51,200 bytes go through the artifacts bucket. Each error names the stack and the
first failure reason.

A stack is deleted by a deploy in one case only: its first create failed and rolled back, and it
holds nothing (`ROLLBACK_COMPLETE`, never complete, every resource deleted; `safe_to_recreate`).
A stack in a failed state (`STUCK`) may hold data: the client refuses to touch it, and the stack
manager tells the user the command that recovers it.

Outputs: on moto a stack made by executing a change set has no `Outputs`, while in AWS it has.
So that users get the same answer from both, EDL never reads `Outputs` from `describe_stacks`:
`outputs()` evaluates the deployed template's `Outputs` section (which may use only `Ref` to
resources and parameters, and literals) against the stack's resources and parameters. That is
the same two describe calls in both clouds, and the same result.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from edl.cloudformation.render import parse_template
from edl.errors import DeployError

log = logging.getLogger(__name__)

TEMPLATE_BODY_LIMIT = 51_200
FINGERPRINT_PARAMETER = "EdlFingerprint"

STABLE_OK = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE",
                       "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"})
# A stack whose first create failed: recreated when `safe_to_recreate` says it holds nothing.
FIRST_CREATE_FAILED = "ROLLBACK_COMPLETE"
# A stack in one of these needs a person (it may hold data): EDL never deletes it on a deploy.
STUCK = frozenset({"CREATE_FAILED", "ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED"})
_OPERATION_STARTS = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS")
# Events carry the server's clock; allow a little skew against ours.
_CLOCK_SKEW = timedelta(seconds=5)
_NO_CHANGES = ("No updates are to be performed", "didn't contain changes",
               "does not contain changes")

EventSink = Callable[[str, datetime, str, str, str, "str | None"], None]


@dataclass(frozen=True)
class StackState:
    """What describe_stacks says of one stack, reduced to what planning needs."""

    name: str
    region: str
    status: str
    stack_id: str
    parameters: dict[str, str] = field(default_factory=dict, compare=False)
    updated: datetime | None = None

    @property
    def fingerprint(self) -> str | None:
        return self.parameters.get(FINGERPRINT_PARAMETER)

    @property
    def in_progress(self) -> bool:
        return self.status.endswith("_IN_PROGRESS") and self.status != "REVIEW_IN_PROGRESS"


@dataclass(frozen=True)
class DeployResult:
    name: str
    changed: bool
    status: str
    seconds: float


def _error_detail(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = err.get("Code") or f"HTTP {status}"
        message = err.get("Message") or "no message"
        return f"{code}: {message}"
    return f"{exc.__class__.__name__}: {exc}"


class StackClient:
    """CloudFormation in one region. Collaborators (clients, sleep, clock) come in from outside."""

    def __init__(self, cloudformation, region: str, *, s3: Callable[[], Any] | None = None,
                 artifacts_bucket: str | None = None,
                 on_event: EventSink | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, max_wait: float = 3600.0) -> None:
        self.cfn = cloudformation
        self.region = region
        self.s3 = s3  # a factory: the S3 client is needed only for templates over the limit
        self.artifacts_bucket = artifacts_bucket
        self.on_event = on_event
        self.sleep = sleep
        self.clock = clock
        self.max_wait = max_wait

    # -- reading ---------------------------------------------------------------------------------

    def list_stacks(self, prefix: str) -> dict[str, StackState]:
        """Every live stack whose name starts with `prefix`: one paginated describe call."""
        found: dict[str, StackState] = {}
        try:
            for page in self.cfn.get_paginator("describe_stacks").paginate():
                for stack in page["Stacks"]:
                    if stack["StackName"].startswith(prefix):
                        found[stack["StackName"]] = self._state(stack)
        except (ClientError, BotoCoreError) as exc:
            raise DeployError(f"cannot list stacks in {self.region}: {_error_detail(exc)}") from exc
        return found

    def describe(self, name: str) -> StackState | None:
        try:
            stacks = self.cfn.describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
                return None
            raise DeployError(f"stack {name}: cannot describe it: {_error_detail(exc)}") from exc
        return self._state(stacks[0]) if stacks else None

    def _state(self, stack: dict[str, Any]) -> StackState:
        return StackState(
            name=stack["StackName"],
            region=self.region,
            status=stack["StackStatus"],
            stack_id=stack["StackId"],
            parameters={p["ParameterKey"]: p.get("ParameterValue", "")
                        for p in stack.get("Parameters", [])},
            updated=stack.get("LastUpdatedTime") or stack.get("CreationTime"),
        )

    def template(self, name: str) -> dict[str, Any]:
        """The stack's deployed template, parsed."""
        body = self._call(name, "GetTemplate", self.cfn.get_template, StackName=name)["TemplateBody"]
        return body if isinstance(body, dict) else parse_template(body, name)

    def resources(self, name: str) -> dict[str, str]:
        """The stack's resources: logical id -> physical id."""
        try:
            return {r.get("LogicalResourceId"): r.get("PhysicalResourceId", "")
                    for r in self.cfn.describe_stack_resources(StackName=name)["StackResources"]}
        except (ClientError, BotoCoreError) as exc:
            raise DeployError(f"stack {name}: cannot read its resources: {_error_detail(exc)}") from exc

    def outputs(self, name: str, template: dict[str, Any],
                parameters: dict[str, str] | None = None) -> dict[str, str]:
        """The stack's outputs, evaluated from its template against its resources (see module doc).
        Callers that already described the stack pass its `parameters` and save the call."""
        declared = template.get("Outputs") or {}
        if not declared:
            return {}
        resources = self.resources(name)
        if parameters is None:
            state = self.describe(name)
            parameters = state.parameters if state else {}
        values = {**parameters, **resources}
        result = {}
        for key, output in declared.items():
            value = output.get("Value")
            if isinstance(value, dict) and set(value) == {"Ref"}:
                value = values.get(value["Ref"])
            if isinstance(value, str):
                result[key] = value
        return result

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every event of the stack, oldest first."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, str] = {"StackName": name}
        try:
            while True:
                page = self.cfn.describe_stack_events(**kwargs)
                events.extend(page["StackEvents"])
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        except (ClientError, BotoCoreError) as exc:
            raise DeployError(f"stack {name}: cannot read its events: {_error_detail(exc)}") from exc
        return list(reversed(events))

    def safe_to_recreate(self, name: str) -> bool:
        """True when the stack's first create failed and it holds nothing: no event says the
        stack itself was ever complete, and every resource it had is deleted (a retained
        resource, `DELETE_SKIPPED`, is data that a new create would collide with)."""
        for event in self.history(name):
            if event.get("LogicalResourceId") == name and event["ResourceStatus"] in STABLE_OK:
                return False
        try:
            resources = self.cfn.describe_stack_resources(StackName=name)["StackResources"]
        except (ClientError, BotoCoreError) as exc:
            raise DeployError(f"stack {name}: cannot read its resources: {_error_detail(exc)}") from exc
        return all(r.get("ResourceStatus") == "DELETE_COMPLETE" for r in resources)

    def last_failure(self, name: str) -> tuple[str | None, tuple[str, ...]]:
        """The first failure reason of the stack's last operation, and every resource that
        failed in it (what `delete-stack --retain-resources` would name)."""
        events = self.history(name)
        starts = [i for i, e in enumerate(events) if e.get("LogicalResourceId") == name
                  and e["ResourceStatus"] in _OPERATION_STARTS]
        last = events[starts[-1]:] if starts else events
        failed = [e for e in last if e["ResourceStatus"].endswith("FAILED")]
        reason = next((f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}" for e in failed
                       if e.get("ResourceStatusReason")), None)
        resources = tuple(dict.fromkeys(e["LogicalResourceId"] for e in failed
                                        if e.get("LogicalResourceId") != name))
        return reason, resources

    # -- changing ----------------------------------------------------------------------------------

    def deploy(self, name: str, body: str, parameters: dict[str, str], *,
               current: StackState | None, tags: dict[str, str] | None = None) -> DeployResult:
        """Bring stack `name` to `body` + `parameters` through a change set."""
        started = self.clock()
        if current is not None and current.in_progress:
            raise DeployError(
                f"stack {name} is busy ({current.status})",
                hint="wait for the running operation to finish, then deploy again",
            )
        if current is not None and current.status in STUCK:
            raise DeployError(f"stack {name} is {current.status}; EDL does not touch it",
                              hint="recover it first (edl plan shows the command)")
        if current is not None and current.status == FIRST_CREATE_FAILED:
            if not self.safe_to_recreate(name):
                raise DeployError(
                    f"stack {name} is {current.status} but was complete once or still holds "
                    "resources; EDL does not delete it",
                    hint="recover it first (edl plan shows the command)")
            log.info("%s - %s: deleting it so it can be created again", name, current.status)
            self.delete(name)
            current = None
        change_type = "CREATE" if current is None or current.status == "REVIEW_IN_PROGRESS" \
            else "UPDATE"
        since = datetime.now(UTC)
        change_set_id = self._create_change_set(name, change_type, body, parameters, tags or {})
        if change_set_id is None:
            return DeployResult(name, False, current.status if current else "", self.clock() - started)
        self._call(name, "ExecuteChangeSet", self.cfn.execute_change_set, ChangeSetName=change_set_id)
        status = self._wait_for_stack(name, since)
        return DeployResult(name, True, status, self.clock() - started)

    def _template_argument(self, name: str, body: str) -> dict[str, str]:
        if len(body.encode("utf-8")) <= TEMPLATE_BODY_LIMIT:
            return {"TemplateBody": body}
        if self.s3 is None or not self.artifacts_bucket:
            raise DeployError(
                f"stack {name}: its template is over {TEMPLATE_BODY_LIMIT} bytes and no artifacts "
                "bucket is known to upload it to",
                hint="deploy core first (it creates the artifacts bucket)",
            )
        key = f"templates/{name}/{hashlib.sha256(body.encode()).hexdigest()[:16]}.yaml"
        self._call(name, "PutObject", self.s3().put_object, Bucket=self.artifacts_bucket, Key=key,
                   Body=body.encode("utf-8"))
        url = f"https://{self.artifacts_bucket}.s3.{self.region}.amazonaws.com/{key}"
        return {"TemplateURL": url}

    def _create_change_set(self, name: str, change_type: str, body: str,
                           parameters: dict[str, str], tags: dict[str, str]) -> str | None:
        """Create a change set and wait for it; None when it would change nothing."""
        change_set_name = f"edl-{int(time.time() * 1000)}"
        try:
            response = self.cfn.create_change_set(
                StackName=name,
                ChangeSetName=change_set_name,
                ChangeSetType=change_type,
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                Capabilities=["CAPABILITY_NAMED_IAM"],
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
                **self._template_argument(name, body),
            )
        except ClientError as exc:
            if any(marker in str(exc) for marker in _NO_CHANGES):
                log.info("%s - no changes", name)
                return None
            raise self._failure(name, "CreateChangeSet", exc) from exc
        except BotoCoreError as exc:
            raise self._failure(name, "CreateChangeSet", exc) from exc
        change_set_id = response["Id"]
        delay = 0.0
        deadline = self.clock() + self.max_wait
        while True:
            described = self._call(name, "DescribeChangeSet", self.cfn.describe_change_set,
                                   ChangeSetName=change_set_id)
            status = described["Status"]
            if status == "CREATE_COMPLETE":
                return change_set_id
            if status == "FAILED":
                reason = described.get("StatusReason", "")
                if any(marker in reason for marker in _NO_CHANGES):
                    log.info("%s - change set found no changes", name)
                    self._call(name, "DeleteChangeSet", self.cfn.delete_change_set,
                               ChangeSetName=change_set_id)
                    return None
                raise DeployError(f"stack {name}: change set failed: {reason}")
            if self.clock() > deadline:
                raise DeployError(f"stack {name}: change set still {status} after {self.max_wait:.0f}s")
            delay = min(max(delay * 1.5, 0.2), 5.0)
            self.sleep(delay)

    def delete(self, name: str) -> None:
        """Delete a stack and wait until it is gone."""
        since = datetime.now(UTC)
        self._call(name, "DeleteStack", self.cfn.delete_stack, StackName=name)
        self._wait_for_stack(name, since, deleting=True)

    # -- waiting -------------------------------------------------------------------------------

    def _wait_for_stack(self, name: str, since: datetime, deleting: bool = False) -> str:
        """Poll until the stack settles, showing its new events; raise naming the first failure."""
        seen: set[str] = set()
        delay = 0.0
        deadline = self.clock() + self.max_wait
        while True:
            state = self.describe(name)
            self._show_new_events(name, since, seen)
            if state is None or state.status == "DELETE_COMPLETE":
                if deleting:
                    return "DELETE_COMPLETE"
                raise DeployError(f"stack {name} disappeared while deploying")
            status = state.status
            if not status.endswith("_IN_PROGRESS"):
                if deleting and status != "DELETE_COMPLETE":
                    raise DeployError(
                        f"stack {name} could not be deleted ({status}): "
                        f"{self.first_failure(name, since) or 'no reason given'}",
                        hint="fix what blocks the deletion (often a non-empty bucket), then retry",
                    )
                if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"):
                    return status
                reason = self.first_failure(name, since) or "no failure reason was reported"
                raise DeployError(
                    f"stack {name} failed ({status}): {reason}",
                    hint="fix the cause and deploy again; the stack is left as it was"
                    if status == "UPDATE_ROLLBACK_COMPLETE"
                    else "fix the cause and deploy again; EDL recreates a stack whose first create failed",
                )
            if self.clock() > deadline:
                raise DeployError(f"stack {name} still {status} after {self.max_wait:.0f}s")
            delay = min(max(delay * 1.5, 0.2), 5.0)
            self.sleep(delay)

    def _events_since(self, name: str, since: datetime) -> list[dict[str, Any]]:
        try:
            events = self.cfn.describe_stack_events(StackName=name)["StackEvents"]
        except (ClientError, BotoCoreError):
            return []  # events are a view, never a reason to fail a deploy
        # Events come newest first; keep this operation's, oldest first.
        return [e for e in reversed(events) if e["Timestamp"] >= since - _CLOCK_SKEW]

    def _show_new_events(self, name: str, since: datetime, seen: set[str]) -> None:
        if self.on_event is None:
            return
        for event in self._events_since(name, since):
            if event["EventId"] in seen:
                continue
            seen.add(event["EventId"])
            self.on_event(name, event["Timestamp"], event["LogicalResourceId"],
                          event.get("ResourceType", ""), event["ResourceStatus"],
                          event.get("ResourceStatusReason"))

    def first_failure(self, name: str, since: datetime) -> str | None:
        for event in self._events_since(name, since):
            if event["ResourceStatus"].endswith("FAILED") and event.get("ResourceStatusReason"):
                return f"{event['LogicalResourceId']}: {event['ResourceStatusReason']}"
        return None

    def _call(self, name: str, operation: str, method, **kwargs):
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError, WaiterError) as exc:
            raise self._failure(name, operation, exc) from exc

    def _failure(self, name: str, operation: str, exc: Exception) -> DeployError:
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status and status >= 500:
            return DeployError(
                f"stack {name}: the CloudFormation endpoint failed during {operation} "
                f"(HTTP {status}: {_error_detail(exc)})",
                hint="the stack is left as the endpoint left it; run `edl status` and deploy again",
            )
        return DeployError(f"stack {name}: {operation} failed: {_error_detail(exc)}")

