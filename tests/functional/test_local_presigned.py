"""Presigned S3 URLs and copies on the local cloud under IAM enforcement (`edl.local.presigned`,
`edl.local.copy_source`).

The runtime's moto service (with the shim in front) runs in this process on a free port; IAM
enforcement is process-wide in moto, so it is switched off and moto reset at teardown.
"""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from botocore.config import Config

from edl.local.control_api import call_control_api
from edl.local.runtime import MotoService
from tests.functional.deploy_helpers import free_port

KEY = "uploads/sites/ab c (1).csv"


@pytest.fixture(scope="module")
def presign_cloud():
    """moto behind the shim, with a bucket `drop`, a user who may put and get objects there, one
    who may not, and a bucket `vault` with an object neither may read; IAM enforced."""
    service = MotoService(free_port())
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
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                                                    "Resource": "arn:aws:s3:::drop/*",
                                                    "Action": ["s3:PutObject", "s3:GetObject"]}]}))
        iam.attach_user_policy(UserName="writer", PolicyArn=policy["Policy"]["Arn"])
        for bucket in ("drop", "vault"):
            boto3.client("s3", **admin).create_bucket(Bucket=bucket)
        boto3.client("s3", **admin).put_object(Bucket="vault", Key="secret.csv", Body=b"top\n")
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


def test_a_presigned_put_and_get_work_as_their_signer(presign_cloud):
    url, keys = presign_cloud
    writer = s3(url, keys["writer"])
    put = writer.generate_presigned_url("put_object", Params={"Bucket": "drop", "Key": KEY},
                                        ExpiresIn=900)
    assert requests.put(put, data=b"id\n1\n", timeout=10).status_code == 200
    assert writer.get_object(Bucket="drop", Key=KEY)["Body"].read() == b"id\n1\n"
    get = writer.generate_presigned_url("get_object", Params={"Bucket": "drop", "Key": KEY},
                                        ExpiresIn=900)
    assert requests.get(get, timeout=10).content == b"id\n1\n"


def test_a_tampered_url_is_refused(presign_cloud):
    url, keys = presign_cloud
    put = s3(url, keys["writer"]).generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "a.csv"}, ExpiresIn=900)
    response = requests.put(put.replace("a.csv", "b.csv"), data=b"x", timeout=10)
    assert response.status_code == 403 and b"SignatureDoesNotMatch" in response.content


def test_an_expired_url_is_refused(presign_cloud):
    url, keys = presign_cloud
    put = s3(url, keys["writer"]).generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "a.csv"}, ExpiresIn=0)
    response = requests.put(put, data=b"x", timeout=10)
    assert response.status_code == 403 and b"Request has expired" in response.content


def test_the_url_carries_only_its_signers_rights(presign_cloud):
    url, keys = presign_cloud
    put = s3(url, keys["nobody"]).generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "a.csv"}, ExpiresIn=900)
    response = requests.put(put, data=b"x", timeout=10)
    assert response.status_code == 403 and b"AccessDenied" in response.content


@pytest.mark.parametrize("header, value", [
    ("x-amz-acl", "public-read"),
    ("x-amz-tagging", "owner=mallory"),
    ("x-amz-meta-owner", "mallory"),
    ("x-amz-meta-the_owner", "mallory"),   # moto keeps underscores in metadata names
    ("x-amz-server-side-encryption", "AES256"),
])
def test_a_header_the_url_did_not_sign_is_refused(presign_cloud, header, value):
    """As S3 does: the holder of a URL adds nothing its signer did not sign."""
    url, keys = presign_cloud
    writer = s3(url, keys["writer"])
    key = f"unsigned/{header}.csv"
    put = writer.generate_presigned_url("put_object", Params={"Bucket": "drop", "Key": key},
                                        ExpiresIn=900)
    response = requests.put(put, data=b"x", headers={header: value}, timeout=10)
    assert response.status_code == 403 and b"were not signed" in response.content
    assert f"<HeadersNotSigned>{header.replace('_', '-')}</HeadersNotSigned>".encode() \
        in response.content
    with pytest.raises(writer.exceptions.ClientError) as missing:
        writer.head_object(Bucket="drop", Key=key)
    assert missing.value.response["Error"]["Code"] == "404"


def test_a_header_the_url_signed_is_accepted(presign_cloud):
    url, keys = presign_cloud
    writer = s3(url, keys["writer"])
    put = writer.generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "meta.csv", "Metadata": {"owner": "w"}},
        ExpiresIn=900)
    assert "x-amz-meta-owner" in put
    response = requests.put(put, data=b"x", headers={"x-amz-meta-owner": "w"}, timeout=10)
    assert response.status_code == 200
    assert writer.head_object(Bucket="drop", Key="meta.csv")["Metadata"] == {"owner": "w"}


def test_a_presigned_url_cannot_copy(presign_cloud):
    """moto authorises a copy on its destination only: through a URL to upload, the writer
    would read the vault."""
    url, keys = presign_cloud
    writer = s3(url, keys["writer"])
    signed = writer.generate_presigned_url(
        "copy_object", ExpiresIn=900,
        Params={"Bucket": "drop", "Key": "stolen.csv", "CopySource": "vault/secret.csv"})
    plain = writer.generate_presigned_url(
        "put_object", Params={"Bucket": "drop", "Key": "stolen.csv"}, ExpiresIn=900)
    for put in (signed, plain):
        response = requests.put(put, headers={"x-amz-copy-source": "vault/secret.csv"},
                                timeout=10)
        assert response.status_code == 403 and b"cannot copy" in response.content
    with pytest.raises(writer.exceptions.ClientError) as missing:
        writer.get_object(Bucket="drop", Key="stolen.csv")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_a_url_valid_for_more_than_a_week_is_refused(presign_cloud):
    url, keys = presign_cloud
    writer = s3(url, keys["writer"])
    week = 7 * 24 * 3600
    for seconds, status in ((week + 1, 403), (week, 200)):
        put = writer.generate_presigned_url(
            "put_object", Params={"Bucket": "drop", "Key": "week.csv"}, ExpiresIn=seconds)
        response = requests.put(put, data=b"x", timeout=10)
        assert response.status_code == status, seconds
    assert b"AuthorizationQueryParametersError" in requests.put(
        writer.generate_presigned_url("put_object", Params={"Bucket": "drop", "Key": "a.csv"},
                                      ExpiresIn=week + 1), data=b"x", timeout=10).content


def test_a_signed_copy_needs_read_access_to_its_source(presign_cloud):
    """As in S3; moto checks only that the writer may write the destination."""
    url, keys = presign_cloud
    writer = s3(url, keys["writer"])
    writer.put_object(Bucket="drop", Key="mine.csv", Body=b"id\n1\n")
    writer.copy_object(Bucket="drop", Key="mine-again.csv", CopySource="drop/mine.csv")
    assert writer.get_object(Bucket="drop", Key="mine-again.csv")["Body"].read() == b"id\n1\n"
    with pytest.raises(writer.exceptions.ClientError) as refused:
        writer.copy_object(Bucket="drop", Key="stolen.csv", CopySource="vault/secret.csv")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(writer.exceptions.ClientError) as missing:
        writer.get_object(Bucket="drop", Key="stolen.csv")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
