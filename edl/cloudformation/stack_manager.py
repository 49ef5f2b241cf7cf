"""Plans and executes the deployment of the lake's components as CloudFormation stacks.

A component (core, a dataset: see `components/`) is a list of `StackSpec`s: a stack name, a
region, a template, parameters and the stacks it depends on. Deploying is two steps:

1. `plan()` renders and lints every template, reads the live stacks with one describe call per
   region, and decides for each stack: create, update, recreate or unchanged. A stack is unchanged
   when its `EdlFingerprint` parameter (a hash of the rendered template and its parameters) is the
   one we would deploy now, so an unchanged stack costs no change set. The plan is frozen data:
   `edl plan` prints it, `edl deploy-*` executes it.
2. `execute()` deploys the stacks that change, each as soon as the stacks it depends on are done,
   at most `max_workers` at a time.

Parameters may name another stack's output (`OutputRef`); it is resolved from that stack once it
is deployed (or, when it is unchanged, already at plan time).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from typing import Union

from botocore.exceptions import ClientError

from edl.cloudformation.render import (RenderedTemplate, lint_templates, render_template,
                                       template_context)
from edl.cloudformation.stack_client import (FINGERPRINT_PARAMETER, RECREATE, STABLE_OK,
                                             DeployResult, StackClient, StackState)
from edl.config import Instance, LakeConfig
from edl.errors import DeployError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputRef:
    """A parameter value taken from another stack's output, optionally formatted (`{}`)."""

    stack: str
    output: str
    format: str = "{}"

    def __str__(self) -> str:
        return self.format.format(f"<{self.stack}.{self.output}>")


ParamValue = Union[str, OutputRef, tuple]  # a tuple becomes a comma-delimited list


@dataclass(frozen=True)
class Upload:
    """An object a stack needs in S3 before it deploys (job or Lambda code). Its key names its
    content (a hash), so an object already there is never uploaded again."""

    bucket: str
    key: str
    body: Callable[[], bytes] = field(compare=False, repr=False)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class StackSpec:
    name: str
    region: str
    template: str
    parameters: tuple[tuple[str, ParamValue], ...]
    depends_on: tuple[str, ...] = ()
    uploads: tuple[Upload, ...] = ()

    def refs(self) -> list[OutputRef]:
        found = []
        for _, value in self.parameters:
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, OutputRef):
                    found.append(item)
        return found


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    RECREATE = "recreate"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class PlannedStack:
    spec: StackSpec
    action: Action
    reason: str
    template: RenderedTemplate
    current: StackState | None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Plan:
    title: str
    stacks: tuple[PlannedStack, ...]
    live: Mapping[str, StackState] = field(default_factory=dict, compare=False)
    """The instance's stacks as the plan saw them (execute resolves references from them)."""

    @property
    def changes(self) -> tuple[PlannedStack, ...]:
        return tuple(s for s in self.stacks if s.action is not Action.UNCHANGED)

    def counts(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for stack in self.stacks:
            counts[stack.action.value] += 1
        return counts


def fingerprint(template: RenderedTemplate, parameters: dict[str, str]) -> str:
    digest = hashlib.sha256(template.body.encode())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    return digest.hexdigest()[:20]


class StackManager:
    """Plans and deploys stacks for one instance, as its CloudFormation role."""

    def __init__(self, config: LakeConfig, instance: Instance,
                 client_for_region: Callable[[str], StackClient], *, max_workers: int = 4) -> None:
        self.config = config
        self.instance = instance
        self.client_for_region = client_for_region
        self.max_workers = max_workers
        self._clients: dict[str, StackClient] = {}
        self._outputs: dict[str, dict[str, str]] = {}
        self._templates: dict[str, RenderedTemplate] = {}

    @property
    def stack_prefix(self) -> str:
        return f"edl-{self.instance.name}-"

    def client(self, region: str) -> StackClient:
        if region not in self._clients:
            self._clients[region] = self.client_for_region(region)
        return self._clients[region]

    def render(self, template: str) -> RenderedTemplate:
        if template not in self._templates:
            self._templates[template] = render_template(
                template, template_context(self.config, self.instance))
        return self._templates[template]

    def live_stacks(self, regions: Sequence[str] | None = None) -> dict[str, StackState]:
        """The instance's live stacks in the given regions (default: all of the instance's)."""
        found: dict[str, StackState] = {}
        for region in regions or self.instance.regions:
            found.update(self.client(region).list_stacks(self.stack_prefix))
        return found

    # -- plan --------------------------------------------------------------------------------------

    def plan(self, title: str, specs: Sequence[StackSpec]) -> Plan:
        templates = [self.render(spec.template) for spec in specs]
        lint_templates(templates, self.instance.regions)
        live = self.live_stacks()
        missing = sorted({r.stack for s in specs for r in s.refs()}
                         - {s.name for s in specs} - set(live))
        if missing:
            raise DeployError(
                f"{title} needs stack(s) that do not exist: {', '.join(missing)}",
                hint=f"deploy core first: edl deploy-core --instance {self.instance.name}",
            )
        planned: dict[str, PlannedStack] = {}
        for spec in _in_dependency_order(specs):
            planned[spec.name] = self._plan_one(spec, live, planned)
        return Plan(title, tuple(planned[s.name] for s in specs), live)

    def _plan_one(self, spec: StackSpec, live: dict[str, StackState],
                  planned: dict[str, PlannedStack]) -> PlannedStack:
        template = self.render(spec.template)
        current = live.get(spec.name)
        if current is None:
            return PlannedStack(spec, Action.CREATE, "does not exist yet", template, None)
        if current.status in RECREATE:
            return PlannedStack(spec, Action.RECREATE,
                                f"its first create failed ({current.status})", template, current)
        if current.in_progress:
            return PlannedStack(spec, Action.UPDATE, f"busy ({current.status})", template, current)
        waiting = [r.stack for r in spec.refs()
                   if r.stack in planned and planned[r.stack].action is not Action.UNCHANGED]
        if waiting:
            return PlannedStack(spec, Action.UPDATE,
                                f"takes values from {', '.join(sorted(set(waiting)))}, which change",
                                template, current)
        parameters = self.resolve(spec, live)
        if current.status in STABLE_OK and current.fingerprint == fingerprint(template, parameters):
            return PlannedStack(spec, Action.UNCHANGED, "template and parameters as deployed",
                                template, current)
        why = "template or parameters changed" if current.status in STABLE_OK \
            else f"last operation ended {current.status}"
        return PlannedStack(spec, Action.UPDATE, why, template, current)

    def resolve(self, spec: StackSpec, live: dict[str, StackState]) -> dict[str, str]:
        """The spec's parameters as strings, with output references looked up."""
        def one(value) -> str:
            if isinstance(value, OutputRef):
                return value.format.format(self._output(value, live))
            return str(value)

        resolved = {}
        for key, value in spec.parameters:
            resolved[key] = ",".join(one(v) for v in value) if isinstance(value, tuple) else one(value)
        return resolved

    def _output(self, ref: OutputRef, live: dict[str, StackState]) -> str:
        if ref.stack not in self._outputs:
            state = live.get(ref.stack)
            if state is None:
                raise DeployError(
                    f"stack {ref.stack} does not exist, and {ref.output} is needed from it",
                    hint=f"deploy core first: edl deploy-core --instance {self.instance.name}",
                )
            client = self.client(state.region)
            self._outputs[ref.stack] = client.outputs(ref.stack, client.template(ref.stack),
                                                      state.parameters)
        try:
            return self._outputs[ref.stack][ref.output]
        except KeyError:
            raise DeployError(f"stack {ref.stack} has no output {ref.output}",
                              hint="deploy core again to bring it up to date") from None

    # -- execute ---------------------------------------------------------------------------------

    def execute(self, plan: Plan) -> list[DeployResult]:
        """Deploy what the plan changes, each stack once its dependencies are done."""
        todo = {s.name: s for s in plan.changes}
        results: list[DeployResult] = []
        failures: list[DeployError] = []
        running: dict[Future, str] = {}
        live = dict(plan.live)

        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="edl-deploy") as pool:
            while todo or running:
                if not failures:
                    # Submit no more than the pool runs at once, so that after a failure
                    # nothing queued starts.
                    pending = set(todo) | set(running.values())
                    for name in [n for n, s in todo.items()
                                 if not pending.intersection(s.spec.depends_on)]:
                        if len(running) >= self.max_workers:
                            break
                        planned = todo.pop(name)
                        running[pool.submit(self._deploy_one, planned, live)] = name
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    try:
                        results.append(future.result())
                    except DeployError as exc:
                        failures.append(exc)
        if failures:
            skipped = sorted(todo)
            message = failures[0].message
            if len(failures) > 1:
                message += f" (and {len(failures) - 1} more stack(s) failed)"
            if skipped:
                message += f"; not attempted: {', '.join(skipped)}"
            raise DeployError(message, hint=failures[0].hint)
        return results

    def _deploy_one(self, planned: PlannedStack, live: dict[str, StackState]) -> DeployResult:
        spec = planned.spec
        client = self.client(spec.region)
        parameters = self.resolve(spec, live)
        parameters[FINGERPRINT_PARAMETER] = fingerprint(planned.template, parameters)
        log.info("%s - %s (%s)", spec.name, planned.action.value, planned.reason)
        if spec.uploads:
            self._upload(spec, client)
        result = client.deploy(spec.name, planned.template.body, parameters,
                               current=planned.current,
                               tags={"edl:instance": self.instance.name,
                                     "edl:template": spec.template})
        # Stacks that depend on this one read its outputs afresh.
        self._outputs.pop(spec.name, None)
        state = client.describe(spec.name)
        if state:
            live[spec.name] = state
        return result

    def _upload(self, spec: StackSpec, client: StackClient) -> None:
        """Put the objects the stack references that are not in S3 yet (their keys hold a hash
        of the content, so an existing object is the same one)."""
        if client.s3 is None:
            raise DeployError(f"{spec.name} needs objects in S3 but no S3 client was given")
        s3 = client.s3()
        for upload in spec.uploads:
            try:
                s3.head_object(Bucket=upload.bucket, Key=upload.key)
                log.info("%s - %s already uploaded", spec.name, upload.url)
                continue
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                    raise DeployError(f"{spec.name}: cannot check {upload.url}: {exc}") from None
            log.info("%s - uploading %s", spec.name, upload.url)
            try:
                s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.body())
            except ClientError as exc:
                raise DeployError(f"{spec.name}: cannot upload {upload.url}: {exc}") from None

    # -- outputs and removal -----------------------------------------------------------------

    def outputs(self, state: StackState) -> dict[str, str]:
        client = self.client(state.region)
        outputs = client.outputs(state.name, client.template(state.name), state.parameters)
        outputs.pop("Fingerprint", None)
        return outputs

    def delete_stacks(self, states: Sequence[StackState]) -> None:
        """Delete stacks in parallel (they must not depend on each other)."""
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            futures = [pool.submit(self.client(s.region).delete, s.name) for s in states]
            errors = [f.exception() for f in futures if f.exception()]
        if errors:
            raise errors[0]


def _in_dependency_order(specs: Sequence[StackSpec]) -> list[StackSpec]:
    by_name = {s.name: s for s in specs}
    ordered: list[StackSpec] = []
    visiting: set[str] = set()
    placed: set[str] = set()

    def visit(spec: StackSpec) -> None:
        if spec.name in placed:
            return
        if spec.name in visiting:
            raise DeployError(f"stacks depend on each other in a cycle through {spec.name}")
        visiting.add(spec.name)
        for dep in spec.depends_on:
            if dep in by_name:
                visit(by_name[dep])
        visiting.discard(spec.name)
        placed.add(spec.name)
        ordered.append(spec)

    for spec in specs:
        visit(spec)
    return ordered
