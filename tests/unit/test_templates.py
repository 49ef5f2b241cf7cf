"""What the rendered templates promise, checked on the templates themselves.

moto ignores bucket versioning, public access blocks, bucket policies and table encryption
(DESIGN §8), so these properties are checked here, on every instance's rendered and parsed
templates, rather than on the emulator.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any

import pytest

from edl import naming
from edl.cloudformation.components.core import core_stacks
from edl.cloudformation.components.dataset import dataset_stacks
from edl.cloudformation.render import (
    parse_template,
    render_template,
    template_context,
    template_names,
)
from edl.config import load_config

CONFIG = load_config()
INSTANCES = sorted(CONFIG.instances)
# Resource types moto's CloudFormation creates; a GetAtt on any other type breaks the stack there.
# (RestApi.RootResourceId, Function.Arn and Role.Arn measured in test_rest_api_stack.py, an
# Events::Rule's Arn in test_lambda_e2e.py, which deploys a project with both kinds of rule.)
GETATT_SAFE_TYPES = {"AWS::KMS::Key", "AWS::ApiGateway::RestApi", "AWS::Lambda::Function",
                     "AWS::IAM::Role", "AWS::Events::Rule"}


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

BUCKET_TEMPLATES = {"artifacts.yaml": 2, "athena.yaml": 1, "buckets.yaml": 2}


@pytest.mark.parametrize("name", sorted(BUCKET_TEMPLATES))
def test_every_bucket_is_versioned_private_owned_and_logged(instance, name):
    template = rendered(instance, name)
    buckets = resources(template, "AWS::S3::Bucket")
    assert len(buckets) == BUCKET_TEMPLATES[name]
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


@pytest.mark.parametrize("name", sorted(BUCKET_TEMPLATES))
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
    "pipelines": [("pipeline", "HASH")],
    "lambdas": [("name", "HASH")],
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
        # the broker assumes with the caller as source identity, and tags the session
        assert trust["Action"] == ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]
        assert "Condition" not in trust
        attached = [p for p in resources(template, "AWS::IAM::Policy").values()
                    if p["Properties"]["Roles"] == [{"Ref": logical_id}]]
        assert len(attached) == 1, logical_id
    assert not resources(template, "AWS::IAM::ManagedPolicy")


def statements(template: dict, role: str) -> list[dict]:
    """Every statement of the policies attached to `role`."""
    return [statement for p in resources(template, "AWS::IAM::Policy").values()
            if p["Properties"]["Roles"] == [{"Ref": role}]
            for statement in p["Properties"]["PolicyDocument"]["Statement"]]


def actions(template: dict, role: str, service: str) -> set[str]:
    return {a for s in statements(template, role) for a in as_list(s["Action"])
            if a.startswith(f"{service}:")}


# --- who may do what: the roles' policies evaluated against real object ARNs --------------------

DATASET, TIER = "clinical_trials", "restricted"


def role_parameters(instance: str, template: str) -> dict[str, list[str]]:
    """The parameters the components give a stack of `template`, as lists of strings (a
    reference to another stack's output shows as `<stack.Output>`)."""
    config, inst = CONFIG, CONFIG.instance(instance)
    specs = core_stacks(config, inst) + dataset_stacks(config, inst, DATASET, TIER)
    spec = next(s for s in specs if s.template == template)
    return {key: [str(v) for v in (value if isinstance(value, tuple) else (value,))]
            for key, value in spec.parameters}


def _resolve(value: Any, parameters: dict[str, list[str]]) -> list[str]:
    if isinstance(value, list):
        return [arn for item in value for arn in _resolve(item, parameters)]
    if isinstance(value, dict) and "Ref" in value:
        return parameters[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for key, values in parameters.items():
            text = text.replace("${" + key + "}", values[0])
        return [text.replace("${AWS::Partition}", "aws")]
    return [value]


def may(instance: str, template: str, role: str, action: str, arn: str) -> bool:
    """What IAM decides for an object action by `role` on `arn` (an explicit Deny wins; the
    roles' conditions are on s3:ListBucket only, so object actions need none)."""
    parameters = role_parameters(instance, template)
    decisions = set()
    for statement in statements(rendered(instance, template), role):
        if action not in as_list(statement["Action"]) or "Condition" in statement:
            continue
        if any(fnmatch.fnmatchcase(arn, pattern)
               for pattern in _resolve(statement["Resource"], parameters)):
            decisions.add(statement["Effect"])
    return decisions == {"Allow"}


def data_object(instance: str, tier: str, path: str) -> str:
    inst = CONFIG.instance(instance)
    bucket = naming.data_bucket(CONFIG.bucket_prefix, inst.name, tier, inst.default_region)
    return f"arn:aws:s3:::{bucket}/{path}"


def drop_object(instance: str, tier: str, path: str) -> str:
    inst = CONFIG.instance(instance)
    bucket = naming.drop_bucket(CONFIG.bucket_prefix, inst.name, tier, inst.default_region)
    return f"arn:aws:s3:::{bucket}/{path}"


USER_FACING = [("folder_acls.yaml", "ReadRole", TIER), ("folder_acls.yaml", "WriteRole", TIER),
               ("default_acls.yaml", "Role", "internal")]


@pytest.mark.parametrize("template, role, tier", USER_FACING)
@pytest.mark.parametrize("area", ["data/00000000000000000001/part-0.parquet",
                                  "raw/00000000000000000001/source.csv"])
def test_no_user_facing_role_can_write_a_datasets_data_or_raw(instance, template, role, tier,
                                                              area):
    arn = data_object(instance, tier, f"{DATASET}/{area}")
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert not may(instance, template, role, action, arn), (role, action, arn)
    # ...while the ingest job, which makes updates, can.
    assert may(instance, "ingest_job.yaml", "Role", "s3:PutObject", arn)


def test_athena_workgroups_are_enforced_encrypted_capped_and_pinned(instance):
    template = rendered(instance, "athena.yaml")
    groups = resources(template, "AWS::Athena::WorkGroup")
    assert sorted(groups) == ["InternalWorkGroup", "RestrictedWorkGroup", "SensitiveWorkGroup"]
    spec = spec_of(instance, "athena.yaml")
    parameters = dict(spec.parameters)
    inst = CONFIG.instance(instance)
    results = naming.athena_results_bucket(CONFIG.bucket_prefix, inst.name, inst.default_region)
    for tier in naming.TIERS:
        props = groups[f"{tier.title()}WorkGroup"]["Properties"]
        config = props["WorkGroupConfiguration"]
        assert parameters[props["Name"]["Ref"]] == f"edl-{tier}" == naming.athena_workgroup(tier)
        assert config["EnforceWorkGroupConfiguration"] is True
        assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
        assert config["BytesScannedCutoffPerQuery"] == {"Ref": "BytesScannedCutoffPerQuery"}
        result = config["ResultConfiguration"]
        assert parameters[result["OutputLocation"]["Ref"]] == f"s3://{results}/{tier}/"
        assert result["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
        # the tier's own key, from its buckets stack
        key = parameters[result["EncryptionConfiguration"]["KmsKey"]["Ref"]]
        assert key.stack == f"edl-{inst.name}-buckets-{tier}-{inst.default_region}"
    assert int(parameters["BytesScannedCutoffPerQuery"]) >= 10_000_000
    # no GetAtt on a workgroup: moto skips the type (the local deploy creates them by API)
    assert not [n for n in walk(template) if isinstance(n, dict) and "Fn::GetAtt" in n]


def test_athena_results_expire(instance):
    template = rendered(instance, "athena.yaml")
    (bucket,) = resources(template, "AWS::S3::Bucket").values()
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == \
        {"Ref": "ResultsExpirationDays"}
    assert int(dict(spec_of(instance, "athena.yaml").parameters)["ResultsExpirationDays"]) > 0


def results_object(instance: str, tier: str, name: str = "0a1b.csv") -> str:
    inst = CONFIG.instance(instance)
    bucket = naming.athena_results_bucket(CONFIG.bucket_prefix, inst.name, inst.default_region)
    return f"arn:aws:s3:::{bucket}/{tier}/{name}"


@pytest.mark.parametrize("template, role, tier", USER_FACING)
def test_user_facing_roles_query_in_their_tier_only(instance, template, role, tier):
    inst = CONFIG.instance(instance)
    region, account = inst.default_region, inst.account_id
    for action in ("athena:StartQueryExecution", "athena:GetQueryResults",
                   "athena:StopQueryExecution", "athena:GetWorkGroup"):
        assert may(instance, template, role, action,
                   naming.athena_workgroup_arn(region, account, tier))
        assert not may(instance, template, role, action,
                       naming.athena_workgroup_arn(region, account, "primary"))
    for action in ("s3:GetObject", "s3:PutObject"):
        assert may(instance, template, role, action, results_object(instance, tier))
        for other in set(naming.TIERS) - {tier}:
            assert not may(instance, template, role, action, results_object(instance, other))
    catalog = (naming.glue_database(inst.name, tier), naming.glue_updates_database(inst.name, tier))
    mine = "*" if role == "Role" else DATASET
    tables = [f"arn:aws:glue:{region}:{account}:table/{d}/{DATASET}" for d in catalog]
    for action in ("glue:GetTable", "glue:GetPartitions"):
        for arn in tables:
            assert may(instance, template, role, action, arn)
        if not inst.is_local:   # moto checks Glue against "*" (DESIGN §8)
            other = f"arn:aws:glue:{region}:{account}:table/{catalog[0]}/other_dataset"
            assert may(instance, template, role, action, other) == (mine == "*")
            elsewhere = f"arn:aws:glue:{region}:{account}:table/edl_{inst.name}_x/{DATASET}"
            assert not may(instance, template, role, action, elsewhere)


@pytest.mark.parametrize("template, role, tier", USER_FACING)
def test_user_facing_roles_read_their_datasets(instance, template, role, tier):
    arn = data_object(instance, tier, f"{DATASET}/data/00000000000000000001/part-0.parquet")
    assert may(instance, template, role, "s3:GetObject", arn)


def test_write_level_means_may_drop_files_for_ingest(instance):
    mine = [drop_object(instance, TIER, f"uploads/{DATASET}/0a1b/trial.csv"),
            drop_object(instance, TIER, f"{DATASET}/2026-01-01/trial.csv")]
    others = [drop_object(instance, TIER, "uploads/other_dataset/0a1b/trial.csv"),
              drop_object(instance, TIER, "other_dataset/trial.csv"),
              drop_object(instance, "internal", f"uploads/{DATASET}/0a1b/trial.csv")]
    for arn in mine:
        assert may(instance, "folder_acls.yaml", "WriteRole", "s3:PutObject", arn), arn
        assert not may(instance, "folder_acls.yaml", "ReadRole", "s3:PutObject", arn), arn
    for arn in others:
        assert not may(instance, "folder_acls.yaml", "WriteRole", "s3:PutObject", arn), arn


@pytest.mark.parametrize("template, role, tier", USER_FACING)
def test_pending_updates_in_the_staging_area_are_unreadable_to_user_facing_roles(
        instance, template, role, tier):
    staged = data_object(instance, tier, f"_edl_staging/{DATASET}/00000000000000000002/p.parquet")
    assert not may(instance, template, role, "s3:GetObject", staged)
    assert may(instance, "ingest_job.yaml", "Role", "s3:GetObject", staged)


def test_no_role_deletes_and_dataset_roles_list_only_their_prefixes(instance):
    template = rendered(instance, "folder_acls.yaml")
    for role in ("ReadRole", "WriteRole"):
        assert "s3:DeleteObject" not in actions(template, role, "s3")
        for statement in statements(template, role):
            if "s3:ListBucket" in as_list(statement["Action"]):
                prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
                # the dataset's prefixes; in the Athena results bucket, the tier's results
                scope = "${ResultsPrefix}" if statement["Resource"] == \
                    {"Ref": "ResultsBucketArns"} else "${Dataset}"
                assert all(scope in p["Fn::Sub"] for p in prefixes), prefixes
    default = rendered(instance, "default_acls.yaml")
    assert actions(default, "Role", "s3") == {
        "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation",
        "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
    # the default role writes only query results, under the internal tier's prefix
    for body, roles in ((default, ("Role",)), (template, ("ReadRole",))):
        for role in roles:
            writing = [st for st in statements(body, role)
                       if "s3:PutObject" in as_list(st["Action"])]
            assert [st["Resource"] for st in writing] == [{"Ref": "ResultsObjectArns"}]


# --- the credential broker ---------------------------------------------------------------------

def spec_of(instance: str, template: str):
    inst = CONFIG.instance(instance)
    specs = core_stacks(CONFIG, inst) + dataset_stacks(CONFIG, inst, DATASET, TIER)
    return next(s for s in specs if s.template == template)


@pytest.mark.parametrize("template", ROLE_TEMPLATES)
def test_brokered_roles_trust_exactly_the_broker_and_the_platform_admin(instance, template):
    inst = CONFIG.instance(instance)
    spec = spec_of(instance, template)
    (trusted,) = [v for k, v in spec.parameters if k == "TrustedPrincipalArns"]
    api_role, *others = trusted
    # The API role's ARN is read from the REST API stack: the role exists before it is trusted.
    assert api_role.stack == naming.stack_name(instance, "rest-api") and api_role.output == "Role"
    assert naming.stack_name(instance, "rest-api") in spec.depends_on
    resolved = (api_role.format.format(naming.api_role(instance)), *others)
    session = f"arn:aws:sts::{inst.account_id}:assumed-role/edl-{instance}-api/edl-api"
    expected = [f"arn:aws:iam::{inst.account_id}:role/edl-{instance}-api"]
    expected += [session] if inst.is_local else []  # moto matches only the exact caller ARN
    assert list(resolved) == [*expected, inst.platform_admin_arn]
    assert resolved == (*naming.broker_principals(instance, inst.account_id, local=inst.is_local),
                        inst.platform_admin_arn)
    # no user is ever named: grants are data, not trust policy entries
    assert not any(":user/" in p for p in resolved[:-1])


def brokered_role(instance: str, dataset: str = DATASET, level: str = "read") -> str:
    return naming.role_arn(CONFIG.instance(instance).account_id,
                           naming.dataset_role(instance, dataset, level))


def other_role(instance: str, name: str) -> str:
    return naming.role_arn(CONFIG.instance(instance).account_id, name)


def test_the_api_role_assumes_exactly_the_brokered_roles(instance):
    inst = CONFIG.instance(instance)
    vended = [brokered_role(instance), brokered_role(instance, level="write"),
              brokered_role(instance, "x" * 63, "write"),  # a name shortened with a hash
              other_role(instance, naming.default_reader_role(instance))]
    not_vended = [other_role(instance, naming.api_role(instance)),
                  other_role(instance, naming.ingest_job_role(instance)),
                  other_role(instance, naming.sweeper(instance)),
                  inst.cfn_role_arn,
                  other_role(instance, naming.dataset_role("zz" + instance[:10], DATASET, "read"))]
    for action in ("sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession",
                   "iam:PutRolePolicy"):
        for arn in vended:
            assert may(instance, "rest_api.yaml", "Role", action, arn), (action, arn)
        for arn in not_vended:
            assert not may(instance, "rest_api.yaml", "Role", action, arn), (action, arn)
    user = f"arn:aws:iam::{inst.account_id}:user/bob"
    assert may(instance, "rest_api.yaml", "Role", "iam:GetUser", user)
    iam_rights = actions(rendered(instance, "rest_api.yaml"), "Role", "iam")
    assert iam_rights == {"iam:GetUser", "iam:PutRolePolicy"}
    assert actions(rendered(instance, "rest_api.yaml"), "Role", "sts") == {
        "sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}


def test_the_api_role_starts_runs_of_the_ingest_job_and_of_its_instances_pipeline_jobs(instance):
    inst = CONFIG.instance(instance)

    def job(name: str) -> str:
        return naming.glue_job_arn(inst.default_region, inst.account_id, name)

    started = [job(naming.ingest_job_name(instance)),
               job(naming.pipeline_job_name(instance, "visits_by_site"))]
    others = [job(naming.pipeline_job_name("zz" + instance[:10], "visits_by_site")),
              job(f"edl-{instance}-other"), job("visits_by_site")]
    for action in ("glue:StartJobRun", "glue:GetJobRun"):
        for arn in started:
            assert may(instance, "rest_api.yaml", "Role", action, arn), (action, arn)
        for arn in others:
            assert not may(instance, "rest_api.yaml", "Role", action, arn), (action, arn)
    assert actions(rendered(instance, "rest_api.yaml"), "Role", "glue") == {
        "glue:StartJobRun", "glue:GetJobRun"}


def table(instance: str, name: str, index: bool = False) -> str:
    inst = CONFIG.instance(instance)
    arn = (f"arn:aws:dynamodb:{inst.default_region}:{inst.account_id}:table/"
           f"{naming.table_name(instance, name)}")
    return f"{arn}/index/by-principal" if index else arn


DYNAMODB_WRITES = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
DYNAMODB_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                    "dynamodb:Scan", *DYNAMODB_WRITES)

# template -> table -> what its role may do there (in the cloud, where ARNs are exact)
TABLE_RIGHTS = {
    "rest_api.yaml": {   # BatchGetItem: the broker reads a dataset and its grant pointers at once
        "datasets": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                     "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "updates": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                    "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "jobs": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan",
                 "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "grants": set(DYNAMODB_ACTIONS),  # DeleteItem: the active pointers
        "audit": {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"},
        "pipelines": {"dynamodb:GetItem"},   # a run's registration; deploy-pipeline writes it
    },
    "ingest_job.yaml": {
        "datasets": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                     "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "updates": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                    "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "jobs": set(), "grants": set(), "audit": set(),
    },
    "sweeper.yaml": {
        "datasets": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:PutItem",
                     "dynamodb:UpdateItem"},
        "updates": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:PutItem",
                    "dynamodb:UpdateItem"},
        "jobs": set(),
        # PutItem: the expired grant over the active one, and the expiry schedule's cursor
        "grants": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:PutItem",
                   "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
        "audit": {"dynamodb:PutItem"},
    },
}


@pytest.mark.parametrize("template", sorted(TABLE_RIGHTS))
def test_each_role_has_its_own_rights_on_each_metadata_table(instance, template):
    if CONFIG.instance(instance).is_local:
        # moto authorises DynamoDB against "*": the local instance passes "*" for every table
        table_params = {k: v for k, v in role_parameters(instance, template).items()
                        if k.endswith("TableArns")}
        assert table_params and all(v == ["*"] for v in table_params.values()), table_params
        return
    for name, rights in TABLE_RIGHTS[template].items():
        granted = {a for a in DYNAMODB_ACTIONS if may(instance, template, "Role", a,
                                                      table(instance, name))}
        assert granted == rights, (template, name)
    # the audit log is append-only for every role: no update, no delete, on the table or an index
    for index in (False, True):
        for action in ("dynamodb:UpdateItem", "dynamodb:DeleteItem"):
            assert not may(instance, template, "Role", action, table(instance, "audit", index))
    # never one right for every table of the instance
    for statement in statements(rendered(instance, template), "Role"):
        for arn in _resolve(statement["Resource"], role_parameters(instance, template)):
            assert not arn.endswith(f"table/edl-{instance}-*"), (template, statement["Sid"])


# --- data is retained -----------------------------------------------------------------------------

RETAINED = {"buckets.yaml": {"Key", "DataBucket", "DropBucket"},
            "artifacts.yaml": {"LogsBucket"},
            "athena.yaml": {"ResultsBucket"},
            "metadata.yaml": {f"{t.title()}Table" for t in naming.METADATA_TABLES}}


@pytest.mark.parametrize("name", sorted(RETAINED))
def test_what_holds_data_survives_stack_deletion_and_replacement(instance, name):
    template = rendered(instance, name)
    kept = {logical for logical, r in template["Resources"].items()
            if r.get("DeletionPolicy") == "Retain" and r.get("UpdateReplacePolicy") == "Retain"}
    assert kept == RETAINED[name]
    for table in resources(template, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is True


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
    # Deleting only objects of data buckets (what a failed update left behind) and a dataset's
    # old-style Glue table, which gives way to its view (`edl.utils.catalog`).
    assert sorted(a for a in granted if "Delete" in a) == ["glue:DeleteTable", "s3:DeleteObject"]
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


@pytest.mark.parametrize("name", template_names())
def test_every_checkov_suppression_names_its_check_and_says_why(instance, name):
    """`make checkov` passes because each finding is fixed or suppressed on its resource; a
    suppression without a reason would hide a finding nobody judged."""
    for logical, resource in rendered(instance, name)["Resources"].items():
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
            assert skip["id"].startswith("CKV_"), (name, logical)
            assert len(skip.get("comment", "").split()) >= 8, (name, logical, skip["id"])
