"""Bringing an S3 source from outside the lake into a dataset's drop area, as the caller.

The API takes S3 sources only from a dataset's own drop area: which objects the ingest job would
read under a prefix, and whether the caller may read each of them — by their IAM rights *and*
the bucket's policy — only S3 knows, and only when the caller reads them. So `edl-api ingest
--source s3://elsewhere/…` reads the source itself, with the caller's own credentials (S3 decides,
object by object, as for any read of theirs), into a local temporary file, and then uploads that
file exactly as it uploads a local one. The job then reads only the drop area, which the API
already authorises.

What is read is what the job would read from the same URL: the object the key names, or, when the
key is not an object, every object under `key/`. An object comes as itself; a prefix as one zip
archive (stored, not compressed) holding every object by its path below the prefix, which the
job unpacks into the same raw paths it would have given them. A source the caller may not read
is refused before anything is uploaded, naming the object.

Buckets of the lake itself (`<bucket_prefix>-…`) are not copied: they go to the API as they are,
which allows the dataset's drop area and refuses the rest.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from edl.aws import AwsSessions, Identity
from edl.config import get_config
from edl.errors import EdlError, UsageError

MiB = 1 << 20
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9 ._()+,=@-]")


class SourceReadError(EdlError):
    """The caller could not read an S3 source outside the lake with their own credentials."""


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int
    path: str   # where the job puts it in the update's raw folder


@dataclass(frozen=True)
class OutsideSources:
    """Reads S3 sources outside the lake with the caller's S3 client (built on first use)."""

    s3: Callable[[], Any]
    lake_bucket_prefix: str

    @classmethod
    def for_instance(cls, instance_name: str, profile: str | None = None) -> OutsideSources:
        """As the caller named by `profile` (or the AWS environment), the way the API client
        signs: the same session factory, and the local cloud's endpoint on `local`."""
        config = get_config()
        sessions = AwsSessions(config.instance(instance_name), Identity.from_environment(profile))
        return cls(s3=lambda: sessions.client("s3"), lake_bucket_prefix=config.bucket_prefix)

    def is_outside(self, source: str) -> bool:
        """Whether `source` is an s3:// URL of a bucket that is not one of the lake's."""
        url = urlparse(source)
        return url.scheme.lower() == "s3" and bool(url.netloc) and \
            not url.netloc.startswith(f"{self.lake_bucket_prefix}-")

    def fetch(self, source: str, folder: Path) -> Path:
        """Read `source` into a file in `folder`, as the caller; the file's path."""
        url = urlparse(source)
        bucket, key = url.netloc, unquote(url.path.lstrip("/"))
        client = self.s3()
        objects = list(_objects(client, bucket, key, source))
        if len(objects) == 1 and objects[0].key == key:
            target = folder / upload_name(objects[0].path)
            with target.open("wb") as out:
                _copy(client, bucket, objects[0].key, out, source)
            return target
        target = folder / (upload_name(posixpath.basename(key.rstrip("/")) or bucket) + ".zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for obj in objects:
                info = zipfile.ZipInfo(obj.path)
                info.file_size = obj.size
                with archive.open(info, "w", force_zip64=obj.size >= 1 << 31) as out:
                    _copy(client, bucket, obj.key, out, source)
        return target


def upload_name(name: str) -> str:
    """`name` as a file name the API accepts for an upload (other characters become `_`)."""
    cleaned = _UNSAFE_CHARS.sub("_", name).lstrip(".")[-200:]
    return cleaned.replace("..", "_") or "source"


def _objects(client, bucket: str, key: str, source: str) -> Iterator[SourceObject]:
    """What the ingest job reads from s3://bucket/key (see its `S3Source.list_files`)."""
    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            yield SourceObject(key, head["ContentLength"], posixpath.basename(key))
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in _NOT_FOUND:
                raise _refused(exc, f"s3://{bucket}/{key}") from None
        except BotoCoreError as exc:
            raise _refused(exc, f"s3://{bucket}/{key}") from None
    prefix = key.rstrip("/") + "/" if key else ""
    found = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    found += 1
                    yield SourceObject(obj["Key"], obj["Size"], obj["Key"][len(prefix):])
    except (ClientError, BotoCoreError) as exc:
        raise _refused(exc, f"s3://{bucket}/{prefix}") from None
    if not found:
        raise UsageError(f"{source} does not exist (no object, and no objects under it)",
                         hint="check the bucket and key")


def _copy(client, bucket: str, key: str, out, source: str) -> None:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with body:
            shutil.copyfileobj(body, out, 8 * MiB)
    except (ClientError, BotoCoreError) as exc:
        raise _refused(exc, f"s3://{bucket}/{key}") from None


def _refused(exc: Exception, url: str) -> SourceReadError:
    code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
    code = {"403": "AccessDenied", "Forbidden": "AccessDenied"}.get(code, code)  # HEAD: no body
    return SourceReadError(
        f"you cannot read {url} ({code}), so it is not ingested",
        hint="the ingest reads an S3 source outside the lake with your own credentials: ask "
             "the bucket's owner for s3:GetObject and s3:ListBucket, or use --profile")
