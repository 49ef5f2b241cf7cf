"""Who calls, and whether they may: the caller from API Gateway's `requestContext.identity`, and
`authorize`, the one authorization check of the lake's own endpoints (the grant endpoints apply
the tier policy, `edl.utils.tier_policy`, on top of it).

Who a caller is (`Caller.person`, `Caller.principal`): an IAM user is its user name and its ARN;
a session of a role listed in `identity.person_session_roles` (account_config.yaml, e.g. SSO's
`AWSReservedSSO_*`) is the session's name and the session's ARN; any other caller is no person,
known by its ARN only (grants are for people)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from edl.api_config import Endpoint
from edl.config import Instance, get_config
from edl.core_resources.rest_api.errors import Forbidden
from edl.utils.grants import GrantStore
from edl.utils.metadata import DatasetRecord
from edl.utils.tier_policy import Actor


@dataclass(frozen=True)
class Caller:
    """Who signed the request, as API Gateway's IAM authorization saw it."""

    arn: str
    account_id: str
    access_key: str = ""
    caller_id: str = ""
    # Role name patterns whose sessions name a person; None: the lake config's.
    person_roles: tuple[str, ...] | None = None

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

    @property
    def person(self) -> str | None:
        """The person calling: an IAM user's name, or the session name of a role whose
        sessions name people (`identity.person_session_roles`); None for anyone else."""
        if self.kind == "user":
            return self.user_name
        if self.kind == "assumed-role" and self.role_name:
            roles = self.person_roles
            if roles is None:
                roles = get_config().person_session_roles
            if any(fnmatch.fnmatchcase(self.role_name, pattern) for pattern in roles):
                return self.arn.rsplit("/", 1)[-1]
        return None

    @property
    def principal(self) -> str:
        """The ARN a grant names as its grantee: the caller's ARN as it presents it."""
        return self.arn

    def actor(self, instance: Instance) -> Actor:
        """The caller as the tier policy sees them."""
        return Actor(principal=self.principal, person=self.person,
                     is_admin=self.is_principal(instance.platform_admin_arn))

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
              dataset: DatasetRecord | None = None, *, grants: GrantStore | None = None,
              now: float | None = None) -> None:
    """The one authorization check; raises `Forbidden`.

    - authenticated: any signed caller of the instance's own account;
    - dataset_writer: the dataset's owner (a person), the platform admin, or, given `grants`,
      the holder of an active write grant on the dataset (one keyed read, at `now`)."""
    if caller.account_id != instance.account_id:
        raise Forbidden(f"callers from account {caller.account_id} may not use this lake")
    if endpoint.access == "authenticated":
        return
    if endpoint.access == "dataset_writer":
        if dataset is None:
            raise AssertionError(f"{endpoint.name}: dataset_writer needs the dataset's record")
        if caller.is_principal(instance.platform_admin_arn):
            return
        if caller.person is not None and caller.person == dataset.owner:
            return
        if grants is not None and grants.active_grant(
                dataset.dataset, caller.principal, "write",
                grants.clock() if now is None else now) is not None:
            return
        raise Forbidden(f"{caller.arn} may not write dataset {dataset.dataset!r} (only its "
                        f"owner {dataset.owner!r}, a platform admin or the holder of a write "
                        f"grant may; ask with: edl-api grant request {dataset.dataset} "
                        "--level write)")
    raise AssertionError(f"unknown access rule {endpoint.access!r}")


def authorized_actor(endpoint: Endpoint, caller: Caller, instance: Instance) -> Actor:
    """`authorize` an endpoint open to every signed caller, and the caller as the tier policy
    sees them: where the grant, credential and audit handlers start."""
    authorize(endpoint, caller, instance)
    return caller.actor(instance)
