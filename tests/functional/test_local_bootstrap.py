"""Bootstrap of the local cloud, against moto's threaded server in this process.

After the bootstrap IAM enforcement is on, so each test checks what a user would meet: who may
deploy (only the platform admin, through the CloudFormation role), that the demo users read
the control plane and the lake's metadata but no data, and that they assume no role of their
own (they obtain dataset roles from the credential broker), while the platform admin does.
"""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from edl.config import get_config
from edl.local.bootstrap import ADMIN_POLICY, DEMO_USERS, USERS_GROUP, bootstrap
from tests.functional.deploy_helpers import free_port

REGION = "us-east-1"
TEMPLATE = json.dumps({"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}})



def _moto_api(endpoint: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/{path}", data=body, method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@pytest.fixture(scope="module")
def instance():
    return get_config().instance("local")


@pytest.fixture(scope="module")
def bootstrapped(instance, tmp_path_factory):
    """A bootstrapped moto server on an empty moto (the backends are process-wide: another
    module's tables must not be here); afterwards moto's state is reset again."""
    with pytest.MonkeyPatch.context() as mp:
        # No real AWS config or credentials may leak into the clients of this module.
        missing = tmp_path_factory.mktemp("no-aws")
        mp.setenv("AWS_CONFIG_FILE", str(missing / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing / "credentials"))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        _moto_api(endpoint, "reset", b"")
        try:
            yield endpoint, bootstrap(instance, endpoint)
        finally:
            _moto_api(endpoint, "reset-auth", b"inf")  # enforcement is process-wide in moto
            _moto_api(endpoint, "reset", b"")
            server.stop()


@pytest.fixture(scope="module")
def endpoint(bootstrapped):
    return bootstrapped[0]


@pytest.fixture(scope="module")
def result(bootstrapped):
    return bootstrapped[1]


@pytest.fixture(scope="module")
def as_user(endpoint, result):
    keys = {user.profile: user for user in result.users}

    def client(profile: str, service: str):
        user = keys[profile]
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                            aws_access_key_id=user.access_key_id,
                            aws_secret_access_key=user.secret_access_key)
    return client


@pytest.fixture(scope="module")
def as_deployer(as_user, instance, endpoint):
    """Clients of the CloudFormation role, assumed by the platform admin."""
    creds = as_user("admin", "sts").assume_role(
        RoleArn=instance.cfn_role_arn, RoleSessionName="edl-deploy")["Credentials"]

    def client(service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                            aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"])
    return client


@pytest.fixture(scope="module")
def lake_bucket(as_deployer):
    s3 = as_deployer("s3")
    s3.create_bucket(Bucket="sanofi-datalake-local-internal-us-east-1")
    s3.put_object(Bucket="sanofi-datalake-local-internal-us-east-1", Key="trials/raw/1/a.csv",
                  Body=b"id,name\n1,a\n")
    return "sanofi-datalake-local-internal-us-east-1"


@pytest.fixture(scope="module")
def datasets_table(as_deployer):
    dynamodb = as_deployer("dynamodb")
    dynamodb.create_table(
        TableName="edl-local-datasets", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
    )
    dynamodb.put_item(TableName="edl-local-datasets",
                      Item={"name": {"S": "trials"}, "tier": {"S": "internal"}})
    return "edl-local-datasets"


def _denied(call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return caught.value


def test_bootstrap_creates_admin_demo_users_and_the_cfn_role(result, instance, as_user):
    assert [user.profile for user in result.users] == ["admin", *DEMO_USERS]
    assert result.cfn_role_arn == instance.cfn_role_arn
    for user in result.users:
        assert as_user(user.profile, "sts").get_caller_identity()["Arn"] == user.arn
    assert result.users[0].arn == instance.platform_admin_arn
    assert result.summary() == {"users": ["admin", "alice", "bob", "carol"],
                                "cfn_role_arn": instance.cfn_role_arn}


def test_cfn_role_trusts_exactly_the_platform_admin(as_user, instance):
    role = as_user("alice", "iam").get_role(RoleName="edl-cloudformation")["Role"]
    statements = role["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in statements] == [{"AWS": [instance.platform_admin_arn]}]


def test_enforcement_is_on_for_unknown_keys(endpoint):
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint,
                       aws_access_key_id="AKIANOTAUSER", aws_secret_access_key="secret")
    err = _denied(sts.get_caller_identity)
    assert err.response["Error"]["Code"] == "InvalidClientTokenId"


def test_a_user_cannot_deploy_on_their_own(as_user):
    err = _denied(as_user("alice", "cloudformation").create_stack,
                  StackName="alice-stack", TemplateBody=TEMPLATE)
    assert err.response["Error"]["Code"] == "AccessDenied"
    err = _denied(as_user("alice", "s3").create_bucket, Bucket="alice-bucket")
    assert err.response["Error"]["Code"] == "AccessDenied"
    # The platform admin's own rights are read-only too: it deploys through the role.
    err = _denied(as_user("admin", "s3").create_bucket, Bucket="admin-bucket")
    assert err.response["Error"]["Code"] == "AccessDenied"


def test_a_user_neither_writes_nor_reads_objects(as_user, lake_bucket):
    s3 = as_user("alice", "s3")
    err = _denied(s3.put_object, Bucket=lake_bucket, Key="trials/raw/2/b.csv", Body=b"x")
    assert err.response["Error"]["Code"] == "AccessDenied"
    err = _denied(s3.get_object, Bucket=lake_bucket, Key="trials/raw/1/a.csv")
    assert err.response["Error"]["Code"] == "AccessDenied"
    err = _denied(s3.list_objects_v2, Bucket=lake_bucket)
    assert err.response["Error"]["Code"] == "AccessDenied"
    # ... but sees that the bucket exists, and where.
    assert lake_bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "LocationConstraint" in s3.get_bucket_location(Bucket=lake_bucket)


def test_admin_deploys_through_the_cfn_role(as_deployer, as_user):
    as_deployer("s3").create_bucket(Bucket="deployed-by-role")
    assert "deployed-by-role" in [b["Name"] for b in as_user("bob", "s3").list_buckets()["Buckets"]]
    as_deployer("cloudformation").create_stack(StackName="edl-local-demo", TemplateBody=TEMPLATE)
    stacks = as_user("alice", "cloudformation").describe_stacks(StackName="edl-local-demo")
    assert stacks["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


@pytest.mark.parametrize("profile", DEMO_USERS)
def test_only_the_admin_may_assume_the_cfn_role(as_user, instance, profile):
    err = _denied(as_user(profile, "sts").assume_role,
                  RoleArn=instance.cfn_role_arn, RoleSessionName="try-deploy")
    assert err.response["Error"]["Code"] == "AccessDenied"


def test_a_user_reads_the_lake_metadata_but_does_not_change_it(as_user, datasets_table):
    dynamodb = as_user("carol", "dynamodb")
    item = dynamodb.get_item(TableName=datasets_table, Key={"name": {"S": "trials"}})["Item"]
    assert item["tier"] == {"S": "internal"}
    assert dynamodb.scan(TableName=datasets_table)["Count"] == 1
    assert datasets_table in dynamodb.list_tables()["TableNames"]
    # moto answers JSON-protocol services' denials in XML, which botocore cannot parse: the
    # status code is what is left to check.
    _denied(dynamodb.put_item, TableName=datasets_table, Item={"name": {"S": "forged"}})
    _denied(dynamodb.delete_table, TableName=datasets_table)


def test_a_user_cannot_grant_themselves_rights(as_user):
    iam = as_user("alice", "iam")
    err = _denied(iam.attach_user_policy, UserName="alice",
                  PolicyArn="arn:aws:iam::123456789012:policy/edl-cloudformation-deployer")
    assert err.response["Error"]["Code"] == "AccessDenied"
    err = _denied(iam.create_access_key, UserName="admin")
    assert err.response["Error"]["Code"] == "AccessDenied"


def test_users_have_no_sts_assume_role_and_the_admin_has_its_own(as_deployer, instance):
    iam = as_deployer("iam")
    (attached,) = iam.list_attached_group_policies(GroupName=USERS_GROUP)["AttachedPolicies"]
    version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=attached["PolicyArn"],
                                      VersionId=version)["PolicyVersion"]["Document"]
    granted = [a for s in document["Statement"] for a in
               (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert not any(a.startswith("sts:") and a != "sts:GetCallerIdentity" for a in granted)
    own = iam.list_attached_user_policies(UserName="admin")["AttachedPolicies"]
    assert [p["PolicyName"] for p in own] == [ADMIN_POLICY]
    for user in DEMO_USERS:
        assert iam.list_attached_user_policies(UserName=user)["AttachedPolicies"] == []


def test_a_role_that_trusts_a_user_by_name_still_is_not_theirs(as_deployer, as_user, instance):
    """A trust policy alone never hands a role to a user: users have no sts:AssumeRole (the
    broker vends roles); the admin, trusted the same way, may assume it (break-glass)."""
    alice = as_user("alice", "sts").get_caller_identity()["Arn"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": [alice, instance.platform_admin_arn]},
        "Action": "sts:AssumeRole"}]}
    role = as_deployer("iam").create_role(RoleName="edl-local-legacy-read",
                                          AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    err = _denied(as_user("alice", "sts").assume_role, RoleArn=role["Arn"],
                  RoleSessionName="alice")
    assert err.response["Error"]["Code"] == "AccessDenied"
    creds = as_user("admin", "sts").assume_role(RoleArn=role["Arn"],
                                                RoleSessionName="break-glass")["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
