"""A user deploys the lake on the local cloud, step by step, with the `edl` command.

The local cloud is started for real, for this module alone (a first deploy must find nothing
deployed, whichever test files ran before on this process); every command runs as a separate
process, as typed in a terminal, and what it made is checked with boto3.
"""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest
from botocore.exceptions import ClientError

from edl import naming
from tests.e2e.conftest import started_local_cloud
from tests.e2e.helpers import ACCOUNT, EDL, PREFIX, client


@pytest.fixture(scope="module")
def _deploy_cloud(tmp_path_factory, local_instance):
    with started_local_cloud(tmp_path_factory, local_instance, spark=False) as cloud:
        yield cloud


@pytest.fixture
def local_cloud(_deploy_cloud, edl_home, monkeypatch):
    """This module's local cloud, with the test's `EDL_HOME` pointing at it."""
    monkeypatch.setenv("EDL_HOME", str(_deploy_cloud.home))
    return _deploy_cloud


def edl(*args: str, profile: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    if profile:
        env["AWS_PROFILE"] = profile
    return subprocess.run([EDL, *args], capture_output=True, text=True, env=env, timeout=120)


def _policy_statements(iam, role: str) -> list[dict]:
    statements = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        document = json.loads(document) if isinstance(document, str) else document
        statements.extend(document["Statement"])
    return statements


def test_deploy_the_lake_step_by_step(local_cloud):
    validate = edl("validate")
    assert validate.returncode == 0, validate.stderr
    assert "all pass cfn-lint" in validate.stderr

    plan = edl("plan", "deploy-core", "--instance", "local")
    assert plan.returncode == 0, plan.stderr
    assert "edl-local-metadata" in plan.stdout and "create" in plan.stdout

    deploy = edl("deploy-core", "--instance", "local")
    assert deploy.returncode == 0, deploy.stderr
    again = edl("deploy-core", "--instance", "local")
    assert again.returncode == 0 and "15 stacks unchanged" in again.stderr

    for region in local_cloud.instance.regions:
        s3 = client(local_cloud, "s3", region)
        names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        for tier in ("internal", "restricted", "sensitive"):
            for bucket in (f"{PREFIX}-local-{tier}-{region}", f"{PREFIX}-drop-local-{tier}-{region}"):
                assert bucket in names
                encryption = s3.get_bucket_encryption(Bucket=bucket)[
                    "ServerSideEncryptionConfiguration"]["Rules"][0]
                assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"

    dataset = edl("deploy-dataset", "clinical_trials", "--tier", "sensitive", "--owner", "alice",
                  "--instance", "local")
    assert dataset.returncode == 0, dataset.stderr
    iam = client(local_cloud, "iam")
    regions = local_cloud.instance.regions
    data_area = {f"arn:aws:s3:::{PREFIX}-local-sensitive-{r}/clinical_trials/*" for r in regions}
    drop_areas = {f"arn:aws:s3:::{PREFIX}-drop-local-sensitive-{r}/{area}clinical_trials/*"
                  for r in regions for area in ("", "uploads/")}
    # both levels may query: the tier's prefix of the Athena results buckets
    results = {f"arn:aws:s3:::{PREFIX}-athena-local-{r}/sensitive/*" for r in regions}
    for level, expected in (("read", data_area | results),
                            ("write", data_area | drop_areas | results)):
        statements = _policy_statements(iam, f"edl-local-clinical_trials-{level}")
        object_arns = {r for s in statements for r in s["Resource"]
                       if isinstance(s["Resource"], list) and r.startswith("arn:aws:s3:::")
                       and "/" in r}
        assert object_arns == expected, level
        # Nothing puts into the data bucket: "write" is "may ingest" (through the drop areas).
        puts = {r for s in statements if "s3:PutObject" in s["Action"] for r in s["Resource"]}
        assert not puts & data_area

    _only_the_broker_and_the_admin_obtain_the_dataset_roles(local_cloud)

    status = edl("status", "--instance", "local")
    assert status.returncode == 0
    assert "edl-local-dataset-clinical-trials" in status.stdout
    assert "ReadRole=edl-local-clinical_trials-read" in status.stdout

    render = edl("render", "--instance", "dev01", "--out", str(local_cloud.home / "rendered"))
    assert render.returncode == 0
    assert (local_cloud.home / "rendered" / "edl-dev01-metadata.yaml").exists()

    plan = edl("plan", "destroy", "--instance", "local")
    assert plan.returncode == 0 and "keeps" in plan.stdout
    destroy = edl("destroy", "--instance", "local", "--yes")
    assert destroy.returncode == 0, destroy.stderr
    cfn = client(local_cloud, "cloudformation")
    assert [s["StackName"] for s in cfn.describe_stacks()["Stacks"]] == []
    s3 = client(local_cloud, "s3")
    kept = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert f"{PREFIX}-local-sensitive-us-east-1" in kept  # the data outlives its stacks
    # ...until asked for; the cloud is left empty for the other tests of the session.
    purge = edl("destroy", "--instance", "local", "--yes", "--delete-data")
    assert purge.returncode == 0, purge.stderr
    assert not [b for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(PREFIX)]


def _only_the_broker_and_the_admin_obtain_the_dataset_roles(local_cloud) -> None:
    """On the running cloud: bob is refused the read role; the broker - the session of the API
    role the runtime makes - obtains it with bob as source identity; the admin, break-glass."""
    roles = [naming.role_arn(ACCOUNT, naming.dataset_role("local", "clinical_trials", level))
             for level in naming.ACCESS_LEVELS]
    roles.append(naming.role_arn(ACCOUNT, naming.default_reader_role("local")))
    bob = client(local_cloud, "sts", user="bob", role=False)
    admin = client(local_cloud, "sts", role=False)
    api = admin.assume_role(RoleArn=naming.role_arn(ACCOUNT, naming.api_role("local")),
                            RoleSessionName=naming.API_SESSION_NAME)["Credentials"]
    broker = boto3.client("sts", endpoint_url=local_cloud.status.endpoint_url,
                          region_name="us-east-1", aws_access_key_id=api["AccessKeyId"],
                          aws_secret_access_key=api["SecretAccessKey"],
                          aws_session_token=api["SessionToken"])
    for role in roles:
        with pytest.raises(ClientError) as refused:
            bob.assume_role(RoleArn=role, RoleSessionName="bob")
        assert refused.value.response["Error"]["Code"] == "AccessDenied", role
        vended = broker.assume_role(RoleArn=role, RoleSessionName="bob", SourceIdentity="bob")
        assert vended["AssumedRoleUser"]["Arn"].endswith("/bob"), role
        admin.assume_role(RoleArn=role, RoleSessionName="break-glass")


def test_unprivileged_user_cannot_deploy(local_cloud):
    as_bob = edl("deploy-core", "--instance", "local", profile="bob")
    assert as_bob.returncode == 1
    assert "may not assume the CloudFormation role" in as_bob.stderr
    assert "Traceback" not in as_bob.stderr

    with pytest.raises(ClientError) as denied:
        client(local_cloud, "cloudformation", user="bob", role=False).create_stack(
            StackName="bobs-stack", TemplateBody="{}")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.parametrize("args, message", [
    (("deploy-dataset", "Clinical-Trials", "--tier", "internal", "--owner", "a"),
     "invalid dataset name"),
    (("deploy-core", "--instance", "staging"), "unknown instance 'staging'"),
])
def test_bad_input_is_one_clear_line(local_cloud, args, message):
    result = edl(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
