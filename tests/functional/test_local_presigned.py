"""Presigned S3 URLs on the local cloud under IAM enforcement (`edl.local.presigned`).

The runtime's moto service (with the shim in front) runs in this process on a free port; IAM
enforcement is process-wide in moto, so it is switched off and moto reset at teardown.
"""

from __future__ import annotations

import json
import socket

import boto3
import pytest
import requests
from botocore.config import Config

from edl.local.control_api import call_control_api
from edl.local.runtime import MotoService

KEY = "uploads/sites/ab c (1).csv"


@pytest.fixture(scope="module")
def cloud():
    """moto behind the shim, with a bucket, a user who may put and get objects and one who may
    not; IAM enforced."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = MotoService(port)
    service.start()
    url = service.url
    try:
        admin = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                     aws_secret_access_key="x")
        iam = boto3.client("iam", **admin)
        keys = {}
        for user in ("writer", "nobody"):
            iam.create_user(UserName=user)
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
        policy = iam.create_policy(PolicyName="objects", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
                                                    "Action": ["s3:PutObject", "s3:GetObject"]}]}))
        iam.attach_user_policy(UserName="writer", PolicyArn=policy["Policy"]["Arn"])
        boto3.client("s3", **admin).create_bucket(Bucket="drop")
        call_control_api(url, "reset-auth", service.secret, body=b"0", content_type="text/plain")
        yield url, keys
    finally:
        call_control_api(url, "reset-auth", service.secret, body=b"inf", content_type="text/plain")
        call_control_api(url, "reset", service.secret, body=b"")
        service.stop()


def s3(url: str, key: dict):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"],
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def test_a_presigned_put_and_get_work_as_their_signer(cloud):
    url, keys = cloud
    writer = s3(url, keys["writer"])
    put = writer.generate_presigned_url("put_object", Params={"Bucket": "drop", "Key": KEY},
                                        ExpiresIn=900)
    assert requests.put(put, data=b"id\n1\n", timeout=10).status_code == 200
    assert writer.get_object(Bucket="drop", Key=KEY)["Body"].read() == b"id\n1\n"
    get = writer.generate_presigned_url("get_object", Params={"Bucket": "drop", "Key": KEY},
                                        ExpiresIn=900)
    assert requests.get(get, timeout=10).content == b"id\n1\n"


def test_a_tampered_url_is_refused(cloud):
    url, keys = cloud
    put = s3(url, keys["writer"]).generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "a.csv"}, ExpiresIn=900)
    response = requests.put(put.replace("a.csv", "b.csv"), data=b"x", timeout=10)
    assert response.status_code == 403 and b"SignatureDoesNotMatch" in response.content


def test_an_expired_url_is_refused(cloud):
    url, keys = cloud
    put = s3(url, keys["writer"]).generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "a.csv"}, ExpiresIn=0)
    response = requests.put(put, data=b"x", timeout=10)
    assert response.status_code == 403 and b"Request has expired" in response.content


def test_the_url_carries_only_its_signers_rights(cloud):
    url, keys = cloud
    put = s3(url, keys["nobody"]).generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "a.csv"}, ExpiresIn=900)
    response = requests.put(put, data=b"x", timeout=10)
    assert response.status_code == 403 and b"AccessDenied" in response.content
