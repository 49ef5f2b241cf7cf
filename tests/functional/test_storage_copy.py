"""Copying an object into the lake: server-side, in one call or in parts (moto in-process)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("limit", [None, 5 << 20])
def test_copy_object_copies_server_side_in_one_call_or_in_parts(aws_credentials, monkeypatch,
                                                                limit):
    """Above the single-copy limit (5 GiB in S3; lowered here) the copy goes in parts."""
    import boto3
    from moto import mock_aws

    from edl.utils import storage

    if limit:
        monkeypatch.setattr(storage, "SINGLE_COPY_LIMIT", limit)
        monkeypatch.setattr(storage, "COPY_PART", 5 << 20)
    body = bytes(range(256)) * (48 << 10)   # 12 MiB
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("drop", "data"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="drop", Key="in/a.csv", Body=body)
        storage.copy_object(s3, "drop", "in/a.csv", "data", "ds/raw/1/a.csv", len(body))
        copied = s3.get_object(Bucket="data", Key="ds/raw/1/a.csv")
        assert copied["Body"].read() == body
        assert ("-" in copied["ETag"]) == bool(limit)   # a multipart upload's ETag is "…-N"
