"""Hand-written fakes of CloudFormation and S3, an injected clock, and a recording `StackClient`:
what the stack client, stack manager and packaging tests share (DESIGN §2, §8)."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from edl.cloudformation.render import parse_template
from edl.cloudformation.stack_client import StackClient

ACCOUNT = "123456789012"
STACK_TYPE = "AWS::CloudFormation::Stack"


def client_error(operation: str, message: str = "", code: str = "ValidationError",
                 status: int = 400) -> ClientError:
    error = {k: v for k, v in (("Code", code), ("Message", message)) if v}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


def physical_id(stack: str, logical: str) -> str:
    """The physical id the fake gives a resource (tests compute expected outputs with it)."""
    return f"{stack}-{logical}".lower()


def _resources(body: str) -> dict[str, str]:
    resources = parse_template(body).get("Resources") or {}
    return {logical: spec.get("Type", "") for logical, spec in resources.items()}


@dataclass
class FakeStack:
    name: str
    region: str
    status: str
    parameters: dict[str, str] = field(default_factory=dict)
    template: str = ""
    resources: dict[str, str] = field(default_factory=dict)  # logical id -> resource type
    resource_status: dict[str, str] = field(default_factory=dict)  # default: CREATE_COMPLETE
    events: list[dict] = field(default_factory=list)  # newest first, as CloudFormation answers
    frames: list[tuple] = field(default_factory=list)  # (status, events) revealed one per describe

    @property
    def stack_id(self) -> str:
        return f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/{self.name}/0001"


class FakeCloudFormation:
    """CloudFormation in one region, as much of it as StackClient uses, behaving like the real
    service: a CREATE change set makes a REVIEW_IN_PROGRESS stack, an executed change set moves
    the stack through `frames` (one per describe_stacks call) while events appear, a deleted stack
    no longer describes. `fail[operation]` makes the next call of that operation raise."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.stacks: dict[str, FakeStack] = {}
        self.calls: list[tuple[str, dict]] = []
        self.fail: dict[str, Exception] = {}
        self.change_set_statuses = ["CREATE_PENDING", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"]
        self.change_set_reason = ""
        self.outcomes: dict[str, list[tuple]] = {}  # stack -> frames after execute (a failure)
        self._change_sets: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- test helpers ----------------------------------------------------------------------------

    def add_stack(self, name: str, status: str, parameters: dict | None = None,
                  template: str = "") -> FakeStack:
        stack = FakeStack(name, self.region, status, dict(parameters or {}), template,
                          _resources(template) if template else {})
        self.stacks[name] = stack
        return stack

    def add_event(self, stack: FakeStack, logical: str, rtype: str, status: str,
                  reason: str | None = None, when: datetime | None = None) -> None:
        event = {"EventId": f"event-{next(self._ids)}", "StackName": stack.name,
                 "LogicalResourceId": logical, "ResourceType": rtype, "ResourceStatus": status,
                 "Timestamp": when or datetime.now(UTC)}
        if reason:
            event["ResourceStatusReason"] = reason
        stack.events.insert(0, event)

    def operations(self, name: str | None = None) -> list[str]:
        return [op for op, kwargs in self.calls
                if name is None or kwargs.get("StackName") in (None, name)]

    def called(self, operation: str) -> list[dict]:
        return [kwargs for op, kwargs in self.calls if op == operation]

    # -- the API -----------------------------------------------------------------------------------

    def _enter(self, operation: str, kwargs: dict) -> None:
        self.calls.append((operation, dict(kwargs)))
        if operation in self.fail:
            raise self.fail.pop(operation)

    def _stack(self, name: str, operation: str) -> FakeStack:
        if name not in self.stacks:
            raise client_error(operation, f"Stack with id {name} does not exist")
        return self.stacks[name]

    def describe_stacks(self, **kwargs):
        with self._lock:
            self._enter("describe_stacks", kwargs)
            stack = self._stack(kwargs["StackName"], "DescribeStacks")
            if stack.frames:
                status, events = stack.frames.pop(0)
                for logical, rtype, event_status, reason in events:
                    self.add_event(stack, logical, rtype, event_status, reason)
                if status is None:  # deleted: by name it no longer exists
                    del self.stacks[stack.name]
                    return self.describe_stacks(**kwargs)
                stack.status = status
            return {"Stacks": [self._describe(stack)]}

    def _describe(self, stack: FakeStack) -> dict:
        return {"StackName": stack.name, "StackId": stack.stack_id, "StackStatus": stack.status,
                "CreationTime": datetime(2024, 1, 1, tzinfo=UTC),
                "Parameters": [{"ParameterKey": k, "ParameterValue": v}
                               for k, v in stack.parameters.items()]}

    def get_paginator(self, operation: str):
        assert operation == "describe_stacks"
        fake = self

        class Paginator:
            def paginate(self):
                with fake._lock:
                    fake.calls.append(("describe_stacks", {}))
                    stacks = [fake._describe(s) for s in fake.stacks.values()]
                for start in range(0, max(len(stacks), 1), 3):  # three a page: paging matters
                    yield {"Stacks": stacks[start:start + 3]}

        return Paginator()

    def create_change_set(self, **kwargs):
        with self._lock:
            self._enter("create_change_set", kwargs)
            name, kind = kwargs["StackName"], kwargs.get("ChangeSetType")
            if kind not in ("CREATE", "UPDATE"):  # moto needs it; EDL always gives it
                raise client_error("CreateChangeSet", "ChangeSetType must be given")
            if kind == "CREATE":
                if name in self.stacks and self.stacks[name].status != "REVIEW_IN_PROGRESS":
                    raise client_error("CreateChangeSet", f"Stack [{name}] already exists",
                                       code="AlreadyExistsException")
                self.stacks.setdefault(name, FakeStack(name, self.region, "REVIEW_IN_PROGRESS"))
            else:
                self._stack(name, "CreateChangeSet")
            change_set_id = (f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:changeSet/"
                             f"{kwargs['ChangeSetName']}/{next(self._ids)}")
            self._change_sets[change_set_id] = {**kwargs,
                                                "statuses": list(self.change_set_statuses)}
            return {"Id": change_set_id, "StackId": self.stacks[name].stack_id}

    def describe_change_set(self, **kwargs):
        with self._lock:
            self._enter("describe_change_set", kwargs)
            change_set = self._change_sets[kwargs["ChangeSetName"]]
            statuses = change_set["statuses"]
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            answer = {"Status": status, "StackName": change_set["StackName"]}
            if status == "FAILED":
                answer["StatusReason"] = self.change_set_reason
            return answer

    def delete_change_set(self, **kwargs):
        with self._lock:
            self._enter("delete_change_set", kwargs)
            self._change_sets.pop(kwargs["ChangeSetName"])
            return {}

    def execute_change_set(self, **kwargs):
        with self._lock:
            self._enter("execute_change_set", kwargs)
            change_set = self._change_sets.pop(kwargs["ChangeSetName"])
            stack = self.stacks[change_set["StackName"]]
            kind = change_set["ChangeSetType"]
            stack.status = f"{kind}_IN_PROGRESS"
            outcome = self.outcomes.pop(stack.name, None)
            if outcome is not None:
                stack.frames = list(outcome)
                return {}
            # Success: the stack takes the change set's template, parameters and resources.
            stack.parameters = {p["ParameterKey"]: p["ParameterValue"]
                                for p in change_set["Parameters"]}
            stack.template = change_set.get("TemplateBody") or change_set.get("TemplateURL", "")
            if "TemplateBody" in change_set:
                stack.resources = _resources(change_set["TemplateBody"])
            stack.frames = [
                (f"{kind}_IN_PROGRESS", [(stack.name, STACK_TYPE, f"{kind}_IN_PROGRESS",
                                          "User Initiated")]),
                (f"{kind}_IN_PROGRESS", [(r, t or "AWS::Resource", f"{kind}_IN_PROGRESS", None)
                                         for r, t in stack.resources.items()]),
                (f"{kind}_COMPLETE", [(r, t or "AWS::Resource", f"{kind}_COMPLETE", None)
                                      for r, t in stack.resources.items()]
                 + [(stack.name, STACK_TYPE, f"{kind}_COMPLETE", None)]),
            ]
            return {}

    def delete_stack(self, **kwargs):
        with self._lock:
            self._enter("delete_stack", kwargs)
            stack = self._stack(kwargs["StackName"], "DeleteStack")
            stack.frames = [("DELETE_IN_PROGRESS", [(stack.name, STACK_TYPE, "DELETE_IN_PROGRESS",
                                                     "User Initiated")]),
                            (None, [])]
            return {}

    def describe_stack_events(self, **kwargs):
        with self._lock:
            self._enter("describe_stack_events", kwargs)
            return {"StackEvents": list(self._stack(kwargs["StackName"], "DescribeStackEvents")
                                        .events)}

    def describe_stack_resources(self, **kwargs):
        with self._lock:
            self._enter("describe_stack_resources", kwargs)
            stack = self._stack(kwargs["StackName"], "DescribeStackResources")
            return {"StackResources": [
                {"StackName": stack.name, "LogicalResourceId": logical,
                 "PhysicalResourceId": physical_id(stack.name, logical), "ResourceType": rtype,
                 "ResourceStatus": stack.resource_status.get(logical, "CREATE_COMPLETE")}
                for logical, rtype in stack.resources.items()]}

    def get_template(self, **kwargs):
        with self._lock:
            self._enter("get_template", kwargs)
            return {"TemplateBody": self._stack(kwargs["StackName"], "GetTemplate").template}


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket, Key, Body):
        self.objects[(Bucket, Key)] = Body
        return {}

    def head_object(self, Bucket, Key):
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        return {"ContentLength": len(self.objects[(Bucket, Key)])}


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


REGIONS = ("us-east-1", "eu-west-1")


class Recorder:
    """Counts what runs at once and the order in which stacks start and end."""

    def __init__(self, delay: float = 0.0, delays: dict[str, float] | None = None) -> None:
        self.delay, self.delays = delay, delays or {}
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.started: dict[str, int] = {}
        self.ended: dict[str, int] = {}
        self.active = 0
        self.peak = 0

    def run(self, name: str, deploy):
        with self._lock:
            self.started[name] = next(self._seq)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delays.get(name, self.delay))
            return deploy()
        finally:
            with self._lock:
                self.active -= 1
                self.ended[name] = next(self._seq)


class RecordingClient(StackClient):
    def __init__(self, cfn, region, recorder: Recorder) -> None:
        # One fake S3 per region, kept on the fake CloudFormation so that every client sees it.
        super().__init__(cfn, region, s3=lambda: cfn.__dict__.setdefault("s3", FakeS3()),
                         sleep=lambda _: None)
        self.recorder = recorder

    def deploy(self, name, body, parameters, **kwargs):
        return self.recorder.run(name, lambda: super(RecordingClient, self).deploy(
            name, body, parameters, **kwargs))
