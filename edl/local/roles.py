"""Sessions of the roles the local runtime's services act as.

In AWS a Lambda function runs as its role and a Glue job as its own; on the local cloud the runtime
assumes the same roles as the platform admin (their stacks trust the admin), so the handlers and
jobs have exactly the rights they have in AWS. Until a role's stack is deployed the runtime falls
back to the privileged CloudFormation role - with a warning, and it looks for the real role again
every `recheck_seconds`, so deploying the stack takes effect without a restart.

Everything is lazy: the runtime starts before `control.start()` bootstraps the users, so the
admin's keys do not exist yet when the services start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.config import Config
from botocore.exceptions import ClientError

from edl import naming
from edl.config import Instance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoleChoice:
    """The role a service acts as now, and whether it is the one it should be."""

    role_arn: str
    preferred: bool


class RoleResolver:
    """Picks the role `role_name` if it exists, else the instance's CloudFormation role."""

    def __init__(self, instance: Instance, role_name: str, *, purpose: str,
                 recheck_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.instance = instance
        self.role_name = role_name
        self.purpose = purpose
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._choice: RoleChoice | None = None
        self._checked_at = 0.0

    @property
    def role_arn(self) -> str:
        return naming.role_arn(self.instance.account_id, self.role_name)

    def admin_sessions(self):
        """The platform admin's `AwsSessions` (boto3 is imported on first use, not at start)."""
        from edl.aws import LOCAL_ADMIN_PROFILE, AwsSessions, Identity

        return AwsSessions(self.instance, Identity(LOCAL_ADMIN_PROFILE))

    def choose(self) -> tuple[RoleChoice, bool]:
        """(the role to act as, whether that choice changed since the last call)."""
        with self._lock:
            current = self._choice
            if current is not None and (current.preferred or
                                        self.clock() - self._checked_at < self.recheck_seconds):
                return current, False
            self._checked_at = self.clock()
            problem = self._unusable_because()
            choice = (RoleChoice(self.role_arn, True) if problem is None
                      else RoleChoice(self.instance.cfn_role_arn, False))
            if problem is not None and (current is None or current.preferred):
                log.warning("%s - %s; acting as the CloudFormation role %s until that changes",
                            self.purpose, problem, self.instance.cfn_role_arn)
            elif choice.preferred:
                log.info("%s - acting as role %s", self.purpose, self.role_arn)
            self._choice = choice
            return choice, choice != current

    def _unusable_because(self) -> str | None:
        """Why the role cannot be used now (None: it can). It must exist - moto hands out
        credentials for roles that do not - and the admin must be able to assume it."""
        sessions = self.admin_sessions()
        try:
            sessions.client("iam").get_role(RoleName=self.role_name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchEntity":
                return f"role {self.role_name} does not exist (deploy-core not run yet?)"
            raise
        sts = sessions.user_session().client(
            "sts", region_name=self.instance.default_region, endpoint_url=sessions.endpoint_url,
            config=sessions.client_config.merge(Config(retries={"max_attempts": 1})))
        try:
            sts.assume_role(RoleArn=self.role_arn, RoleSessionName=f"edl-{self.purpose}-check")
        except Exception as exc:  # noqa: BLE001 - botocore's ResponseParserError is no BotoCoreError
            # moto answers HTTP 500 for a trust policy with a statement that names only a
            # Service principal; the template must put Service and AWS in one statement.
            return f"the platform admin cannot assume {self.role_name} ({exc})"
        return None



