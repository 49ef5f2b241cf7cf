"""What the rendered templates promise, checked on the templates themselves.

moto ignores bucket versioning, public access blocks, bucket policies and table encryption
(DESIGN §8), so these properties are checked here, on every instance's rendered and parsed
templates, rather than on the emulator.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from edl import naming
from edl.cloudformation.render import (parse_template, render_template, template_context,
                                       template_names)
from edl.config import load_config

CONFIG = load_config()
INSTANCES = sorted(CONFIG.instances)
# Resource types moto's CloudFormation creates; a GetAtt on any other type breaks the stack there.
# (RestApi.RootResourceId, Function.Arn and Role.Arn measured in test_rest_api_stack.py.)
GETATT_SAFE_TYPES = {"AWS::KMS::Key", "AWS::ApiGateway::RestApi", "AWS::Lambda::Function",
                     "AWS::IAM::Role"}


def rendered(instance: str, name: str) -> dict:
    ctx = template_context(CONFIG, CONFIG.instance(instance))
    return parse_template(render_template(name, ctx).body, name)


@pytest.fixture(scope="module", params=INSTANCES)
def instance(request) -> str:
    return request.param


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def policy_of(template: dict, bucket: str) -> dict:
    """The PolicyDocument of the BucketPolicy attached to `bucket` (a logical id)."""
    found = [p["Properties"]["PolicyDocument"]
             for p in resources(template, "AWS::S3::BucketPolicy").values()
             if p["Properties"]["Bucket"] == {"Ref": bucket}]
    assert len(found) == 1, f"{bucket} has {len(found)} bucket policies"
    return found[0]


# --- every template --------------------------------------------------------------------------

@pytest.mark.parametrize("name", template_names())
def test_every_template_has_the_common_contract(instance, name):
    template = rendered(instance, name)
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Description"]
    assert template["Parameters"]["EdlFingerprint"] == {
        "Type": "String", "Default": "",
        "Description": template["Parameters"]["EdlFingerprint"]["Description"],
    }
    outputs = template["Outputs"]
    assert outputs["Fingerprint"]["Value"] == {"Ref": "EdlFingerprint"}
    for key, output in outputs.items():
        assert "Export" not in output, f"{name}: output {key} is exported"
        assert set(output["Value"]) == {"Ref"}, f"{name}: output {key} is not a plain Ref"


@pytest.mark.parametrize("name", template_names())
def test_getatt_only_on_types_moto_creates(instance, name):
    template = rendered(instance, name)
    for node in walk(template):
        if isinstance(node, dict) and "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"][0]
            assert template["Resources"][target]["Type"] in GETATT_SAFE_TYPES, (name, node)


# --- buckets ---------------------------------------------------------------------------------

BUCKET_TEMPLATES = ("artifacts.yaml", "buckets.yaml")


@pytest.mark.parametrize("name", BUCKET_TEMPLATES)
def test_every_bucket_is_versioned_private_owned_and_logged(instance, name):
    template = rendered(instance, name)
    buckets = resources(template, "AWS::S3::Bucket")
    assert len(buckets) == 2
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        }, logical_id
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        if logical_id != "LogsBucket":  # the log bucket does not log into itself
            logging_ = props["LoggingConfiguration"]
            assert logging_["DestinationBucketName"] in ({"Ref": "LogsBucket"},
                                                         {"Ref": "LogsBucketName"})
            name_param = props["BucketName"]["Ref"]
            assert logging_["LogFilePrefix"] == {"Fn::Sub": f"${{{name_param}}}/"}


@pytest.mark.parametrize("name", BUCKET_TEMPLATES)
def test_every_bucket_refuses_requests_without_tls(instance, name):
    template = rendered(instance, name)
    for logical_id, bucket in resources(template, "AWS::S3::Bucket").items():
        name_param = bucket["Properties"]["BucketName"]["Ref"]
        denies = [s for s in policy_of(template, logical_id)["Statement"]
                  if s["Effect"] == "Deny"
                  and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
        assert len(denies) == 1, logical_id
        assert denies[0]["Principal"] == "*" and denies[0]["Action"] == "s3:*"
        assert denies[0]["Resource"] == [
            {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{name_param}}}"},
            {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{name_param}}}/*"},
        ]


def test_data_and_drop_buckets_use_the_tier_key(instance):
    template = rendered(instance, "buckets.yaml")
    for logical_id in ("DataBucket", "DropBucket"):
        props = template["Resources"][logical_id]["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]}}
        assert rule["BucketKeyEnabled"] is True
        other_sse = [s for s in policy_of(template, logical_id)["Statement"]
                     if s["Effect"] == "Deny" and s["Action"] == "s3:PutObject"]
        assert other_sse[0]["Condition"] == {
            "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}
    key = template["Resources"]["Key"]["Properties"]
    assert key["EnableKeyRotation"] is True
    # a JSON string (moto fails DescribeKey on a key whose policy was a mapping)
    policy = json.loads(key["KeyPolicy"]["Fn::Sub"])
    assert policy["Statement"] == [{
        "Sid": "EnableIamPolicies", "Effect": "Allow",
        "Principal": {"AWS": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},
        "Action": "kms:*", "Resource": "*"}]
    assert template["Resources"]["KeyAlias"]["Properties"]["TargetKeyId"] == {"Ref": "Key"}


def test_drop_bucket_forgets_files_after_30_days(instance):
    template = rendered(instance, "buckets.yaml")
    rules = template["Resources"]["DropBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [r["ExpirationInDays"] for r in rules if r["Status"] == "Enabled"] == [30]
    data = template["Resources"]["DataBucket"]["Properties"]
    assert not any("ExpirationInDays" in r for r in data["LifecycleConfiguration"]["Rules"])


def test_logs_bucket_accepts_s3_access_logs_of_this_account_only(instance):
    template = rendered(instance, "artifacts.yaml")
    props = template["Resources"]["LogsBucket"]["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    (allow,) = [s for s in policy_of(template, "LogsBucket")["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow["Action"] == "s3:PutObject"
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_kms_keys_are_tagged_in_the_cloud_and_untagged_locally(instance):
    key = rendered(instance, "buckets.yaml")["Resources"]["Key"]["Properties"]
    if CONFIG.instance(instance).is_local:
        assert "Tags" not in key  # moto answers HTTP 500 to a tagged key
    else:
        tags = {t["Key"]: t["Value"] for t in key["Tags"]}
        assert tags == {"edl:instance": instance, "edl:tier": {"Ref": "Tier"}}


# --- metadata --------------------------------------------------------------------------------

EXPECTED_KEYS = {
    "datasets": [("dataset", "HASH")],
    "updates": [("dataset", "HASH"), ("update_id", "RANGE")],
    "grants": [("dataset", "HASH"), ("grant_id", "RANGE")],
    "audit": [("subject", "HASH"), ("event_id", "RANGE")],
    "jobs": [("job_id", "HASH")],
}


def test_metadata_tables_have_the_documented_keys_and_protection(instance):
    template = rendered(instance, "metadata.yaml")
    tables = resources(template, "AWS::DynamoDB::Table")
    by_suffix = {t["Properties"]["TableName"]["Fn::Sub"].removeprefix("${TablePrefix}-"): t
                 for t in tables.values()}
    assert set(by_suffix) == set(naming.METADATA_TABLES) == set(EXPECTED_KEYS)
    for table, resource in by_suffix.items():
        props = resource["Properties"]
        keys = [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]]
        assert keys == EXPECTED_KEYS[table]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        output = f"{table.capitalize()}Table"
        assert template["Outputs"][output]["Value"] == {"Ref": output}
    (index,) = by_suffix["grants"]["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-principal"
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
        ("principal", "HASH"), ("dataset", "RANGE")]
    assert index["Projection"] == {"ProjectionType": "ALL"}


# --- roles -----------------------------------------------------------------------------------

ROLE_TEMPLATES = ("default_acls.yaml", "folder_acls.yaml")


@pytest.mark.parametrize("name", ROLE_TEMPLATES)
def test_roles_get_their_rights_only_from_attached_policy_resources(instance, name):
    template = rendered(instance, name)
    roles = resources(template, "AWS::IAM::Role")
    assert roles
    for logical_id, role in roles.items():
        props = role["Properties"]
        assert "Policies" not in props, logical_id
        assert "ManagedPolicyArns" not in props, logical_id
        assert props["MaxSessionDuration"] == 3600
        (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"AWS": {"Ref": "TrustedPrincipalArns"}}
        assert trust["Action"] == "sts:AssumeRole"
        attached = [p for p in resources(template, "AWS::IAM::Policy").values()
                    if p["Properties"]["Roles"] == [{"Ref": logical_id}]]
        assert len(attached) == 1, logical_id
    assert not resources(template, "AWS::IAM::ManagedPolicy")


def statements(template: dict, role: str) -> list[dict]:
    (policy,) = [p for p in resources(template, "AWS::IAM::Policy").values()
                 if p["Properties"]["Roles"] == [{"Ref": role}]]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def actions(template: dict, role: str, service: str) -> set[str]:
    return {a for s in statements(template, role) for a in as_list(s["Action"])
            if a.startswith(f"{service}:")}


@pytest.mark.parametrize("role", ["ReadRole", "WriteRole"])
def test_dataset_roles_reach_only_the_dataset_prefixes(instance, role):
    template = rendered(instance, "folder_acls.yaml")
    dataset_prefixes = [{"Fn::Sub": "${Dataset}/*"}, {"Fn::Sub": "${Dataset}/"}]
    for statement in statements(template, role):
        assert statement["Effect"] == "Allow"
        s3_actions = [a for a in as_list(statement["Action"]) if a.startswith("s3:")]
        if not s3_actions:
            assert statement["Resource"] == {"Ref": "KeyArns"}
            continue
        if statement["Resource"] == {"Ref": "ObjectArns"}:  # <bucket>/<dataset>/* per region
            continue
        # the buckets themselves: listing only, and only under the dataset's prefix
        assert statement["Resource"] == {"Ref": "BucketArns"}
        assert s3_actions == ["s3:ListBucket"]
        assert statement["Condition"] == {"StringLike": {"s3:prefix": dataset_prefixes}}
    assert "ObjectArns" in template["Parameters"]


def test_read_role_reads_and_write_role_adds_but_never_deletes(instance):
    template = rendered(instance, "folder_acls.yaml")
    assert actions(template, "ReadRole", "s3") == {"s3:GetObject", "s3:ListBucket"}
    assert actions(template, "ReadRole", "kms") == {"kms:Decrypt", "kms:DescribeKey"}
    assert actions(template, "WriteRole", "s3") == {
        "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload"}
    assert actions(template, "WriteRole", "kms") == {
        "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt"}


def test_default_reader_only_reads(instance):
    template = rendered(instance, "default_acls.yaml")
    assert actions(template, "Role", "s3") == {"s3:GetObject", "s3:ListBucket",
                                               "s3:GetBucketLocation"}
    assert actions(template, "Role", "kms") == {"kms:Decrypt", "kms:DescribeKey"}
    for statement in statements(template, "Role"):
        assert statement["Resource"] in ({"Ref": "ObjectArns"}, {"Ref": "BucketArns"},
                                         {"Ref": "KeyArns"})


# --- the ingest job -------------------------------------------------------------------------------

def test_ingest_job_role_trusts_glue_and_the_admin_and_gets_rights_from_attached_policies(
        instance):
    template = rendered(instance, "ingest_job.yaml")
    (role,) = resources(template, "AWS::IAM::Role").values()
    props = role["Properties"]
    assert "Policies" not in props and "ManagedPolicyArns" not in props
    trust = props["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "glue.amazonaws.com",
                                                "AWS": {"Ref": "TrustedPrincipalArns"}}]
    attached = resources(template, "AWS::IAM::Policy").values()
    assert attached and all(p["Properties"]["Roles"] == [{"Ref": "Role"}] for p in attached)
    granted = {a for p in attached for s in p["Properties"]["PolicyDocument"]["Statement"]
               for a in as_list(s["Action"])}
    assert {"s3:PutObject", "dynamodb:UpdateItem", "glue:CreatePartition", "kms:Decrypt"} <= granted
    # Deleting only objects of data buckets: what a failed update left behind.
    assert [a for a in granted if "Delete" in a] == ["s3:DeleteObject"]
    (deleting,) = [s for p in attached for s in p["Properties"]["PolicyDocument"]["Statement"]
                   if "s3:DeleteObject" in as_list(s["Action"])]
    assert deleting["Resource"] == {"Ref": "DataObjectArns"}


def test_ingest_job_is_never_read_from_outputs_because_moto_skips_glue(instance):
    template = rendered(instance, "ingest_job.yaml")
    (job,) = resources(template, "AWS::Glue::Job").values()
    assert job["Properties"]["Command"]["ScriptLocation"] == {"Ref": "ScriptLocation"}
    assert job["Properties"]["DefaultArguments"]["--extra-py-files"] == {"Ref": "CodeLocation"}
    assert all(set(o["Value"]) == {"Ref"} for o in template["Outputs"].values())
    assert "Job" not in {o["Value"]["Ref"] for o in template["Outputs"].values()}
