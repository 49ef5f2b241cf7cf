"""Which retained resources (data) a stack update would replace.

A resource that holds data carries `DeletionPolicy: Retain` in its template (buckets, KMS keys,
metadata tables). CloudFormation replaces a resource, that is creates a new one and drops the old
one, when a property that cannot change in place changes. For the lake that means an empty bucket
or table where the data was, so `plan` shows such a replacement and `deploy` refuses it unless the
user names it (`--allow-replace`).

How it is found: the deployed template (GetTemplate) and its parameters are compared with the new
template and parameters, property by property, for the properties below. This is the same in AWS
and on moto (whose change sets never report `Replacement`), and costs no change set.

What it covers: a change of resource type under the same logical id, and a change of the
properties listed in `REPLACING` of a resource that the new template retains, where the values
are literals, `Ref`s to parameters or `Fn::Sub` over parameters. What it does not: other
properties that force replacement (none of the lake's templates sets them), and values that come
from a stack that is itself changing in the same plan (unknown until it deployed; the property is
then not compared).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Properties whose change makes CloudFormation replace the resource, for the types that hold data.
REPLACING: dict[str, tuple[str, ...]] = {
    "AWS::S3::Bucket": ("BucketName",),
    "AWS::KMS::Key": ("KeySpec", "KeyUsage", "MultiRegion"),
    "AWS::DynamoDB::Table": ("TableName", "KeySchema", "LocalSecondaryIndexes"),
}


class _Unknown(Exception):
    """A value that cannot be known before a stack this one reads from has deployed."""


@dataclass(frozen=True)
class Replacement:
    stack: str
    logical_id: str
    resource_type: str
    why: str

    @property
    def name(self) -> str:
        """What `--allow-replace` takes: `<stack>.<logical id>`."""
        return f"{self.stack}.{self.logical_id}"

    def __str__(self) -> str:
        return f"{self.name} ({self.resource_type}): {self.why}"


def retained_replacements(stack: str, old: Mapping[str, Any], old_parameters: Mapping[str, str],
                          new: Mapping[str, Any],
                          new_parameters: Mapping[str, str | None]) -> list[Replacement]:
    """The retained resources of `new` that deploying it over `old` would replace.
    A parameter whose new value is None is not known yet (see the module doc)."""
    old_resources = old.get("Resources") or {}
    found = []
    for logical, resource in (new.get("Resources") or {}).items():
        if resource.get("DeletionPolicy") != "Retain" or logical not in old_resources:
            continue
        before = old_resources[logical]
        kind = resource.get("Type", "")
        if before.get("Type") != kind:
            found.append(Replacement(stack, logical, kind, f"its type was {before.get('Type')}"))
            continue
        for prop in REPLACING.get(kind, ()):
            try:
                was = _value((before.get("Properties") or {}).get(prop), old_parameters)
                will = _value((resource.get("Properties") or {}).get(prop), new_parameters)
            except _Unknown:
                continue
            if was != will:
                found.append(Replacement(stack, logical, kind,
                                         f"{prop} changes from {_show(was)} to {_show(will)}"))
                break
    return found


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _value(value: Any, parameters: Mapping[str, str | None]) -> Any:
    """The value with parameter references replaced by the parameters' values."""
    if isinstance(value, list):
        return [_value(v, parameters) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in parameters:
        return _parameter(value["Ref"], parameters)
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([^}!.]+)\}",
                      lambda m: _parameter(m.group(1), parameters)
                      if m.group(1) in parameters else m.group(0),
                      value["Fn::Sub"])
    return {k: _value(v, parameters) for k, v in value.items()}


def _parameter(name: str, parameters: Mapping[str, str | None]) -> str:
    resolved = parameters[name]
    if resolved is None:
        raise _Unknown(name)
    return resolved
