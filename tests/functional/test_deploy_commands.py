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
from tests.functional.deploy_helpers import edl

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
        assert f"{PREFIX}-athena-local-{region}" in buckets
        # moto's CloudFormation skips workgroups: deploy-core made them through Athena
        athena = cloud.as_deployer("athena", region)
        for tier in naming.TIERS:
            group = athena.get_work_group(WorkGroup=f"edl-{tier}")["WorkGroup"]["Configuration"]
            assert group["EnforceWorkGroupConfiguration"] is True
            assert group["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
            assert group["BytesScannedCutoffPerQuery"] >= 10_000_000
            result = group["ResultConfiguration"]
            assert result["OutputLocation"] == f"s3://{PREFIX}-athena-local-{region}/{tier}/"
            key = cloud.as_deployer("kms", region).describe_key(KeyId=f"alias/edl-local-{tier}")
            assert result["EncryptionConfiguration"] == {
                "EncryptionOption": "SSE_KMS", "KmsKey": key["KeyMetadata"]["Arn"]}
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
    err = capsys.readouterr().err
    assert "15 stack(s) deployed" in err
    assert "workgroup edl-sensitive: created through the Athena API" in err


def test_second_deploy_core_creates_no_change_set(cloud, change_sets, capsys):
    assert edl("deploy-core") == 0
    assert len(change_sets) == 15
    change_sets.clear()
    capsys.readouterr()

    assert edl("deploy-core") == 0

    assert change_sets == []
    err = capsys.readouterr().err
    assert "up to date (15 stacks unchanged)" in err
    assert "workgroup" not in err   # they are as they should be: left alone


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
    assert out.count("unchanged") >= 15 and " create " not in out


def test_a_deploy_that_would_replace_the_tables_is_shown_and_refused_unless_allowed(
        cloud, monkeypatch, capsys):
    """moto's change sets report no `Replacement`; the plan finds it by comparing the deployed
    template with the new one (here: every table renamed by a new TablePrefix)."""
    from edl.cloudformation.plan import StackSpec
    from edl.installed_scripts.commands import deploy

    assert edl("deploy-core") == 0
    real = deploy.core_stacks

    def renamed_tables(config, instance):
        return [StackSpec(s.name, s.region, s.template, (("TablePrefix", "edl-renamed"),))
                if s.template == "metadata.yaml" else s for s in real(config, instance)]

    monkeypatch.setattr(deploy, "core_stacks", renamed_tables)
    capsys.readouterr()
    assert edl("plan", "deploy-core") == 0
    out = capsys.readouterr().out
    assert "REPLACES edl-local-metadata.DatasetsTable" in out and "edl-renamed-datasets" in out

    assert edl("deploy-core") == 1
    err = capsys.readouterr().err
    assert "nothing was deployed" in err
    assert "--allow-replace edl-local-metadata.AuditTable" in err
    tables = set(cloud.as_deployer("dynamodb").list_tables()["TableNames"])
    assert "edl-local-datasets" in tables and "edl-renamed-datasets" not in tables

    allowed = [arg for t in naming.METADATA_TABLES
               for arg in ("--allow-replace", f"edl-local-metadata.{t.title()}Table")]
    assert edl("deploy-core", *allowed) == 0
    # The old tables stay behind (UpdateReplacePolicy). AWS would also create the renamed ones;
    # moto does not carry a TableName replacement out at all (measured), so that is not checked.
    tables = set(cloud.as_deployer("dynamodb").list_tables()["TableNames"])
    assert {f"edl-local-{t}" for t in naming.METADATA_TABLES} <= tables


def _as_role(cloud, role: str, service: str = "s3"):
    """A client acting as `role`, assumed as the platform admin (break-glass; the roles trust
    only the broker and the admin): these tests check the role's own rights."""
    import boto3

    creds = cloud.client("sts").assume_role(
        RoleArn=naming.role_arn(cloud.instance.account_id, role),
        RoleSessionName="test")["Credentials"]
    return boto3.client(service, endpoint_url=cloud.url, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def _denied(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "AccessDenied"
    return False


def test_deploy_dataset_write_role_may_ingest_but_never_write_the_data(cloud):
    assert edl("deploy-core") == 0
    assert edl("deploy-dataset", "clinical_trials", "--tier", "sensitive", "--owner", "alice",
               "--key", "subject_id", "--key", "visit", "--op-column", "op",
               "--delete-marker", "D") == 0
    data, drop = f"{PREFIX}-local-sensitive-us-east-1", f"{PREFIX}-drop-local-sensitive-us-east-1"
    cloud.as_deployer("s3").put_object(Bucket=data, Key="clinical_trials/data/1/p.parquet",
                                       Body=b"rows")
    for level in ("read", "write"):
        s3 = _as_role(cloud, f"edl-local-clinical_trials-{level}")
        assert s3.get_object(Bucket=data, Key="clinical_trials/data/1/p.parquet")["Body"].read() \
            == b"rows"
        for key in ("clinical_trials/data/2/p.parquet", "clinical_trials/raw/2/a.csv"):
            assert _denied(lambda s3=s3, key=key: s3.put_object(Bucket=data, Key=key, Body=b"x")), \
                (level, key)
        assert _denied(lambda s3=s3: s3.put_object(Bucket=drop, Key="uploads/other_set/1/a.csv",
                                                   Body=b"x"))
    writer, reader = (_as_role(cloud, f"edl-local-clinical_trials-{level}")
                      for level in ("write", "read"))
    writer.put_object(Bucket=drop, Key="uploads/clinical_trials/1/a.csv", Body=b"x")
    writer.put_object(Bucket=drop, Key="clinical_trials/a.csv", Body=b"x")
    assert _denied(lambda: reader.put_object(Bucket=drop, Key="uploads/clinical_trials/1/b.csv",
                                             Body=b"x"))
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


def _lake_with_data(cloud) -> None:
    """Core and a dataset deployed, an ingested object, and what ingest and the API create
    outside CloudFormation: the tier's Glue database with the dataset's table, the page-token key."""
    assert edl("deploy-core") == 0
    assert edl("deploy-dataset", "trials", "--tier", "internal", "--owner", "bob") == 0
    cloud.as_deployer("s3").put_object(Bucket=f"{PREFIX}-local-internal-us-east-1",
                                       Key="trials/data/1/p.parquet", Body=b"rows")
    glue = cloud.as_deployer("glue")
    glue.create_database(DatabaseInput={"Name": "edl_local_internal"})
    glue.create_table(DatabaseName="edl_local_internal", TableInput={"Name": "trials"})
    cloud.as_deployer("ssm").put_parameter(Name="/edl/local/page-token-key", Value="k",
                                           Type="SecureString")


def _buckets(cloud, region="us-east-1") -> set[str]:
    return {b["Name"] for b in cloud.as_deployer("s3", region).list_buckets()["Buckets"]
            if b["Name"].startswith(PREFIX)}


def _enabled_keys(cloud, region="us-east-1") -> int:
    """The tier keys (not the AWS-managed key SSM makes) that are not scheduled for deletion."""
    kms = cloud.as_deployer("kms", region)
    metas = [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"] for k in kms.list_keys()["Keys"]]
    return sum(1 for m in metas
               if m["KeyState"] == "Enabled" and m.get("Description", "").startswith("EDL "))


def test_destroy_needs_confirmation_then_keeps_the_data_and_removes_the_rest(cloud, capsys):
    _lake_with_data(cloud)
    assert edl("destroy") == 2  # no terminal to ask on, and no --yes
    assert "pass --yes" in capsys.readouterr().err
    assert len(_stack_names(cloud)) + len(_stack_names(cloud, "eu-west-1")) == 16

    assert edl("destroy", "--yes") == 0
    out = capsys.readouterr()
    assert _stack_names(cloud) == set() and _stack_names(cloud, "eu-west-1") == set()
    # The data, drop and log buckets stay, with what they hold; the artifacts bucket goes.
    assert _buckets(cloud) == {
        name for region in ("us-east-1", "eu-west-1") for name in (
            f"{PREFIX}-logs-local-{region}", f"{PREFIX}-athena-local-{region}",
            *(f"{PREFIX}-{kind}local-{tier}-{region}" for kind in ("", "drop-")
              for tier in naming.TIERS))}
    for region in ("us-east-1", "eu-west-1"):
        assert _enabled_keys(cloud, region) == 3
        groups = cloud.as_deployer("athena", region).list_work_groups()["WorkGroups"]
        assert not [g for g in groups if g["Name"].startswith("edl-")]
    s3 = cloud.as_deployer("s3")
    assert s3.get_object(Bucket=f"{PREFIX}-local-internal-us-east-1",
                         Key="trials/data/1/p.parquet")["Body"].read() == b"rows"
    tables = cloud.as_deployer("dynamodb").list_tables()["TableNames"]
    assert {f"edl-local-{t}" for t in naming.METADATA_TABLES} <= set(tables)
    # What EDL made outside CloudFormation is gone.
    assert cloud.as_deployer("glue").get_databases()["DatabaseList"] == []
    assert cloud.as_deployer("ssm").get_parameters_by_path(
        Path="/edl/local", Recursive=True)["Parameters"] == []
    text = out.out + out.err
    assert "kept" in text and f"{PREFIX}-local-internal-us-east-1" in text
    assert "--delete-data" in text

    # A new deploy cannot take the kept buckets and tables over: refused by name, nothing made.
    assert edl("deploy-core") == 1
    err = capsys.readouterr().err
    assert f"{PREFIX}-local-internal-us-east-1" in err and "edl-local-datasets" in err
    assert "--delete-data" in err
    assert _stack_names(cloud) == set() and _stack_names(cloud, "eu-west-1") == set()


def test_destroy_delete_data_also_deletes_data_even_after_a_first_destroy(cloud, capsys):
    _lake_with_data(cloud)
    assert edl("destroy", "--yes") == 0  # keeps the data: it is no longer in any stack
    capsys.readouterr()
    assert edl("plan", "destroy", "--delete-data") == 0
    assert f"{PREFIX}-local-internal-us-east-1" in capsys.readouterr().out
    assert edl("destroy", "--yes", "--delete-data") == 0
    assert _buckets(cloud) == set()
    for region in ("us-east-1", "eu-west-1"):
        assert _enabled_keys(cloud, region) == 0
    tables = cloud.as_deployer("dynamodb").list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith("edl-local-")]


def test_plan_destroy_shows_the_order_and_what_is_kept_and_changes_nothing(cloud, capsys):
    _lake_with_data(cloud)
    capsys.readouterr()
    assert edl("plan", "destroy") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def first_line(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    # A stack is deleted before the stacks it reads from.
    assert first_line("edl-local-dataset-trials") < first_line("edl-local-buckets-internal-us")
    assert first_line("edl-local-default-acls") < first_line("edl-local-buckets-internal-us")
    assert first_line("edl-local-buckets-internal-us") < first_line("edl-local-artifacts-us")
    assert "keeps" in out and "edl_local_internal" in out and "/edl/local/page-token-key" in out
    assert len(_stack_names(cloud)) + len(_stack_names(cloud, "eu-west-1")) == 16  # the 15 core stacks and the dataset's: plan destroy deleted none


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
