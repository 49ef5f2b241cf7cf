"""`POST /datasets/{dataset}/uploads` and `POST /datasets/{dataset}/ingest`.

An ingest never runs inside the request (API Gateway gives up after 29 s): `start_ingest` checks,
creates the pending update, writes a job item (`edl-<instance>-jobs`: status `queued`) and starts
the job, then answers 202 with both ids. In the cloud the job is the Glue job
`edl-<instance>-ingest`, started here; on the local instance the local runtime's job runner picks
queued items from the jobs table and runs the same `IngestJob` with a warm Spark session.

Who may ingest from where (the job's rights must never become a way around access control):

- `s3://` only in a drop bucket of the dataset's tier (any region of the instance), under
  `uploads/<dataset>/` (where `create_upload` puts files) or `<dataset>/` (where systems drop
  files for it): the dataset's writers may ingest there, and the job, which reads a prefix when
  the key is not an object, reads nothing outside that area (a dataset cannot be named like an
  area, `naming.RESERVED_DATASET_NAMES`);
- any other `s3://` source is refused, the lake's own buckets as well as anyone else's. Which
  objects the job would read under a prefix, and whether the caller may read each of them with
  the bucket's policy as well as their own, is only known to S3 when the caller reads them: so
  `edl-api ingest --source s3://…` reads them itself, with the caller's own credentials, puts
  them into the dataset's drop area through `create_upload`, and ingests from there;
- `https://` (and `http://` on the local instance): public by nature; the job itself refuses
  loopback, link-local and reserved addresses;
- `sftp://`: refused through the API, which has no way to carry the caller's own SFTP
  credentials (the job's would not be theirs).

`SOURCE_SCHEMES` (in `edl.naming`, shared with the client) lists what the API takes.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from edl import naming
from edl.core_resources.pipelines.ingest.errors import IngestError
from edl.core_resources.pipelines.ingest.formats import FormatOptions
from edl.core_resources.rest_api.common import (
    ApiContext,
    BadRequest,
    Forbidden,
    Request,
    Unavailable,
    authorize,
    endpoint,
    module_handler,
)
from edl.core_resources.rest_api.jobs import fail_job, note_glue_run
from edl.naming import ingest_job_name
from edl.utils.metadata import DatasetRecord

log = logging.getLogger("edl.rest_api.ingest")

UPLOAD_URL_SECONDS = 900
QUEUED = "queued"
_FILENAME_RE = re.compile(r"[A-Za-z0-9 ._()+,=@-]{1,200}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- uploads ----------------------------------------------------------------------------------

def validate_filename(name: str) -> str:
    if "/" in name or "\\" in name or ".." in name or name.startswith(".") \
            or not _FILENAME_RE.fullmatch(name):
        raise BadRequest(f"invalid filename {name[:80]!r}: use a plain file name (letters, "
                         "digits, spaces and ._()+,=@-), no folders and no '..'",
                         code="invalid_filename")
    return name


@endpoint("create_upload")
def create_upload(request: Request, api: ApiContext) -> tuple[int, dict]:
    dataset = api.lake.metadata.get_dataset(request.dataset_name())
    authorize(request.endpoint, request.caller, api.instance, dataset, grants=api.grants())
    filename = validate_filename(request.body["filename"])
    bucket = naming.drop_bucket(api.lake.config.bucket_prefix, api.instance.name, dataset.tier,
                                dataset.home_region)
    key = f"{naming.drop_areas(dataset.dataset)[0]}{api.new_id()}/{filename}"
    url = api.client("s3", dataset.home_region).generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=UPLOAD_URL_SECONDS)
    log.info("%s - upload URL for %s by %s", dataset.dataset, key, request.caller.arn)
    # `headers`: what the PUT must send besides the body (the URL signs only the host today).
    return 201, {"url": url, "method": "PUT", "headers": {}, "bucket": bucket, "key": key,
                 "source": f"s3://{bucket}/{key}", "expires_in": UPLOAD_URL_SECONDS}


# -- ingest ------------------------------------------------------------------------------------

@endpoint("start_ingest")
def start_ingest(request: Request, api: ApiContext) -> tuple[int, dict]:
    dataset = api.lake.metadata.get_dataset(request.dataset_name())
    authorize(request.endpoint, request.caller, api.instance, dataset, grants=api.grants())
    body = request.body
    source = body["source"]
    check_source(api, dataset, source)
    options = _format_options(body)

    job_id = f"ingest-{api.new_id()}"
    bucket = api.lake.data_bucket(dataset)
    update = api.lake.updates.allocate_update(
        dataset.dataset, body["kind"], source, bucket, requested_by=request.caller.arn,
        options=options.to_dict())
    arguments = job_arguments(api.instance.name, dataset.dataset, update.update_id, job_id,
                              request.caller.arn, body, options)
    item = {"job_id": job_id, "type": "ingest", "dataset": dataset.dataset,
            "update_id": update.update_id, "status": QUEUED, "requested_by": request.caller.arn,
            "created_at": _now(), "request": dict(body), "arguments": arguments}
    api.jobs_table().put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")
    if not api.lake.is_local:
        _start_glue_job(api, dataset.dataset, update.update_id, job_id, arguments)
    log.info("%s/%s - job %s queued by %s", dataset.dataset, update.update_id, job_id,
             request.caller.arn)
    return 202, {"dataset": dataset.dataset, "update_id": update.update_id, "job_id": job_id,
                 "status": QUEUED}


def _format_options(body: dict[str, Any]) -> FormatOptions:
    """The body's parse options, checked as the job will check them: a bad one is a 400 now,
    not a failed update later."""
    try:
        return FormatOptions(delimiter=body.get("delimiter"), quote=body.get("quote", '"'),
                             encoding=body.get("encoding", "utf-8"),
                             header=body.get("header", True), format=body.get("format"))
    except IngestError as exc:
        message = exc.message if not exc.hint else f"{exc.message} ({exc.hint})"
        raise BadRequest(message, code="invalid_option") from None


def job_arguments(instance: str, dataset: str, update_id: str, job_id: str, caller_arn: str,
                  body: dict[str, Any], options: FormatOptions) -> dict[str, Any]:
    """The ingest job's command line (`python -m edl.core_resources.pipelines.ingest`) as Glue
    run arguments; the local job runner reads the same dict from the job item. A flag without a
    value is `True`."""
    arguments: dict[str, Any] = {
        "--instance": instance, "--dataset": dataset, "--source": body["source"],
        "--kind": body["kind"], "--update": update_id, "--job-id": job_id,
        "--requested-by": caller_arn, "--encoding": options.encoding}
    if options.format is not None:
        arguments["--format"] = options.format
    if options.delimiter is not None:
        arguments["--delimiter"] = options.delimiter
    if options.quote != FormatOptions.quote:
        arguments["--quote"] = options.quote
    if not options.header:
        arguments["--no-header"] = True
    return arguments


def _start_glue_job(api: ApiContext, dataset: str, update_id: str, job_id: str,
                    arguments: dict[str, Any]) -> None:
    """Start the Glue job; if Glue refuses, the update and the job are marked failed (nothing
    is left pending) and the caller is told to retry."""
    # Glue passes every argument as `--name value`: a flag gets a value the job ignores.
    glue_arguments = {k: "true" if v is True else str(v) for k, v in arguments.items()}
    try:
        run = api.client("glue", None).start_job_run(
            JobName=ingest_job_name(api.instance.name), Arguments=glue_arguments)
    except (ClientError, BotoCoreError) as exc:
        reason = f"the ingest job could not be started ({exc})"
        log.error("%s/%s - %s", dataset, update_id, reason)
        api.lake.updates.fail_update(dataset, update_id, reason)
        fail_job(api, job_id, reason)
        raise Unavailable("the ingest job could not be started; retry shortly") from None
    note_glue_run(api, job_id, run["JobRunId"])


# -- may the caller read the source? -----------------------------------------------------------

def check_source(api: ApiContext, dataset: DatasetRecord, source: str) -> None:
    """Refuse (403) a source the caller could not read themselves, and (400) one the API does
    not take; see the module's rules."""
    url = urlparse(source)
    scheme = url.scheme.lower()
    if scheme == "s3":
        if not url.netloc:
            raise BadRequest(f"source {source!r} names no bucket", code="invalid_source")
        _check_s3_source(api, dataset, url.netloc, unquote(url.path.lstrip("/")))
    elif scheme == "https" or (scheme == "http" and api.lake.is_local):
        if not url.hostname:
            raise BadRequest(f"source {source!r} has no host", code="invalid_source")
        if url.username or url.password:
            raise BadRequest("put no credentials in the source URL", code="invalid_source")
    elif scheme == "sftp":
        raise BadRequest("sftp:// sources cannot be ingested through the API (it cannot carry "
                         "your SFTP credentials); copy the file to the drop bucket first "
                         "(edl-api ingest uploads local files)", code="invalid_source")
    elif scheme == "http":
        raise BadRequest("plain http:// sources are refused; use https://",
                         code="invalid_source")
    else:
        schemes = ", ".join(f"{name}://" for name in naming.SOURCE_SCHEMES)
        raise BadRequest(f"unsupported source {source[:100]!r}: the API takes {schemes} "
                         "sources", code="invalid_source")


def _check_s3_source(api: ApiContext, dataset: DatasetRecord, bucket: str, key: str) -> None:
    prefix = api.lake.config.bucket_prefix
    drops = {naming.drop_bucket(prefix, api.instance.name, dataset.tier, region)
             for region in api.instance.regions}
    own_areas = naming.drop_areas(dataset.dataset)
    if bucket in drops:
        if key.startswith(own_areas) and ".." not in key.split("/"):
            return
        raise Forbidden(f"s3://{bucket}/{key} is not in {dataset.dataset}'s area of the drop "
                        f"bucket: use s3://{bucket}/{own_areas[0]}… or "
                        f"s3://{bucket}/{own_areas[1]}…", code="source_forbidden")
    if bucket.startswith(f"{prefix}-"):
        raise Forbidden(f"s3://{bucket}/ is one of the lake's own buckets; its data is not "
                        "ingested again by URL", code="source_forbidden")
    raise Forbidden(f"s3://{bucket}/{key} is outside {dataset.dataset}'s drop area, and the "
                    "ingest job reads only what the API can vouch you may read; run edl-api "
                    f"ingest {dataset.dataset} --source s3://{bucket}/{key}, which copies it "
                    "into the drop area with your own credentials first",
                    code="source_forbidden")


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
