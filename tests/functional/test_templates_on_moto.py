"""The rendered templates deploy on moto and make what they promise, under EDL's real names.

Each test renders the templates of the `local` instance, creates the stacks in us-east-1 with the
parameters the stack manager passes (names from `edl.naming`), and checks the result through the
AWS APIs a user would call.
"""

from __future__ import annotations

import json

import boto3
import pytest

from edl import naming
from edl.cloudformation.components.core import query_rights
from edl.cloudformation.render import render_template, template_context
from edl.config import load_config

CONFIG = load_config()
LOCAL = CONFIG.instance("local")
PREFIX = CONFIG.bucket_prefix
REGION = "us-east-1"
ADMIN = LOCAL.platform_admin_arn
# Whom the brokered roles trust, as deploy-core and deploy-dataset pass it.
BROKER_TRUST = [*naming.broker_principals(LOCAL.name, LOCAL.account_id, local=True), ADMIN]
TRUST_ACTIONS = ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]

# moto's CloudFormation skips AWS::S3::BucketPolicy (DESIGN §8); the templates keep it for AWS.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy")


@pytest.fixture
def cfn(aws):
    return boto3.client("cloudformation", region_name=REGION)


def body(name: str) -> str:
    return render_template(name, template_context(CONFIG, LOCAL)).body


def parameters(**values) -> list[dict]:
    """CloudFormation parameters; lists become CommaDelimitedList values."""
    return [{"ParameterKey": k, "ParameterValue": ",".join(v) if isinstance(v, list) else v}
            for k, v in values.items()]


def create_stack(cfn, stack: str, template: str, **values) -> dict[str, str]:
    """Create a stack, assert it completed, return its outputs."""
    cfn.create_stack(StackName=stack, TemplateBody=body(template), Parameters=parameters(**values))
    (described,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def artifacts_params() -> dict:
    return dict(ArtifactsBucketName=naming.artifacts_bucket(PREFIX, LOCAL.name, REGION),
                LogsBucketName=naming.logs_bucket(PREFIX, LOCAL.name, REGION))


def buckets_params(tier: str) -> dict:
    return dict(Tier=tier,
                DataBucketName=naming.data_bucket(PREFIX, LOCAL.name, tier, REGION),
                DropBucketName=naming.drop_bucket(PREFIX, LOCAL.name, tier, REGION),
                LogsBucketName=naming.logs_bucket(PREFIX, LOCAL.name, REGION),
                KeyAliasName=naming.kms_alias(LOCAL.name, tier))


def key_arn(key_id: str, region: str = REGION) -> str:
    return f"arn:aws:kms:{region}:{LOCAL.account_id}:key/{key_id}"


def kms_key_of(bucket: str) -> dict:
    s3 = boto3.client("s3", region_name=REGION)
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    return rule["ApplyServerSideEncryptionByDefault"]


def test_artifacts_stack_makes_both_buckets(cfn):
    outputs = create_stack(cfn, "edl-local-artifacts-us-east-1", "artifacts.yaml",
                           **artifacts_params())
    expected = artifacts_params()
    assert outputs == {"Fingerprint": "", "ArtifactsBucket": expected["ArtifactsBucketName"],
                       "LogsBucket": expected["LogsBucketName"]}
    s3 = boto3.client("s3", region_name=REGION)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert names == set(expected.values())
    assert kms_key_of(expected["LogsBucketName"]) == {"SSEAlgorithm": "AES256"}


def test_buckets_stack_encrypts_data_and_drop_buckets_with_the_tier_key(cfn):
    create_stack(cfn, "edl-local-artifacts-us-east-1", "artifacts.yaml", **artifacts_params())
    params = buckets_params("restricted")
    outputs = create_stack(cfn, naming.stack_name("local", "buckets", "restricted", REGION),
                           "buckets.yaml", EdlFingerprint="abc123", **params)
    assert outputs["Fingerprint"] == "abc123"
    assert outputs["DataBucket"] == params["DataBucketName"]
    assert outputs["DropBucket"] == params["DropBucketName"]
    assert outputs["KeyAlias"] == "alias/edl-local-restricted"

    kms = boto3.client("kms", region_name=REGION)
    key = kms.describe_key(KeyId="alias/edl-local-restricted")["KeyMetadata"]
    assert key["KeyId"] == outputs["KeyId"]
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{LOCAL.account_id}:root"}
    for bucket in (params["DataBucketName"], params["DropBucketName"]):
        assert kms_key_of(bucket) == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}


def test_buckets_stack_deploys_through_a_change_set(cfn):
    params = buckets_params("internal")
    stack = naming.stack_name("local", "buckets", "internal", REGION)
    change_set = cfn.create_change_set(
        StackName=stack, ChangeSetName="edl-create", ChangeSetType="CREATE",
        TemplateBody=body("buckets.yaml"), Parameters=parameters(**params))
    described = cfn.describe_change_set(ChangeSetName=change_set["Id"])
    planned = {c["ResourceChange"]["LogicalResourceId"] for c in described["Changes"]}
    assert {"Key", "KeyAlias", "DataBucket", "DropBucket"} <= planned

    cfn.execute_change_set(ChangeSetName=change_set["Id"])
    (done,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    assert done["StackStatus"] == "CREATE_COMPLETE"
    assert kms_key_of(params["DataBucketName"])["SSEAlgorithm"] == "aws:kms"
    assert kms_key_of(params["DropBucketName"])["SSEAlgorithm"] == "aws:kms"


def test_metadata_stack_makes_the_tables_with_their_keys(cfn):
    outputs = create_stack(cfn, naming.stack_name("local", "metadata"), "metadata.yaml",
                           TablePrefix=f"edl-{LOCAL.name}")
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    keys = {}
    for table in naming.METADATA_TABLES:
        name = naming.table_name(LOCAL.name, table)
        assert outputs[f"{table.capitalize()}Table"] == name
        described = dynamodb.describe_table(TableName=name)["Table"]
        keys[table] = [(k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]]
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert keys == {
        "datasets": [("dataset", "HASH")],
        "updates": [("dataset", "HASH"), ("update_id", "RANGE")],
        "grants": [("dataset", "HASH"), ("grant_id", "RANGE")],
        "audit": [("subject", "HASH"), ("event_id", "RANGE")],
        "jobs": [("job_id", "HASH")],
        "pipelines": [("pipeline", "HASH")],
        "lambdas": [("name", "HASH")],
    }
    grants = dynamodb.describe_table(TableName=naming.table_name(LOCAL.name, "grants"))["Table"]
    (index,) = grants["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-principal"
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
        ("principal", "HASH"), ("dataset", "RANGE")]


def policy_documents(role: str) -> dict[str, dict]:
    iam = boto3.client("iam")
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    return {n: iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"] for n in names}


def allowed(document: dict, effect: str = "Allow") -> dict[str, set[str]]:
    """action -> the resources a policy document allows (or denies) it on."""
    result: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        if statement["Effect"] != effect:
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [
            statement["Resource"]]
        for action in actions:
            result.setdefault(action, set()).update(resources)
    return result


def acl_arns(tier: str, object_suffix: str) -> dict[str, list[str]]:
    """The ARNs the stack manager passes: the tier's bucket and key in every region."""
    buckets = [naming.data_bucket(PREFIX, LOCAL.name, tier, region) for region in LOCAL.regions]
    return dict(BucketArns=[f"arn:aws:s3:::{b}" for b in buckets],
                ObjectArns=[f"arn:aws:s3:::{b}/{object_suffix}" for b in buckets],
                KeyArns=[key_arn(f"{tier}-key-{region}", region) for region in LOCAL.regions])


def query_arns(tier: str, dataset: str) -> dict:
    """The query parameters the components pass, as the stack takes them (lists)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in query_rights(CONFIG, LOCAL, tier, dataset)}


def query_allowed(query: dict, keys: list[str]) -> dict[str, set[str]]:
    """What the query parameters allow a role: the tier's workgroups, the catalog ("*" on the
    local cloud), the tier's prefix of the results buckets, its key to encrypt results."""
    groups, catalog = set(query["WorkGroupArns"]), set(query["CatalogResourceArns"])
    results, objects = set(query["ResultsBucketArns"]), set(query["ResultsObjectArns"])
    rights: dict[str, set[str]] = {f"athena:{a}": groups for a in (
        "StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution",
        "ListQueryExecutions", "GetWorkGroup")}
    rights.update({f"glue:{a}": catalog for a in ("GetDatabase", "GetDatabases", "GetTable",
                                                  "GetTables", "GetPartition", "GetPartitions")})
    rights.update({"s3:GetBucketLocation": results, "s3:ListBucket": results,
                   "s3:GetObject": objects, "s3:PutObject": objects,
                   "s3:AbortMultipartUpload": objects, "s3:ListMultipartUploadParts": objects,
                   "kms:GenerateDataKey": set(keys)})
    return rights


def merged(*maps: dict[str, set[str]]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for rights in maps:
        for action, resources in rights.items():
            result.setdefault(action, set()).update(resources)
    return result


def test_default_acls_role_reads_every_internal_bucket(cfn):
    role = naming.default_reader_role(LOCAL.name)
    arns = acl_arns("internal", "*")
    working = [f"{b}/_*" for b in arns["BucketArns"]]
    outputs = create_stack(cfn, naming.stack_name("local", "default-acls"), "default_acls.yaml",
                           RoleName=role, TrustedPrincipalArns=BROKER_TRUST,
                           WorkingAreaObjectArns=working, **arns,
                           **query_arns("internal", "*"))
    assert outputs["Role"] == role
    iam = boto3.client("iam")
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"AWS": BROKER_TRUST}
    assert statement["Action"] == TRUST_ACTIONS
    (document,) = policy_documents(role).values()
    assert allowed(document) == merged({
        "s3:GetObject": set(arns["ObjectArns"]),
        "s3:ListBucket": set(arns["BucketArns"]),
        "s3:GetBucketLocation": set(arns["BucketArns"]),
        "kms:Decrypt": set(arns["KeyArns"]),
        "kms:DescribeKey": set(arns["KeyArns"]),
    }, query_allowed(query_arns("internal", "*"), arns["KeyArns"]))
    assert allowed(document, "Deny") == {"s3:GetObject": set(working)}


def test_folder_acls_roles_reach_exactly_the_dataset_prefixes(cfn):
    dataset = "clinical_trials"
    read_role = naming.dataset_role(LOCAL.name, dataset, "read")
    write_role = naming.dataset_role(LOCAL.name, dataset, "write")
    arns = acl_arns("restricted", f"{dataset}/*")
    drops = [f"arn:aws:s3:::{naming.drop_bucket(PREFIX, LOCAL.name, 'restricted', r)}"
             for r in LOCAL.regions]
    drop_areas = [f"{b}/{area}" for b in drops
                  for area in (f"{dataset}/*", f"uploads/{dataset}/*")]
    outputs = create_stack(cfn, naming.stack_name("local", "dataset", dataset), "folder_acls.yaml",
                           Dataset=dataset, ReadRoleName=read_role, WriteRoleName=write_role,
                           TrustedPrincipalArns=BROKER_TRUST, DropBucketArns=drops,
                           DropObjectArns=drop_areas, **arns,
                           **query_arns("restricted", dataset))
    assert outputs["ReadRole"] == read_role and outputs["WriteRole"] == write_role
    for role in (read_role, write_role):
        (trust,) = boto3.client("iam").get_role(RoleName=role)["Role"][
            "AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"AWS": BROKER_TRUST} and trust["Action"] == TRUST_ACTIONS

    objects, buckets, keys = (set(arns[k]) for k in ("ObjectArns", "BucketArns", "KeyArns"))
    assert objects == {f"arn:aws:s3:::{PREFIX}-local-restricted-{r}/clinical_trials/*"
                       for r in ("us-east-1", "eu-west-1")}
    query = query_allowed(query_arns("restricted", dataset), arns["KeyArns"])
    expected = {
        read_role: merged({"s3:GetObject": objects, "s3:ListBucket": buckets,
                           "s3:GetBucketLocation": buckets,
                           "kms:Decrypt": keys, "kms:DescribeKey": keys}, query),
        # "write" is "may ingest": files go to the drop areas, never into the data bucket
        write_role: {"s3:GetObject": objects, "s3:PutObject": set(drop_areas),
                     "s3:AbortMultipartUpload": set(drop_areas),
                     "s3:ListBucket": buckets | set(drops),
                     "kms:Decrypt": keys, "kms:DescribeKey": keys,
                     "kms:GenerateDataKey": keys, "kms:Encrypt": keys},
    }
    expected[write_role] = merged(expected[write_role], query, {"s3:GetBucketLocation": buckets})
    for role, rights in expected.items():
        documents = policy_documents(role)
        assert len(documents) == 1, f"{role} should have exactly one attached policy"
        (document,) = documents.values()
        assert allowed(document) == rights
        listing = [s for s in document["Statement"] if s["Action"] == "s3:ListBucket"
                   and s["Resource"] == sorted(buckets, key=arns["BucketArns"].index)]
        assert [s["Condition"] for s in listing] == [
            {"StringLike": {"s3:prefix": ["clinical_trials/*", "clinical_trials/"]}}]
        assert "s3:DeleteObject" not in json.dumps(document)
