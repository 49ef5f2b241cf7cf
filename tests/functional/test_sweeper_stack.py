"""The sweeper stack deploys on moto with the parameters deploy-core passes: a function running
the sweep handler from the REST API's code zip, its role with exactly the sweep's rights (updates,
and grants past their expiry), and an EventBridge schedule that invokes it."""

from __future__ import annotations

import json

import boto3

from edl.cloudformation.components.sweeper import SCHEDULE, sweeper_stacks
from edl.cloudformation.render import render_template, template_context
from edl.config import load_config
from edl.naming import sweeper as sweeper_role_name

CONFIG = load_config()
LOCAL = CONFIG.instance("local")
REGION = LOCAL.default_region


def test_the_sweeper_stack_makes_a_scheduled_function_with_its_own_role(aws):
    [spec] = sweeper_stacks(CONFIG, LOCAL)
    [upload] = spec.uploads
    values = dict(spec.parameters)
    # the code's bucket is the artifacts stack's output; here, the bucket the code goes to
    values["CodeS3Bucket"] = upload.bucket
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=upload.bucket)
    s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.body())
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(
        StackName=spec.name, Capabilities=["CAPABILITY_NAMED_IAM"],
        TemplateBody=render_template("sweeper.yaml", template_context(CONFIG, LOCAL)).body,
        Parameters=[{"ParameterKey": k, "ParameterValue": ",".join(v) if isinstance(v, tuple)
                     else v} for k, v in values.items()])
    (stack,) = cfn.describe_stacks(StackName=spec.name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")

    function = boto3.client("lambda", region_name=REGION).get_function(
        FunctionName=values["FunctionName"])["Configuration"]
    assert function["Handler"] == "edl.core_resources.rest_api.sweep.handler"
    assert function["Environment"]["Variables"] == {"EDL_INSTANCE": LOCAL.name}
    assert function["Role"].endswith(f":role/{sweeper_role_name(LOCAL.name)}")
    rule = boto3.client("events", region_name=REGION).describe_rule(Name=values["FunctionName"])
    assert rule["ScheduleExpression"] == SCHEDULE and rule["State"] == "ENABLED"

    iam = boto3.client("iam", region_name=REGION)
    [policy_name] = iam.list_role_policies(RoleName=sweeper_role_name(LOCAL.name))["PolicyNames"]
    document = iam.get_role_policy(RoleName=sweeper_role_name(LOCAL.name),
                                   PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    actions = {a for s in document["Statement"] for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "dynamodb:Scan" in actions and "s3:DeleteObject" in actions
    assert "s3:GetObject" not in actions and "s3:PutObject" not in actions
    # it expires grants (deleting their active pointers, writing the expired grant over the
    # active one, moving the expiry schedule's cursor) and audits that, append-only
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert set(by_sid["ExpireGrants"]["Action"]) == {
        "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:PutItem",
        "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    assert by_sid["AuditExpiries"]["Action"] == "dynamodb:PutItem"
    assert not any(a.startswith(("sts:", "iam:")) for a in actions)
