"""How code reaches the lake's S3 data, on the driver and inside Spark tasks alike.

Spark tasks run in other processes (Python workers locally, other machines on Glue/EMR), so they
cannot reuse the driver's boto3 objects. `S3Access` is the small, picklable description a task
needs to build its own clients: region, endpoint (the local cloud's URL, `None` in AWS) and, on the
local cloud only, the driver's credentials. In AWS the tasks use their own role's credentials
(the Glue job role or the EMR instance profile), so no secret travels with a task.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class S3Access:
    region: str
    endpoint_url: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_session(cls, session: boto3.Session, region: str, endpoint_url: str | None,
                     pass_credentials: bool | None = None) -> S3Access:
        """Describe `session` for tasks; credentials travel only when asked (default: local)."""
        if pass_credentials is None:
            pass_credentials = endpoint_url is not None
        if not pass_credentials:
            return cls(region=region, endpoint_url=endpoint_url)
        creds = session.get_credentials().get_frozen_credentials()
        return cls(region=region, endpoint_url=endpoint_url, access_key=creds.access_key,
                   secret_key=creds.secret_key, session_token=creds.token)

    def client(self):
        return _client(self)

    def filesystem(self):
        """A pyarrow S3 filesystem; paths are `bucket/key`."""
        return _filesystem(self)


@functools.lru_cache(maxsize=8)
def _client(access: S3Access):
    from edl.aws import boto3_session

    return boto3_session().client(
        "s3", region_name=access.region, endpoint_url=access.endpoint_url,
        aws_access_key_id=access.access_key, aws_secret_access_key=access.secret_key,
        aws_session_token=access.session_token,
        config=Config(retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=16),
    )


@functools.lru_cache(maxsize=8)
def _filesystem(access: S3Access):
    from pyarrow import fs

    kwargs: dict = {"region": access.region}
    if access.endpoint_url:
        url = urlparse(access.endpoint_url)
        kwargs.update(endpoint_override=url.netloc, scheme=url.scheme or "https")
    if access.access_key:
        kwargs.update(access_key=access.access_key, secret_key=access.secret_key,
                      session_token=access.session_token)
    return fs.S3FileSystem(**kwargs)


def iter_objects(client, bucket: str, prefix: str) -> Iterator[dict]:
    """Every object under `prefix` (list_objects_v2 pages), as the API returns them."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


SINGLE_COPY_LIMIT = 5 << 30    # S3 copies at most 5 GiB in one CopyObject
COPY_PART = 512 << 20


def copy_object(client, source_bucket: str, source_key: str, bucket: str, key: str,
                size: int, *, checksum: bool = False) -> str | None:
    """Copy an object server-side (no byte passes through here): one CopyObject up to 5 GiB,
    above that a multipart upload of `UploadPartCopy` parts (boto3's managed copy). The copy
    takes the destination bucket's default encryption and no tags (copying tags would need
    `s3:GetObjectTagging` on the source).

    With `checksum`, S3 computes the copy's SHA-256 as it writes it (`ChecksumAlgorithm`) and
    the hex digest is returned: the whole object's for a single copy. A multipart copy only has
    a checksum of its parts' checksums, so above 5 GiB the copy is read back once and hashed
    here instead (the rare case pays; the common one costs nothing)."""
    if size <= SINGLE_COPY_LIMIT:
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        answer = client.copy_object(Bucket=bucket, Key=key,
                                    CopySource={"Bucket": source_bucket, "Key": source_key},
                                    TaggingDirective="REPLACE", **extra)
        if not checksum:
            return None
        digest = answer.get("CopyObjectResult", {}).get("ChecksumSHA256")
        if digest:
            return base64.b64decode(digest).hex()
        return object_sha256(client, bucket, key)
    from boto3.s3.transfer import TransferConfig

    client.copy({"Bucket": source_bucket, "Key": source_key}, bucket, key,
                Config=TransferConfig(multipart_threshold=SINGLE_COPY_LIMIT,
                                      multipart_chunksize=COPY_PART))
    return object_sha256(client, bucket, key) if checksum else None


def object_sha256(client, bucket: str, key: str) -> str:
    """The SHA-256 (hex) of an object's bytes, read once in 8 MiB chunks."""
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(8 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def delete_prefix(client, bucket: str, prefix: str) -> int:
    """Delete every object under `prefix`; returns how many were deleted."""
    keys = [{"Key": o["Key"]} for o in iter_objects(client, bucket, prefix)]
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start:start + 1000],
                                                     "Quiet": True})
    return len(keys)
