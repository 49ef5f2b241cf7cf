"""What a deploy is made of and what it will do, as frozen data.

A `StackSpec` says what a stack should be: its name, region, template and parameters, where a
parameter may be another stack's output (`OutputRef`). What a stack reads is what it depends on:
`in_dependency_order` puts every stack after the stacks it reads from, and deletes go in reverse.
A `Plan` is the stack manager's decision for each spec (`PlannedStack`: create, update, recreate,
unchanged or blocked, with the reason); `edl plan` prints it and `edl deploy-*` executes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from edl.cloudformation.render import RenderedTemplate
from edl.cloudformation.replacement import Replacement
from edl.cloudformation.stack_client import StackState
from edl.errors import DeployError


@dataclass(frozen=True)
class OutputRef:
    """A parameter value taken from another stack's output, optionally formatted (`{}`)."""

    stack: str
    output: str
    format: str = "{}"

    def __str__(self) -> str:
        return self.format.format(f"<{self.stack}.{self.output}>")


ParamValue = str | OutputRef | tuple  # a tuple becomes a comma-delimited list


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
    uploads: tuple[Upload, ...] = ()

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The stacks whose outputs this one reads: they deploy before it and delete after it."""
        return tuple(sorted({ref.stack for ref in self.refs()}))

    def without_values_from(self, stacks: set[str]) -> StackSpec:
        """This spec without the parameters that read an output of one of `stacks`."""
        def reads(value: ParamValue) -> bool:
            items = value if isinstance(value, tuple) else (value,)
            return any(isinstance(item, OutputRef) and item.stack in stacks for item in items)

        return StackSpec(self.name, self.region, self.template,
                         tuple((k, v) for k, v in self.parameters if not reads(v)), self.uploads)

    def refs(self) -> list[OutputRef]:
        found = []
        for _, value in self.parameters:
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, OutputRef):
                    found.append(item)
        return found


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    RECREATE = "recreate"
    UNCHANGED = "unchanged"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class PlannedStack:
    spec: StackSpec
    action: Action
    reason: str
    template: RenderedTemplate
    current: StackState | None
    replacements: tuple[Replacement, ...] = ()
    recovery: str | None = None
    """For a blocked stack: the command that recovers it."""

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


def in_dependency_order(specs: Sequence[StackSpec]) -> list[StackSpec]:
    """The specs with every stack after the stacks it reads from (deletes go in reverse)."""
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
