"""Bootstrap: what an account team creates in a real account, created on a fresh local cloud.

Run once by `control.start()` against a new moto endpoint while IAM enforcement is still off:

- the privileged CloudFormation role (the name in the instance's `cfn_role_arn`), trusting exactly
  the platform admin's ARN, with a managed policy that allows everything - it is the deployer;
- the platform admin user and the demo users `alice`, `bob` and `carol`, each with an access key,
  all in the group `edl-users`, whose one managed policy gives them read-only control-plane rights
  - no data, and no `sts:AssumeRole`: users obtain a dataset's role only from the credential
  broker (the REST API), after a grant (DESIGN §5);
- the platform admin's own policy, `sts:AssumeRole` on any role (whose trust policy still
  decides): it deploys through the CloudFormation role, the local runtime acts as the service
  roles through it, and it is the break-glass way into a dataset's roles;

and then switches enforcement on, so from here every call is authorised as AWS would (DESIGN §5).
On the local runtime that switch needs the runtime's control-API secret (`control_api.py`), so no
other process can switch enforcement off again.
"""

from __future__ import annotations

import json
import logging
import urllib.error
from dataclasses import dataclass

from botocore.config import Config

from edl.aws import LOCAL_ADMIN_PROFILE, boto3_session
from edl.config import Instance
from edl.errors import LocalCloudError
from edl.local.control_api import call_control_api

DEMO_USERS = ("alice", "bob", "carol")
USERS_GROUP = "edl-users"
USER_POLICY = "edl-user-read-only"
ADMIN_POLICY = "edl-platform-admin-assume-roles"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalUser:
    profile: str
    arn: str
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class BootstrapResult:
    users: tuple[LocalUser, ...]
    cfn_role_arn: str

    def summary(self) -> dict:
        """What the state file records (no secrets)."""
        return {"users": [user.profile for user in self.users], "cfn_role_arn": self.cfn_role_arn}


def _split_iam_arn(arn: str, kind: str) -> tuple[str, str]:
    """`arn:aws:iam::123456789012:user/ops/admin` -> ("/ops/", "admin")."""
    resource = arn.split(":", 5)[5]
    head, _, rest = resource.partition("/")
    if head != kind or not rest:
        raise LocalCloudError(f"{arn} is not an IAM {kind} ARN",
                              hint="the local instance needs an IAM " + kind + " here "
                              "(edl/core_resources/config/account_config.yaml)")
    path, _, name = rest.rpartition("/")
    return (f"/{path}/" if path else "/"), name


def user_read_only_policy() -> dict:
    """Read the control plane and the lake's metadata; write and read no data, assume no role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadControlPlane",
                "Effect": "Allow",
                "Action": [
                    "cloudformation:Describe*", "cloudformation:List*", "cloudformation:Get*",
                    "iam:Get*", "iam:List*",
                    "kms:Describe*", "kms:List*",
                    "s3:ListAllMyBuckets", "s3:GetBucketLocation", "s3:GetBucket*",
                    "s3:GetEncryptionConfiguration",
                    "dynamodb:Describe*", "dynamodb:List*",
                    "glue:Get*",
                    "sts:GetCallerIdentity",
                ],
                "Resource": "*",
            },
            {
                # The lake's metadata tables are readable by every authenticated user. moto
                # authorises DynamoDB calls against the resource "*" (it computes no table ARN),
                # so a statement scoped to `table/edl-*` would deny every read here; the local
                # account holds no other tables.
                "Sid": "ReadLakeMetadata",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan",
                           "dynamodb:BatchGetItem"],
                "Resource": "*",
            },
        ],
    }


def admin_assume_roles_policy() -> dict:
    """The platform admin may assume roles; each role's trust policy decides which (the
    CloudFormation role, the service roles, and - break-glass - the dataset roles)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "AssumeRolesThatTrustTheAdmin", "Effect": "Allow",
                       "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                       "Resource": "*"}],
    }


def cfn_role_trust_policy(admin_arn: str) -> dict:
    # A list, not a string: moto matches a string principal as a substring of the caller's ARN.
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": [admin_arn]},
                       "Action": "sts:AssumeRole"}],
    }


DEPLOYER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Deploy", "Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def _iam_client(endpoint_url: str, region: str):
    # Before enforcement moto accepts any key, and no user's key exists yet: the bootstrap is the
    # one caller that cannot come from edl.aws's credentials-file sessions.
    return boto3_session(
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap", region_name=region
    ).client("iam", endpoint_url=endpoint_url,
             config=Config(retries={"mode": "standard", "max_attempts": 3}))


def enable_iam_enforcement(endpoint_url: str, control_secret: str | None = None) -> None:
    """From the next request on, moto authenticates and authorises every call.

    moto reads the body as a number; a form content type makes it answer HTTP 500 (measured).
    The switch is moto's control API: on the local runtime it needs the runtime's secret.
    """
    try:
        call_control_api(endpoint_url, "reset-auth", control_secret, body=b"0",
                         content_type="text/plain")
    except (urllib.error.URLError, OSError) as exc:
        raise LocalCloudError(f"could not switch IAM enforcement on at {endpoint_url}: {exc}") from None


def bootstrap(instance: Instance, endpoint_url: str,
              demo_users: tuple[str, ...] = DEMO_USERS, *,
              control_secret: str | None = None) -> BootstrapResult:
    """Create the CloudFormation role and the users on a fresh endpoint, then enforce IAM.

    `control_secret` is the local runtime's secret for moto's control API (none for a plain moto
    server)."""
    iam = _iam_client(endpoint_url, instance.default_region)
    admin_path, admin_name = _split_iam_arn(instance.platform_admin_arn, "user")
    role_path, role_name = _split_iam_arn(instance.cfn_role_arn, "role")

    log.info("bootstrap - group %s with policy %s", USERS_GROUP, USER_POLICY)
    user_policy_arn = iam.create_policy(
        PolicyName=USER_POLICY,
        PolicyDocument=json.dumps(user_read_only_policy()),
        Description="EDL users: read the control plane and the lake's metadata",
    )["Policy"]["Arn"]
    iam.create_group(GroupName=USERS_GROUP)
    iam.attach_group_policy(GroupName=USERS_GROUP, PolicyArn=user_policy_arn)

    users = []
    accounts = [(LOCAL_ADMIN_PROFILE, admin_path, admin_name)]
    accounts += [(name, "/", name) for name in demo_users]
    for profile, path, name in accounts:
        log.info("bootstrap - user %s", name)
        arn = iam.create_user(Path=path, UserName=name)["User"]["Arn"]
        iam.add_user_to_group(GroupName=USERS_GROUP, UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users.append(LocalUser(profile, arn, key["AccessKeyId"], key["SecretAccessKey"]))
    if users[0].arn != instance.platform_admin_arn:
        raise LocalCloudError(
            f"the local cloud made the platform admin {users[0].arn}, "
            f"not {instance.platform_admin_arn}",
            hint="the local instance's account_id must be the local cloud's account",
        )
    log.info("bootstrap - policy %s for %s", ADMIN_POLICY, admin_name)
    admin_policy_arn = iam.create_policy(
        PolicyName=ADMIN_POLICY, PolicyDocument=json.dumps(admin_assume_roles_policy()),
        Description="EDL's platform admin: assume the roles that trust it",
    )["Policy"]["Arn"]
    iam.attach_user_policy(UserName=admin_name, PolicyArn=admin_policy_arn)

    log.info("bootstrap - role %s", role_name)
    role_arn = iam.create_role(
        Path=role_path, RoleName=role_name,
        AssumeRolePolicyDocument=json.dumps(cfn_role_trust_policy(instance.platform_admin_arn)),
        Description="EDL's privileged CloudFormation role: the only principal that deploys",
    )["Role"]["Arn"]
    deployer_arn = iam.create_policy(
        PolicyName=f"{role_name}-deployer", PolicyDocument=json.dumps(DEPLOYER_POLICY),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role_name, PolicyArn=deployer_arn)

    enable_iam_enforcement(endpoint_url, control_secret)
    log.info("bootstrap - IAM enforcement on at %s", endpoint_url)
    return BootstrapResult(users=tuple(users), cfn_role_arn=role_arn)
