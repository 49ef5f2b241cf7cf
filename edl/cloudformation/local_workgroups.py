"""On the local cloud, create the Athena workgroups that moto's CloudFormation skips.

moto creates no `AWS::Athena::WorkGroup` from a template (DESIGN §8), but it implements the
Athena API's CreateWorkGroup and GetWorkGroup, and the local runtime's Athena reads a workgroup's
output location and encryption from there. After `deploy-core` on the local instance,
`LocalWorkGroups` reads every workgroup of the plan's stacks from the rendered template and the
stack's parameters (so the configuration is the template's, byte for byte), and creates it
through the Athena API, or re-creates it where its configuration differs (moto has no
UpdateWorkGroup; a workgroup holds no data). Idempotent: a workgroup as it should be is left
alone. In the cloud CloudFormation creates them; this is never used there.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from edl.cloudformation.local_trust import _resolve
from edl.cloudformation.plan import Plan
from edl.cloudformation.render import parse_template
from edl.cloudformation.stack_manager import StackManager

log = logging.getLogger(__name__)

WORKGROUP_TYPE = "AWS::Athena::WorkGroup"
# CloudFormation passes every parameter as text; the Athena API wants these as numbers.
_NUMBERS = ("BytesScannedCutoffPerQuery",)


def workgroup_inputs(template: dict, parameters: dict[str, str], region: str,
                     account_id: str, stack: str = "") -> list[dict[str, Any]]:
    """CreateWorkGroup's arguments for every workgroup of a parsed template."""
    values = {**parameters, "AWS::AccountId": account_id, "AWS::Region": region}
    inputs = []
    for resource in template["Resources"].values():
        if resource["Type"] != WORKGROUP_TYPE:
            continue
        props = _resolve(resource["Properties"], values, stack)
        configuration = dict(props.get("WorkGroupConfiguration", {}))
        for key in _NUMBERS:
            if key in configuration:
                configuration[key] = int(configuration[key])
        inputs.append({"Name": props["Name"], "Description": props.get("Description", ""),
                       "Configuration": configuration})
    return inputs


class LocalWorkGroups:
    """Creates, through the Athena API, the workgroups a plan's stacks declare (the local
    instance only: see the module docstring)."""

    def __init__(self, manager: StackManager, athena_client) -> None:
        self.manager = manager
        self._athena = athena_client   # region → Athena client

    def ensure(self, plan: Plan) -> list[str]:
        """The workgroups created or re-created."""
        live = self.manager.live_stacks()
        changed = []
        for planned in plan.stacks:
            template = parse_template(planned.template.body, planned.template.name)
            if not any(r["Type"] == WORKGROUP_TYPE for r in template["Resources"].values()):
                continue
            if planned.name not in live:
                continue
            spec = planned.spec
            parameters = self.manager.resolve(spec, live)
            athena = self._athena(spec.region)
            for wanted in workgroup_inputs(template, parameters, spec.region,
                                           self.manager.instance.account_id, spec.name):
                if self._ensure_one(athena, wanted, spec.name):
                    changed.append(wanted["Name"])
        return changed

    def _ensure_one(self, athena, wanted: dict[str, Any], stack: str) -> bool:
        current = _get_work_group(athena, wanted["Name"])
        if current is not None:
            if _covers(current.get("Configuration") or {}, wanted["Configuration"]):
                return False
            log.info("%s - re-creating workgroup %s through Athena: its configuration differs "
                     "(moto has no UpdateWorkGroup)", stack, wanted["Name"])
            athena.delete_work_group(WorkGroup=wanted["Name"], RecursiveDeleteOption=True)
        else:
            log.info("%s - creating workgroup %s through Athena (moto's CloudFormation skips "
                     "AWS::Athena::WorkGroup)", stack, wanted["Name"])
        athena.create_work_group(**wanted)
        return True


def _covers(current: Any, wanted: Any) -> bool:
    """Whether `current` holds every setting of `wanted` (Athena adds defaults of its own,
    such as `EnableMinimumEncryptionConfiguration` or the effective engine version)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            key in current and _covers(current[key], value) for key, value in wanted.items())
    return bool(current == wanted)


def _get_work_group(athena, name: str) -> dict[str, Any] | None:
    try:
        # moto answers an unknown workgroup with `{"WorkGroup": null}`, AWS with an error
        return athena.get_work_group(WorkGroup=name).get("WorkGroup") or None
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "InvalidRequestException":
            return None
        raise
