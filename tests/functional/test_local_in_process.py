"""The runtime's own boto3 calls reach its moto app without the socket, and nothing else changes.

The runtime's moto service runs in this process, IAM enforced; boto3 clients made here are what
the API handlers, the job runner and the sweep are in the runtime. Each test checks what a call
over HTTP would give: enforcement, S3 keys and metadata as written, streamed bodies, errors.
"""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from edl.local import in_process
from edl.local.control_api import call_control_api
from edl.local.runtime import MotoService
from tests.functional.deploy_helpers import free_port

REGION = "us-east-1"



@pytest.fixture
def service(tmp_path):
    """The AWS endpoint with IAM enforced; alice may use S3 (nothing else)."""
    service = MotoService(free_port(), secret_file=tmp_path / "control-secret")
    service.start()
    try:
        call_control_api(service.url, "reset", service.secret, body=b"")
        iam = boto3.client("iam", endpoint_url=service.url, region_name=REGION,
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="alice")
        iam.put_user_policy(UserName="alice", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="alice")["AccessKey"]
        call_control_api(service.url, "reset-auth", service.secret, body=b"0",
                         content_type="text/plain")
        yield service, key
    finally:
        call_control_api(service.url, "reset-auth", service.secret, body=b"inf",
                         content_type="text/plain")
        call_control_api(service.url, "reset", service.secret, body=b"")
        service.stop()


def client(service, key, name: str):
    return boto3.client(name, endpoint_url=service.url, region_name=REGION,
                        aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"])


@pytest.fixture
def served(service, monkeypatch):
    """The requests the in-process route hands to the endpoint's app, counted."""
    service, _key = service
    app = in_process._apps[service.url]
    calls: list[str] = []

    def counting(environ, start_response):
        calls.append(f"{environ['REQUEST_METHOD']} {environ['RAW_URI']}")
        return app(environ, start_response)

    monkeypatch.setitem(in_process._apps, service.url, counting)
    return calls


def test_calls_from_the_runtime_process_skip_the_socket(service, served):
    service, key = service
    s3 = client(service, key, "s3")
    s3.create_bucket(Bucket="lake")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["lake"]
    assert served == ["PUT /lake", "GET /"]


def test_iam_is_enforced_in_process_too(service, served):
    service, key = service
    with pytest.raises(ClientError) as denied:
        client(service, key, "iam").list_users()   # alice may use S3 only
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as unknown:
        boto3.client("s3", endpoint_url=service.url, region_name=REGION,
                     aws_access_key_id="AKIAUNKNOWN", aws_secret_access_key="x").list_buckets()
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_s3_objects_round_trip_as_over_http(service, served):
    service, key = service
    s3 = client(service, key, "s3")
    s3.create_bucket(Bucket="lake")
    name = "visits/dt=2026-12-02/größe 100%/a+b.parquet"
    body = "Zürich, 東京, naïve\n".encode() * 50_000            # ~1.3 MB, streamed back
    s3.put_object(Bucket="lake", Key=name, Body=io.BytesIO(body),
                  Metadata={"source_file": "a.csv", "rows": "3"})
    got = s3.get_object(Bucket="lake", Key=name)
    assert got["Body"].read() == body
    assert got["Metadata"] == {"source_file": "a.csv", "rows": "3"}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="visits/")["Contents"]]
    assert keys == [name]
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="lake", Key="visits/none")
    assert missing.value.response["Error"]["Code"] == "404"
    assert len(served) == 5


def test_a_stopped_endpoint_is_not_served_in_process(service):
    service, _key = service
    url = service.url
    service.stop()
    assert url not in in_process._apps
    with pytest.raises(EndpointConnectionError):
        boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id="x",
                     aws_secret_access_key="x",
                     config=boto3.session.Config(retries={"max_attempts": 1},
                                                 connect_timeout=1)).list_buckets()
    service.start()   # for the fixture's teardown
    assert service.url in in_process._apps
