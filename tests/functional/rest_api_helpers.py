"""Helpers of the REST API handler tests: the metadata tables on moto (in-process, created from
metadata.yaml's own key schemas), an `ApiContext` over them, and API Gateway proxy events.

The `api_world` and `api_lake` fixtures over them are in `conftest.py`."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from edl.api_config import get_api_config
from edl.cloudformation.render import parse_template, render_template
from edl.config import load_config
from edl.core_resources.rest_api import common
from edl.utils.context import LakeContext
from edl.utils.metadata import DatasetRecord, MetadataStore, read_all
from edl.utils.storage import S3Access
from edl.utils.updates import UpdateStore

CONFIG = load_config()
LOCAL = CONFIG.instance("local")
ACCOUNT = LOCAL.account_id
REGION = LOCAL.default_region
ADMIN_ARN = LOCAL.platform_admin_arn
PAGE_KEY = b"0123456789abcdef0123456789abcdef"


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def create_declared_tables(dynamodb_client, instance: str) -> None:
    """The tables exactly as metadata.yaml declares them (keys and indexes)."""
    body = render_template("metadata.yaml", {"instance": LOCAL, "bucket_prefix": "x"}).body
    for resource in parse_template(body)["Resources"].values():
        props = resource["Properties"]
        kwargs: dict[str, Any] = {
            "TableName": props["TableName"]["Fn::Sub"].replace("${TablePrefix}", f"edl-{instance}"),
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"], "BillingMode": "PAY_PER_REQUEST"}
        if "GlobalSecondaryIndexes" in props:
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        dynamodb_client.create_table(**kwargs)


class ApiLake:
    """The handlers' world in one object: tables, clients, the ApiContext, and event helpers."""

    def __init__(self, *, is_local: bool = True) -> None:
        self.dynamodb = boto3.resource("dynamodb", region_name=REGION)
        create_declared_tables(self.dynamodb.meta.client, LOCAL.name)
        self.metadata = MetadataStore(self.dynamodb, LOCAL.name)
        self.updates = UpdateStore(self.dynamodb, LOCAL.name)
        self.lake = LakeContext(
            instance=LOCAL.name, config=CONFIG, metadata=self.metadata, updates=self.updates,
            s3_access=lambda region: S3Access(region=region),
            glue=lambda region: boto3.client("glue", region_name=region), is_local=is_local)
        self.overrides: dict[str, Any] = {}
        self._clients: dict[tuple[str, str | None], Any] = {}
        self.ids = iter(f"{i:032x}" for i in range(1, 10_000))
        self.api = common.ApiContext(
            lake=self.lake, instance=LOCAL, page_tokens=common.PageTokens(PAGE_KEY),
            client=self.client, new_id=lambda: next(self.ids))

    def client(self, service: str, region: str | None = None):
        if service in self.overrides:
            return self.overrides[service]
        if (service, region) not in self._clients:
            config = common.S3_PRESIGN_CONFIG if service == "s3" else None
            self._clients[(service, region)] = boto3.client(
                service, region_name=region or REGION, config=config)
        return self._clients[(service, region)]

    def reset(self) -> None:
        """Empty every table and bucket; undo what a test changed."""
        for table in self.dynamodb.tables.all():
            keys = [k["AttributeName"] for k in table.key_schema]
            names = {f"#k{i}": key for i, key in enumerate(keys)}   # a key may be a reserved word
            with table.batch_writer() as batch:
                for item in read_all(table.scan, ProjectionExpression=", ".join(names),
                                     ExpressionAttributeNames=names):
                    batch.delete_item(Key={k: item[k] for k in keys})
        s3 = self.client("s3")
        for bucket in s3.list_buckets()["Buckets"]:
            for obj in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
                s3.delete_object(Bucket=bucket["Name"], Key=obj["Key"])
            s3.delete_bucket(Bucket=bucket["Name"])
        self.overrides.clear()
        self.lake.is_local = True
        self.api.now = time.time

    def add_user(self, name: str) -> str:
        """An IAM user of the account (a grantee the API can look up); its ARN."""
        try:
            self.client("iam").create_user(UserName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
        return user_arn(name)

    def items(self, table: str) -> list[dict]:
        """Every item of a metadata table, in key order (to show that nothing changed)."""
        found = read_all(self.metadata.table(table).scan, ConsistentRead=True)
        return sorted(found, key=lambda i: json.dumps(i, sort_keys=True, default=str))

    def audit_events(self, dataset: str) -> list[dict]:
        return read_all(self.metadata.table("audit").query, ConsistentRead=True,
                        KeyConditionExpression=Key("subject").eq(dataset))

    def add_dataset(self, name: str, *, owner: str = "alice", tier: str = "internal",
                    region: str = REGION) -> DatasetRecord:
        record = DatasetRecord(dataset=name, tier=tier, owner=owner, home_region=region,
                               description=f"{name} for tests")
        self.metadata.put_dataset(record)
        return record

    def jobs(self) -> list[dict]:
        return self.metadata.table("jobs").scan()["Items"]


def event(endpoint_name: str, *, user: str | None = "alice", arn: str | None = None,
          path: dict[str, str] | None = None, query: dict[str, str] | None = None,
          body: Any = None, method: str | None = None, raw_body: str | None = None) -> dict:
    """The proxy event API Gateway (REST API, IAM authorization) hands a Lambda function."""
    spec = get_api_config().endpoint(endpoint_name)
    path = path or {}
    resource_path = spec.path
    for key, value in path.items():
        resource_path = resource_path.replace("{" + key + "}", value)
    identity = {"sourceIp": "127.0.0.1", "userAgent": "tests"}
    if user is not None or arn is not None:
        caller_arn = arn or user_arn(user)
        identity.update(userArn=caller_arn, accountId=caller_arn.split(":")[4],
                        caller="AIDAEXAMPLE", accessKey="AKIAEXAMPLE", user="AIDAEXAMPLE")
    return {
        "resource": spec.path, "path": resource_path, "httpMethod": method or spec.method,
        "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {},
        "queryStringParameters": query or None, "multiValueQueryStringParameters":
            {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path or None, "stageVariables": None,
        "requestContext": {"resourcePath": spec.path, "httpMethod": method or spec.method,
                           "stage": "v1", "identity": identity, "accountId": ACCOUNT},
        "body": raw_body if raw_body is not None else (None if body is None else json.dumps(body)),
        "isBase64Encoded": False,
    }


def call(handler, ev: dict) -> tuple[int, dict]:
    """Call a handler; return its status and decoded body, checking the response's shape."""
    result = handler(ev, None)
    assert set(result) == {"statusCode", "headers", "body"}
    assert result["headers"]["Content-Type"] == "application/json"
    body = json.loads(result["body"])
    if result["statusCode"] >= 400:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return result["statusCode"], body


def assert_refused(lake: ApiLake, handler, ev: dict, status: int, code: str, *, subject: str,
                   words: tuple[str, ...] = ()) -> dict:
    """Call a handler that must refuse: the status and code, the words in the message, no grant
    item changed, and exactly one new audit event of `subject`: the refusal, with the code."""
    grants_before = lake.items("grants")
    seen = {e["event_id"] for e in lake.audit_events(subject)}
    got, body = call(handler, ev)
    assert (got, body.get("error", {}).get("code")) == (status, code), body
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert lake.items("grants") == grants_before
    new = [e for e in lake.audit_events(subject) if e["event_id"] not in seen]
    assert len(new) == 1, new
    event = new[0]
    assert (event["action"], event["decision"]) == ("refuse", "refused")
    assert event["detail"]["code"] == code and event["reason"] == body["error"]["message"]
    assert event["actor"] == ev["requestContext"]["identity"]["userArn"]
    return body
