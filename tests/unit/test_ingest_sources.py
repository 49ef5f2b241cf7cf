"""Parsing source URLs, and refusing addresses a job must not reach."""

from __future__ import annotations

import pytest

from edl.core_resources.pipelines.ingest.errors import SourceRefusedError
from edl.core_resources.pipelines.ingest.sources import (HttpsSource, S3Source, SftpSource,
                                                         check_address, parse_source)
from edl.utils.storage import S3Access

ACCESS = S3Access(region="us-east-1")


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254", "::1", "0.0.0.0", "localhost"])
def test_loopback_and_link_local_are_refused_in_the_cloud(host):
    with pytest.raises(SourceRefusedError, match="loopback/link-local"):
        check_address(host, 443, allow_private=False)


def test_loopback_is_allowed_on_the_local_instance():
    assert check_address("127.0.0.1", 443, allow_private=True) == "127.0.0.1"


def test_parse_source_kinds():
    s3 = parse_source("s3://drop/batch1/", ACCESS, allow_private=False)
    assert isinstance(s3, S3Source) and (s3.bucket, s3.key) == ("drop", "batch1/")
    assert isinstance(parse_source("https://example.org/a.csv", ACCESS, allow_private=False),
                      HttpsSource)
    sftp = parse_source("sftp://bob@files.example.org:2222/out/", ACCESS, allow_private=False,
                        sftp_password="pw")
    assert isinstance(sftp, SftpSource) and (sftp.port, sftp.username) == (2222, "bob")
    assert "pw" not in repr(sftp)


@pytest.mark.parametrize("url, message", [
    ("http://example.org/a.csv", "plain http"),
    ("ftp://example.org/a.csv", "unsupported source"),
    ("sftp://bob:secret@example.org/a", "no password in the sftp:// URL"),
])
def test_unsupported_sources_are_refused(url, message):
    with pytest.raises(SourceRefusedError, match=message):
        parse_source(url, ACCESS, allow_private=False)


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
