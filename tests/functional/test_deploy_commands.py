"""The deploy commands against a bootstrapped local cloud with IAM enforcement on, run in-process.

Each test checks what a user would: the buckets and roles in the account, the stacks' states,
the message on stderr and the exit code.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from edl import naming
from edl.cloudformation.stack_client import StackClient
from tests.functional.deploy_fixtures import cloud, edl, moto_server  # noqa: F401 (fixtures)

PREFIX = "sanofi-datalake"


def _stack_names(cloud, region="us-east-1") -> set[str]:
    cfn = cloud.as_deployer("cloudformation", region)
    return {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}


@pytest.fixture
def change_sets(monkeypatch) -> list[str]:
    """Every change set EDL creates, by stack name."""
    created: list[str] = []
    original = StackClient._create_change_set

    def spy(self, name, *args, **kwargs):
        created.append(name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(StackClient, "_create_change_set", spy)
    return created


def test_deploy_core_creates_encrypted_buckets_per_tier_and_region(cloud, capsys):
    assert edl("deploy-core", "--instance", "local") == 0

    for region in ("us-east-1", "eu-west-1"):
        s3 = cloud.as_deployer("s3", region)
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        for tier in naming.TIERS:
            data = f"{PREFIX}-local-{tier}-{region}"
            drop = f"{PREFIX}-drop-local-{tier}-{region}"
            assert {data, drop} <= buckets
            rule = s3.get_bucket_encryption(Bucket=data)[
                "ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
            assert rule["SSEAlgorithm"] == "aws:kms"
            key = cloud.as_deployer("kms", region).describe_key(KeyId=f"alias/edl-local-{tier}")
            assert key["KeyMetadata"]["Arn"] == rule["KMSMasterKeyID"]
        assert f"{PREFIX}-artifacts-local-{region}" in buckets
    tables = cloud.as_deployer("dynamodb").list_tables()["TableNames"]
    assert {"edl-local-datasets", "edl-local-updates", "edl-local-grants", "edl-local-audit",
            "edl-local-jobs"} <= set(tables)
    roles = [r["RoleName"] for r in cloud.as_deployer("iam").list_roles()["Roles"]]
    assert {"edl-local-internal-reader", "edl-local-ingest-job", "edl-local-api"} <= set(roles)
    # The ingest job's code is in the artifacts bucket, under keys holding its hash.
    code = cloud.as_deployer("s3").list_objects_v2(
        Bucket=f"{PREFIX}-artifacts-local-us-east-1")["Contents"]
    keys = sorted(o["Key"] for o in code)
    # So is the REST API's (one zip for every handler function).
    assert [k.split("/")[0] for k in keys] == ["code", "code", "jobs"]
    assert keys[0].startswith("code/edl-") and keys[1].startswith("code/rest-api-")
    assert all(k.endswith(".zip") for k in keys[:2])
    assert "13 stack(s) deployed" in capsys.readouterr().err


def test_second_deploy_core_creates_no_change_set(cloud, change_sets, capsys):
    assert edl("deploy-core") == 0
    assert len(change_sets) == 13
    change_sets.clear()
    capsys.readouterr()

    assert edl("deploy-core") == 0

    assert change_sets == []
    assert "up to date (13 stacks unchanged)" in capsys.readouterr().err


def test_plan_lists_actions_and_changes_nothing(cloud, capsys):
    assert edl("plan", "deploy-core", "--instance", "local") == 0

    out = capsys.readouterr().out
    assert "edl-local-buckets-sensitive-eu-west-1" in out and "create" in out
    assert _stack_names(cloud) == set()


def test_plan_after_deploy_reports_unchanged(cloud, capsys):
    edl("deploy-core")
    capsys.readouterr()
    assert edl("diff", "deploy-core") == 0
    out = capsys.readouterr().out
    assert out.count("unchanged") >= 13 and " create " not in out


def test_deploy_dataset_roles_allow_exactly_its_prefixes(cloud):
    assert edl("deploy-core") == 0
    assert edl("deploy-dataset", "clinical_trials", "--tier", "sensitive", "--owner", "alice",
               "--key", "subject_id", "--key", "visit", "--op-column", "op",
               "--delete-marker", "D") == 0

    iam = cloud.as_deployer("iam")
    for level in ("read", "write"):
        role = f"edl-local-clinical_trials-{level}"
        documents = [iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                     for name in iam.list_role_policies(RoleName=role)["PolicyNames"]]
        object_resources = set()
        for document in documents:
            document = json.loads(document) if isinstance(document, str) else document
            for statement in document["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) \
                    else [statement["Action"]]
                resources = statement["Resource"] if isinstance(statement["Resource"], list) \
                    else [statement["Resource"]]
                if any(a in ("s3:GetObject", "s3:PutObject") for a in actions):
                    object_resources.update(resources)
        assert object_resources == {
            f"arn:aws:s3:::{PREFIX}-local-sensitive-us-east-1/clinical_trials/*",
            f"arn:aws:s3:::{PREFIX}-local-sensitive-eu-west-1/clinical_trials/*",
        }
    # The record is in the metadata, readable by any user (alice reads it with her own rights).
    item = cloud.client("dynamodb", "alice").get_item(
        TableName="edl-local-datasets", Key={"dataset": {"S": "clinical_trials"}})["Item"]
    assert item["tier"]["S"] == "sensitive" and item["owner"]["S"] == "alice"
    delta = item["delta"]["M"]
    assert [k["S"] for k in delta["key_columns"]["L"]] == ["subject_id", "visit"]
    assert delta["delete_marker"]["S"] == "D"


def test_deploy_dataset_before_core_says_deploy_core_first(cloud, capsys):
    assert edl("deploy-dataset", "clinical_trials", "--tier", "internal", "--owner", "bob") == 1
    err = capsys.readouterr().err
    assert "deploy core first" in err or "deploy-core" in err
    assert _stack_names(cloud) == set()


def test_dataset_cannot_change_tier(cloud, capsys):
    edl("deploy-core")
    assert edl("deploy-dataset", "trials", "--tier", "internal", "--owner", "bob") == 0
    capsys.readouterr()
    assert edl("deploy-dataset", "trials", "--tier", "sensitive", "--owner", "bob") == 2
    assert "is in tier internal" in capsys.readouterr().err


def test_user_without_rights_cannot_deploy(cloud, capsys):
    assert edl("deploy-core", "--profile", "alice") == 1

    err = capsys.readouterr().err
    assert "may not assume the CloudFormation role" in err
    assert "Traceback" not in err
    assert _stack_names(cloud) == set()


def test_users_own_create_stack_is_denied(cloud):
    with pytest.raises(ClientError) as denied:
        cloud.client("cloudformation", "bob").create_stack(StackName="bob", TemplateBody="{}")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_status_shows_stacks_and_outputs(cloud, capsys):
    edl("deploy-core")
    capsys.readouterr()
    assert edl("status") == 0
    out = capsys.readouterr().out
    assert "edl-local-metadata" in out and "CREATE_COMPLETE" in out
    assert f"DataBucket={PREFIX}-local-restricted-eu-west-1" in out


def test_destroy_needs_confirmation_then_removes_everything(cloud, capsys):
    edl("deploy-core")
    edl("deploy-dataset", "trials", "--tier", "internal", "--owner", "bob")
    s3 = cloud.as_deployer("s3")
    s3.put_object(Bucket=f"{PREFIX}-local-internal-us-east-1", Key="trials/raw/1/a.csv", Body=b"x")

    assert edl("destroy") == 2  # no terminal to ask on, and no --yes
    assert "pass --yes" in capsys.readouterr().err
    assert len(_stack_names(cloud)) + len(_stack_names(cloud, "eu-west-1")) == 14

    assert edl("destroy", "--yes") == 0
    assert _stack_names(cloud) == set() and _stack_names(cloud, "eu-west-1") == set()
    assert not [b for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(PREFIX)]


def test_lint_error_stops_the_deploy_before_any_stack(cloud, monkeypatch, capsys):
    from edl.cloudformation import stack_manager
    from edl.cloudformation.render import RenderedTemplate

    real = stack_manager.render_template

    def broken(name, context):
        template = real(name, context)
        if name == "metadata.yaml":
            body = template.body.replace("BillingMode: PAY_PER_REQUEST", "BillingMode: FREE")
            return RenderedTemplate(name, body)
        return template

    monkeypatch.setattr(stack_manager, "render_template", broken)
    assert edl("deploy-core") == 1
    err = capsys.readouterr().err
    assert "metadata.yaml" in err and "line" in err
    assert _stack_names(cloud) == set()


def test_endpoint_not_running_is_a_clear_error(cloud, capsys):
    from edl.paths import local_state_file

    local_state_file().write_text(json.dumps({"endpoint_url": "http://127.0.0.1:9"}))
    assert edl("status") == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and "edl local start" in err
    assert "Traceback" not in err
