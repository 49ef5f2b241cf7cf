"""On the local cloud, make the lake's roles trust whom their templates say.

moto's CloudFormation creates a role with its template's trust policy, but a stack update that
changes the trust policy does not take effect, while IAM's `update_assume_role_policy` does
(measured, DESIGN §8). A local cloud keeps its state across EDL versions, so without help its
roles would keep trusting whom an older EDL named - before the credential broker, only the
platform admin. After `deploy-core` and `deploy-dataset` on the local instance, `LocalTrustRefresh`
reads each role of the plan's stacks from the rendered template and the stack's parameters,
compares the trust policy it should have with the one it has, and sets it through IAM where they
differ. In the cloud CloudFormation updates trust policies itself; this is never used there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from edl.cloudformation.plan import Plan, StackSpec
from edl.cloudformation.render import parse_template
from edl.cloudformation.stack_manager import StackManager

log = logging.getLogger(__name__)

ROLE_TYPE = "AWS::IAM::Role"


@dataclass(frozen=True)
class RoleTrust:
    """A role and the trust policy its stack gives it."""

    role_name: str
    document: dict


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return {node["Ref"]}
        return {ref for value in node.values() for ref in _refs(value)}
    if isinstance(node, list):
        return {ref for value in node for ref in _refs(value)}
    return set()


def _resolve(node: Any, values: dict[str, Any], stack: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            if node["Ref"] not in values:
                raise ValueError(f"{stack}: a role's trust policy refers to {node['Ref']}, "
                                 "which is no parameter")
            return values[node["Ref"]]
        return {key: _resolve(value, values, stack) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, values, stack) for value in node]
    return node


def role_trusts(template: dict, parameters: dict[str, str], stack: str = "") -> list[RoleTrust]:
    """The roles of a parsed template with the trust policies the `parameters` give them (a
    CommaDelimitedList parameter is a list, as CloudFormation passes it)."""
    types = {name: spec.get("Type") for name, spec in template.get("Parameters", {}).items()}
    values: dict[str, Any] = {
        name: value.split(",") if types.get(name) == "CommaDelimitedList" else value
        for name, value in parameters.items()}
    trusts = []
    for resource in template["Resources"].values():
        if resource["Type"] != ROLE_TYPE:
            continue
        props = resource["Properties"]
        trusts.append(RoleTrust(_resolve(props["RoleName"], values, stack),
                                _resolve(props["AssumeRolePolicyDocument"], values, stack)))
    return trusts


def _as_document(value: Any) -> dict:
    return json.loads(value) if isinstance(value, str) else value


class LocalTrustRefresh:
    """Sets, through IAM, the trust policy of every role of a plan whose live trust policy is
    not the one its stack makes (the local instance only: see the module docstring)."""

    def __init__(self, manager: StackManager, iam) -> None:
        self.manager = manager
        self.iam = iam

    def refresh(self, plan: Plan) -> list[str]:
        """The roles whose trust policy was set."""
        live = self.manager.live_stacks()
        changed = []
        for planned in plan.stacks:
            template = parse_template(planned.template.body, planned.template.name)
            roles = [r for r in template["Resources"].values() if r["Type"] == ROLE_TYPE]
            if not roles or planned.name not in live:
                continue
            needed = _refs([{k: r["Properties"].get(k) for k in
                             ("RoleName", "AssumeRolePolicyDocument")} for r in roles])
            spec = planned.spec
            only_needed = StackSpec(spec.name, spec.region, spec.template,
                                    tuple((k, v) for k, v in spec.parameters if k in needed))
            parameters = self.manager.resolve(only_needed, live)
            for trust in role_trusts(template, parameters, spec.name):
                if self._set_if_different(trust, spec.name):
                    changed.append(trust.role_name)
        return changed

    def _set_if_different(self, trust: RoleTrust, stack: str) -> bool:
        try:
            role = self.iam.get_role(RoleName=trust.role_name)["Role"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchEntity":
                log.warning("%s - role %s does not exist; its trust policy is not checked",
                            stack, trust.role_name)
                return False
            raise
        if _as_document(role["AssumeRolePolicyDocument"]) == trust.document:
            return False
        log.info("%s - setting the trust policy of %s through IAM (moto ignores a changed "
                 "trust policy in a stack update)", stack, trust.role_name)
        self.iam.update_assume_role_policy(RoleName=trust.role_name,
                                           PolicyDocument=json.dumps(trust.document))
        return True
