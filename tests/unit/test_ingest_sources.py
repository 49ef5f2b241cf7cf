"""Parsing source URLs, and refusing addresses a job must not reach."""

from __future__ import annotations

import re

import pytest

from edl.core_resources.pipelines.ingest.errors import SourceRefusedError
from edl.core_resources.pipelines.ingest.sources import (
    HttpsSource,
    S3Source,
    SftpSource,
    check_address,
    parse_source,
    reachable_test_servers,
)
from edl.utils.storage import S3Access

ACCESS = S3Access(region="us-east-1")


@pytest.mark.parametrize("host", [
    "127.0.0.1", "::1", "localhost",             # loopback: on the local cloud, its own runtime
    "169.254.169.254", "fe80::1",                # link-local: the instance metadata service
    "10.1.2.3", "172.16.0.1", "192.168.1.10", "fd00::1",   # private
    "100.64.0.1", "240.0.0.1",                   # shared, reserved
    "0.0.0.0", "::", "224.0.0.251", "ff02::1",   # unspecified, multicast
    "::ffff:127.0.0.1",                          # loopback in IPv6 clothing
])
def test_addresses_that_are_not_public_are_refused(host):
    with pytest.raises(SourceRefusedError, match="loopback/link-local/private/reserved"):
        check_address(host, 443)


@pytest.mark.parametrize("host", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_allowed(host):
    assert check_address(host, 443) == host


def test_only_the_test_servers_given_in_code_are_reachable():
    """No request, argument or environment variable reaches the loopback; a test says which
    of its own servers may be, by address and port."""
    with reachable_test_servers(("127.0.0.1", 8443)):
        source = parse_source("https://127.0.0.1:8443/a.csv", ACCESS, local_instance=True)
        assert check_address("127.0.0.1", 8443, source.reachable) == "127.0.0.1"
        with pytest.raises(SourceRefusedError):
            check_address("127.0.0.1", 8444, source.reachable)   # the runtime's port, say
    later = parse_source("https://127.0.0.1:8443/a.csv", ACCESS, local_instance=True)
    assert later.reachable == frozenset()
    with pytest.raises(SourceRefusedError):
        later.list_files()


def test_the_local_instance_reaches_no_more_than_the_cloud():
    for local_instance in (True, False):
        source = parse_source("https://127.0.0.1:4566/moto-api/data.json", ACCESS,
                              local_instance=local_instance)
        with pytest.raises(SourceRefusedError, match=re.escape("127.0.0.1")):
            source.list_files()
    with pytest.raises(SourceRefusedError, match=re.escape("169.254.169.254")):
        parse_source("http://169.254.169.254/latest/meta-data/", ACCESS,
                     local_instance=True).list_files()


def test_parse_source_kinds():
    s3 = parse_source("s3://drop/batch1/", ACCESS, local_instance=False)
    assert isinstance(s3, S3Source) and (s3.bucket, s3.key) == ("drop", "batch1/")
    assert isinstance(parse_source("https://example.org/a.csv", ACCESS, local_instance=False),
                      HttpsSource)
    sftp = parse_source("sftp://bob@files.example.org:2222/out/", ACCESS, local_instance=False,
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
        parse_source(url, ACCESS, local_instance=False)
