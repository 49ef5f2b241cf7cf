"""rest_api.yaml deploys on moto (in-process) with the parameters deploy-core passes, and makes
what api_config.yaml describes: one API Gateway method per endpoint, each with IAM
authorization and a Lambda proxy integration, one function per handler module, and its role."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import boto3
import pytest
from moto import mock_aws

from edl import naming
from edl.api_config import get_api_config
from edl.cloudformation.components.rest_api import handler_package, rest_api_stacks
from edl.cloudformation.plan import OutputRef
from edl.cloudformation.render import render_template, template_context
from edl.config import load_config
from tests.functional.deploy_helpers import edl
from tests.functional.rest_api_helpers import call, event

CONFIG = load_config()
LOCAL = CONFIG.instance("local")
REGION = LOCAL.default_region

# moto skips AWS::ApiGateway::Stage (DESIGN §8); the template keeps it for AWS.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..ApiGateway..Stage")


def _parameters(spec) -> list[dict]:
    def one(value) -> str:
        if isinstance(value, OutputRef) and value.output == "ArtifactsBucket":
            return value.format.format(naming.artifacts_bucket(CONFIG.bucket_prefix, LOCAL.name,
                                                               REGION))
        if isinstance(value, OutputRef):  # a buckets stack's KeyId, as the stack manager resolves it
            return value.format.format("0000-test-key")
        return str(value)

    return [{"ParameterKey": key,
             "ParameterValue": ",".join(one(v) for v in value) if isinstance(value, tuple)
             else one(value)} for key, value in spec.parameters]


@pytest.fixture
def deployed(aws_credentials):
    with mock_aws():
        (spec,) = rest_api_stacks(CONFIG, LOCAL)
        s3 = boto3.client("s3", region_name=REGION)
        for upload in spec.uploads:  # what the stack manager uploads before deploying
            s3.create_bucket(Bucket=upload.bucket)
            s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.body())
        cfn = boto3.client("cloudformation", region_name=REGION)
        body = render_template(spec.template, template_context(CONFIG, LOCAL)).body
        cfn.create_stack(StackName=spec.name, TemplateBody=body, Parameters=_parameters(spec),
                         Capabilities=["CAPABILITY_NAMED_IAM"])
        (stack,) = cfn.describe_stacks(StackName=spec.name)["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        yield spec, {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def test_every_endpoint_is_a_method_with_iam_authorization_and_a_lambda_proxy(deployed):
    _, outputs = deployed
    apigw = boto3.client("apigateway", region_name=REGION)
    api_id = outputs["ApiId"]
    assert apigw.get_rest_api(restApiId=api_id)["name"] == "edl-local-edl"
    resources = {r["path"]: r for r in apigw.get_resources(restApiId=api_id, limit=500)["items"]}
    config = get_api_config()
    for endpoint in config.endpoints:
        method = apigw.get_method(restApiId=api_id, resourceId=resources[endpoint.path]["id"],
                                  httpMethod=endpoint.method)
        assert method["authorizationType"] == "AWS_IAM", endpoint.name
        assert method["methodIntegration"]["type"] == "AWS_PROXY"
        assert f"function:edl-local-api-{endpoint.module}/invocations" in \
            method["methodIntegration"]["uri"]
    served = {(e.path, e.method) for e in config.endpoints}
    deployed_methods = {(path, m) for path, r in resources.items()
                        for m in r.get("resourceMethods", {})}
    assert deployed_methods == served


def test_one_function_per_handler_module_runs_as_the_api_role(deployed):
    _spec, outputs = deployed
    lam = boto3.client("lambda", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    role_arn = iam.get_role(RoleName="edl-local-api")["Role"]["Arn"]
    assert outputs["Role"] == "edl-local-api"
    for module in get_api_config().handler_modules():
        function = lam.get_function(FunctionName=f"edl-local-api-{module}")["Configuration"]
        assert function["Handler"] == f"edl.core_resources.rest_api.{module}.handler"
        assert function["Role"] == role_arn
        assert function["Environment"]["Variables"]["EDL_INSTANCE"] == "local"
    (policy,) = iam.list_role_policies(RoleName="edl-local-api")["PolicyNames"]
    document = iam.get_role_policy(RoleName="edl-local-api", PolicyName=policy)["PolicyDocument"]
    actions = {a for s in document["Statement"] for a in
               (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert {"glue:StartJobRun", "s3:PutObject", "s3:GetObject", "dynamodb:PutItem"} <= actions
    # IAM only as the credential broker: look a grantee up, revoke older sessions of a role
    # (an outside S3 source is read by the caller, the simulator is never asked)
    assert {a for a in actions if a.startswith("iam:")} == {"iam:GetUser", "iam:PutRolePolicy"}
    assert {a for a in actions if a.startswith("sts:")} == {
        "sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}
    (vend,) = [s for s in document["Statement"] if s["Sid"] == "VendCredentials"]
    assert vend["Resource"] == [f"arn:aws:iam::{LOCAL.account_id}:role/edl-local-*-read",
                                f"arn:aws:iam::{LOCAL.account_id}:role/edl-local-*-write",
                                f"arn:aws:iam::{LOCAL.account_id}:role/edl-local-internal-reader"]


def test_the_code_zip_holds_the_handlers_and_what_they_import(tmp_path):
    package = handler_package()
    assert handler_package().sha256 == package.sha256
    names = zipfile.ZipFile(io.BytesIO(package.data)).namelist()
    assert "edl/core_resources/rest_api/datasets.py" in names and "yaml/__init__.py" in names
    assert not any(n.endswith((".pyc", ".so")) for n in names)
    # Lambda unpacks the zip into /var/task and puts it first on sys.path: every function's
    # Handler must import from there, nothing else of this machine's edl.
    task = tmp_path / "task"
    zipfile.ZipFile(io.BytesIO(package.data)).extractall(task)
    modules = get_api_config().handler_modules()
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import importlib\n"
              "for m in sys.argv[2:]:\n"
              "    mod = importlib.import_module('edl.core_resources.rest_api.' + m)\n"
              "    assert mod.__file__.startswith(sys.argv[1]), mod.__file__\n"
              "    assert callable(mod.handler)\n")
    result = subprocess.run([sys.executable, "-c", script, str(task), *modules],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- the handlers' role, under the local cloud's IAM enforcement ---------------------------------



def _api_context_as_role(cloud, role_arn: str):
    """The handlers' collaborators acting as `role_arn`, as the local runtime builds them."""
    from edl.core_resources.rest_api import common
    from edl.utils.context import LakeContext
    from edl.utils.metadata import MetadataStore
    from edl.utils.storage import S3Access
    from edl.utils.updates import UpdateStore

    creds = cloud.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="api")["Credentials"]
    session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name=REGION)

    def client(service, region=None):
        config = common.S3_PRESIGN_CONFIG if service == "s3" else None
        return session.client(service, region_name=region or REGION, endpoint_url=cloud.url,
                              config=config)

    dynamodb = session.resource("dynamodb", region_name=REGION, endpoint_url=cloud.url)
    lake = LakeContext(instance="local", config=CONFIG, metadata=MetadataStore(dynamodb, "local"),
                       updates=UpdateStore(dynamodb, "local"),
                       s3_access=lambda region: S3Access(region=region, endpoint_url=cloud.url),
                       glue=lambda region: client("glue", region), is_local=True)
    key = common.page_token_key_from_ssm(client("ssm"), "/edl/local/page-token-key")
    return common.ApiContext(lake=lake, instance=LOCAL, page_tokens=common.PageTokens(key),
                             client=client)


def test_the_api_role_may_do_what_the_handlers_do_and_no_more(cloud):
    from edl.core_resources.rest_api import common, datasets, ingest, jobs, pipelines
    from edl.utils.metadata import DatasetRecord, MetadataStore

    assert edl("deploy-core", "--instance", "local") == 0
    deployer = _as_deployer(cloud).resource("dynamodb")
    MetadataStore(deployer, "local").put_dataset(DatasetRecord(
        dataset="sales", tier="internal", owner="alice", home_region=REGION))
    deployer.Table("edl-local-pipelines").put_item(Item={   # as deploy-pipeline registers
        "pipeline": "sales_copy", "inputs": [], "outputs": ["sales"],
        "config": json.dumps({"inputs": {}}), "job_name": "edl-local-pipeline-sales_copy"})
    api = _api_context_as_role(cloud, f"arn:aws:iam::{LOCAL.account_id}:role/edl-local-api")
    common.use_api_context(api)
    try:
        status, body = call(datasets.list_datasets, event("list_datasets", user="carol"))
        assert status == 200 and [d["dataset"] for d in body["datasets"]] == ["sales"]

        status, upload = call(ingest.create_upload, event(
            "create_upload", user="alice", path={"dataset": "sales"}, body={"filename": "a.csv"}))
        assert status == 201
        # moto under IAM enforcement cannot authenticate presigned URLs (it reads only the
        # Authorization header: HTTP 500, measured), so the URL's rights are checked by making
        # the same PUT as the role that signs it; the URL itself is exercised in the unit tests.
        api.client("s3").put_object(Bucket=upload["bucket"], Key=upload["key"], Body=b"id\n1\n")

        status, started = call(ingest.start_ingest, event(
            "start_ingest", user="alice", path={"dataset": "sales"},
            body={"source": upload["source"], "kind": "snapshot"}))
        assert status == 202, started
        status, job = call(jobs.get_job, event("get_job", user="bob",
                                               path={"job_id": started["job_id"]}))
        assert status == 200 and job["status"] == "queued"

        status, run = call(pipelines.start_pipeline_run, event(
            "start_pipeline_run", user="alice", path={"pipeline": "sales_copy"}))
        assert status == 202, run
        status, job = call(jobs.get_job, event("get_job", user="bob",
                                               path={"job_id": run["job_id"]}))
        assert status == 200 and (job["pipeline"], job["status"]) == ("sales_copy", "queued")
    finally:
        common.use_api_context(None)
    # ... and no more: the role cannot read the lake's data.
    s3 = api.client("s3")
    with pytest.raises(Exception) as denied:
        s3.list_objects_v2(Bucket=f"{CONFIG.bucket_prefix}-local-internal-{REGION}")
    assert "AccessDenied" in str(denied.value)


class _as_deployer:
    """boto3 resources acting as the CloudFormation role (what deploy-dataset would write)."""

    def __init__(self, cloud) -> None:
        creds = cloud.client("sts").assume_role(RoleArn=LOCAL.cfn_role_arn,
                                                RoleSessionName="test")["Credentials"]
        self.url = cloud.url
        self.session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                     aws_secret_access_key=creds["SecretAccessKey"],
                                     aws_session_token=creds["SessionToken"], region_name=REGION)

    def resource(self, service: str):
        return self.session.resource(service, endpoint_url=self.url)
