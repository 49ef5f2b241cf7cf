"""Who may obtain a dataset's roles, on a bootstrapped local cloud under IAM enforcement.

The lake is deployed with the real commands (`edl deploy-core`, `edl deploy-dataset`); each test
then tries `sts:AssumeRole` as a user would: a demo user is refused (users have no
`sts:AssumeRole` and no role trusts them), the credential broker - the API role's session, named
as the local runtime names it - obtains the role with the caller as source identity, and so does
the platform admin (break-glass). The last tests show a local cloud holding roles of an older EDL
brought to the new trust by the next deploy, which moto's CloudFormation alone does not do.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from edl import naming
from edl.cloudformation.local_trust import role_trusts
from edl.cloudformation.render import parse_template, render_template, template_context
from edl.config import get_config
from tests.functional.deploy_helpers import edl

DATASET = "trials"
TIER = "sensitive"
REGION = "us-east-1"
ACCOUNT = "123456789012"
DATA_KEY = f"{DATASET}/data/00000000000000000001/part-0.parquet"


def role(name: str) -> str:
    return naming.role_arn(ACCOUNT, name)


READ_ROLE = role(naming.dataset_role("local", DATASET, "read"))
WRITE_ROLE = role(naming.dataset_role("local", DATASET, "write"))
DEFAULT_ROLE = role(naming.default_reader_role("local"))
API_ROLE = role(naming.api_role("local"))
BROKERED = (READ_ROLE, WRITE_ROLE, DEFAULT_ROLE)


def client_of(cloud, creds: dict, service: str):
    return boto3.client(service, endpoint_url=cloud.url, region_name=REGION,
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def data_bucket(tier: str = TIER) -> str:
    return naming.data_bucket(get_config().bucket_prefix, "local", tier, REGION)


@pytest.fixture
def lake(cloud):
    """The core and one sensitive dataset deployed, with one object in the dataset's prefix."""
    assert edl("deploy-core", "--instance", "local") == 0
    assert edl("deploy-dataset", DATASET, "--instance", "local", "--tier", TIER,
               "--owner", "alice") == 0
    cloud.as_deployer("s3").put_object(Bucket=data_bucket(), Key=DATA_KEY, Body=b"rows")
    return cloud


def broker(cloud, session_name: str = naming.API_SESSION_NAME):
    """STS as the broker: the admin's session of the API role, as `LocalApiContext` makes it."""
    creds = cloud.client("sts").assume_role(RoleArn=API_ROLE,
                                            RoleSessionName=session_name)["Credentials"]
    return client_of(cloud, creds, "sts")


def refused(call, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return caught.value.response["Error"]["Code"]


def test_a_user_can_no_longer_assume_a_dataset_role(lake):
    # alice owns the dataset: she too reads through the broker
    for user in ("alice", "bob", "carol"):
        sts = lake.client("sts", user)
        for role_arn in BROKERED:
            assert refused(sts.assume_role, RoleArn=role_arn, RoleSessionName=user) \
                == "AccessDenied", (user, role_arn)


def test_the_broker_assumes_them_with_the_caller_as_source_identity(lake):
    sts = broker(lake)
    for role_arn in BROKERED:
        answer = sts.assume_role(
            RoleArn=role_arn, RoleSessionName="bob", SourceIdentity="bob", DurationSeconds=900,
            Tags=[{"Key": "edl:grant", "Value": "trials.3f9a2c1b7d40"}])
        assert answer["AssumedRoleUser"]["Arn"] == \
            f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.rsplit('/', 1)[1]}/bob"
        # Measured: moto takes SourceIdentity and Tags and ignores them - its answer carries
        # no SourceIdentity (AWS's does) and its trust check asks only for sts:AssumeRole.
        assert "SourceIdentity" not in answer
        identity = client_of(lake, answer["Credentials"], "sts").get_caller_identity()
        assert identity["Arn"] == answer["AssumedRoleUser"]["Arn"]


def test_the_brokers_credentials_read_the_dataset_and_nothing_else(lake):
    creds = broker(lake).assume_role(RoleArn=READ_ROLE, RoleSessionName="bob",
                                     SourceIdentity="bob")["Credentials"]
    s3 = client_of(lake, creds, "s3")
    assert s3.get_object(Bucket=data_bucket(), Key=DATA_KEY)["Body"].read() == b"rows"
    lake.as_deployer("s3").put_object(Bucket=data_bucket("internal"), Key="sales/data/1/p",
                                      Body=b"x")
    assert refused(s3.get_object, Bucket=data_bucket("internal"), Key="sales/data/1/p") \
        == "AccessDenied"


def test_moto_ignores_the_session_policy_the_broker_passes(lake):
    """Measured: a session `Policy` (what the broker passes to end credentials at a grant's
    expiry) is accepted and not evaluated - here it denies everything and the read still works.
    The expiry of such credentials is therefore proven against AWS only."""
    deny_all = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    creds = broker(lake).assume_role(RoleArn=READ_ROLE, RoleSessionName="bob",
                                     SourceIdentity="bob", Policy=json.dumps(deny_all))["Credentials"]
    body = client_of(lake, creds, "s3").get_object(Bucket=data_bucket(), Key=DATA_KEY)["Body"]
    assert body.read() == b"rows"


def test_another_session_of_the_api_role_is_not_the_broker(lake):
    """moto matches trust principals as exact caller ARNs: only the session the runtime makes
    (naming.API_SESSION_NAME) is trusted, not every session of the API role."""
    sts = broker(lake, session_name="someone-else")
    assert refused(sts.assume_role, RoleArn=READ_ROLE, RoleSessionName="intruder") \
        == "AccessDenied"


def test_the_platform_admin_may_assume_them_break_glass_and_the_broker_nothing_else(lake):
    for role_arn in BROKERED:
        creds = lake.client("sts").assume_role(RoleArn=role_arn,
                                               RoleSessionName="break-glass")["Credentials"]
        assert client_of(lake, creds, "sts").get_caller_identity()["Arn"].endswith("/break-glass")
    for other in (lake.instance.cfn_role_arn, role(naming.ingest_job_role("local")), API_ROLE):
        assert refused(broker(lake).assume_role, RoleArn=other, RoleSessionName="intruder") \
            == "AccessDenied", other


# -- a local cloud holding roles of an older EDL --------------------------------------------

ADMIN_ONLY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::123456789012:user/admin"]},
    "Action": "sts:AssumeRole"}]}


def trust_of(cloud, role_name: str) -> dict:
    return cloud.as_deployer("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]


def expected_trust(cloud) -> dict:
    template = parse_template(render_template(
        "folder_acls.yaml", template_context(get_config(), cloud.instance)).body)
    principals = ",".join((*naming.broker_principals("local", ACCOUNT, local=True),
                           cloud.instance.platform_admin_arn))
    (trust, _) = role_trusts(template, {"TrustedPrincipalArns": principals,
                                        "ReadRoleName": "r", "WriteRoleName": "w"})
    return trust.document


def test_moto_ignores_a_trust_policy_changed_by_a_stack_update(lake):
    """Measured: the stack update completes with the new parameters, the role keeps its trust."""
    stack = naming.stack_name("local", "dataset", DATASET)
    cfn = lake.as_deployer("cloudformation")
    (current,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    parameters = [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
                  for p in current["Parameters"] if p["ParameterKey"] != "TrustedPrincipalArns"]
    parameters.append({"ParameterKey": "TrustedPrincipalArns",
                       "ParameterValue": lake.instance.platform_admin_arn})
    cfn.update_stack(StackName=stack, UsePreviousTemplate=True, Parameters=parameters,
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    (updated,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    assert updated["StackStatus"] == "UPDATE_COMPLETE"
    assert trust_of(lake, naming.dataset_role("local", DATASET, "read")) == expected_trust(lake)


def test_the_next_deploy_gives_roles_of_an_older_edl_the_brokers_trust(lake, capsys):
    # What an older EDL left: roles trusting the admin only.
    iam = lake.as_deployer("iam")
    names = [naming.dataset_role("local", DATASET, level) for level in naming.ACCESS_LEVELS]
    names.append(naming.default_reader_role("local"))
    for name in names:
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(ADMIN_ONLY))
    assert refused(broker(lake).assume_role, RoleArn=READ_ROLE, RoleSessionName="bob") \
        == "AccessDenied"

    # The stacks are unchanged, so CloudFormation does nothing; the deploy still sets the trust.
    assert edl("deploy-dataset", DATASET, "--instance", "local", "--tier", TIER,
               "--owner", "alice") == 0
    out = capsys.readouterr().err
    assert "up to date" in out
    for level in naming.ACCESS_LEVELS:
        name = naming.dataset_role("local", DATASET, level)
        assert trust_of(lake, name) == expected_trust(lake)
        assert f"role {name}: trust policy brought up to date" in out
    assert trust_of(lake, naming.default_reader_role("local")) == ADMIN_ONLY  # not in this plan
    broker(lake).assume_role(RoleArn=READ_ROLE, RoleSessionName="bob", SourceIdentity="bob")

    assert edl("deploy-core", "--instance", "local") == 0
    assert trust_of(lake, naming.default_reader_role("local"))["Statement"][0]["Principal"] == \
        expected_trust(lake)["Statement"][0]["Principal"]
    broker(lake).assume_role(RoleArn=DEFAULT_ROLE, RoleSessionName="bob", SourceIdentity="bob")

    # Once in step, a deploy sets nothing.
    capsys.readouterr()
    assert edl("deploy-core", "--instance", "local") == 0
    assert "trust policy brought up to date" not in capsys.readouterr().err
