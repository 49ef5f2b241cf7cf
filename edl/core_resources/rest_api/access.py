"""Who calls, and whether they may: the caller from API Gateway's `requestContext.identity`, and
`authorize`, the one authorization check (the grants work extends it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edl.api_config import Endpoint
from edl.config import Instance
from edl.core_resources.rest_api.errors import Forbidden
from edl.utils.metadata import DatasetRecord


@dataclass(frozen=True)
class Caller:
    """Who signed the request, as API Gateway's IAM authorization saw it."""

    arn: str
    account_id: str
    access_key: str = ""
    caller_id: str = ""

    @property
    def kind(self) -> str:
        """`user`, `assumed-role`, `role`, `root` … (the ARN's resource type)."""
        resource = self.arn.split(":", 5)[-1]
        return resource.split("/", 1)[0]

    @property
    def user_name(self) -> str | None:
        """The IAM user's name (`arn:…:user/path/alice` → `alice`); None for any other kind of
        principal. A role session name is chosen by whoever assumes the role, so it is never
        taken for a user name."""
        if self.kind != "user":
            return None
        return self.arn.rsplit("/", 1)[-1]

    @property
    def role_name(self) -> str | None:
        if self.kind == "assumed-role":
            return self.arn.split(":", 5)[-1].split("/")[1]
        if self.kind == "role":
            return self.arn.rsplit("/", 1)[-1]
        return None

    def is_principal(self, arn: str) -> bool:
        """Whether the caller is `arn` (an IAM user, or a role through any of its sessions)."""
        if self.arn == arn:
            return True
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[4] != self.account_id:
            return False
        resource = parts[5]
        if resource.startswith("role/") and self.role_name:
            return resource.rsplit("/", 1)[-1] == self.role_name
        return False


def caller_from_event(event: dict) -> Caller:
    identity = (event.get("requestContext") or {}).get("identity") or {}
    arn = identity.get("userArn") or ""
    account = identity.get("accountId") or ""
    if not arn or not account or not re.fullmatch(r"arn:aws[a-z-]*:(iam|sts)::\d{12}:.+", arn):
        raise Forbidden("the request is not signed by a known AWS identity", code="unsigned")
    if arn.split(":")[4] != account:
        raise Forbidden("the request's identity is inconsistent", code="unsigned")
    return Caller(arn=arn, account_id=account, access_key=identity.get("accessKey") or "",
                  caller_id=identity.get("caller") or "")


def authorize(endpoint: Endpoint, caller: Caller, instance: Instance,
              dataset: DatasetRecord | None = None) -> None:
    """The one authorization check; raises `Forbidden`. Grants (a later issue) extend it.

    - authenticated: any signed caller of the instance's own account;
    - dataset_writer: the dataset's owner (an IAM user name) or the platform admin."""
    if caller.account_id != instance.account_id:
        raise Forbidden(f"callers from account {caller.account_id} may not use this lake")
    if endpoint.access == "authenticated":
        return
    if endpoint.access == "dataset_writer":
        if dataset is None:
            raise AssertionError(f"{endpoint.name}: dataset_writer needs the dataset's record")
        if caller.is_principal(instance.platform_admin_arn):
            return
        if caller.user_name is not None and caller.user_name == dataset.owner:
            return
        raise Forbidden(f"{caller.arn} may not write dataset {dataset.dataset!r} "
                        f"(only its owner {dataset.owner!r} or a platform admin may)")
    raise AssertionError(f"unknown access rule {endpoint.access!r}")
