"""`POST /datasets/{dataset}/uploads` and `POST /datasets/{dataset}/ingest`.

An ingest never runs inside the request (API Gateway gives up after 29 s): `start_ingest` checks,
creates the pending update, writes a job item (`edl-<instance>-jobs`: status `queued`) and starts
the job, then answers 202 with both ids. In the cloud the job is the Glue job
`edl-<instance>-ingest`, started here; on the local instance the local runtime's job runner picks
queued items from the jobs table and runs the same `IngestJob` with a warm Spark session.

Who may ingest from where (the job's rights must never become a way around access control):

- an `s3://` source in a drop bucket of the dataset's tier (any region of the instance), under
  `uploads/<dataset>/` (where `create_upload` puts files) or `<dataset>/` (where systems drop
  files for it): allowed to the dataset's writers, who are the only ones who get upload URLs there;
- any other bucket of the lake itself (`<bucket_prefix>-…`: data, other drop folders, artifacts,
  logs): refused — lake data moves through pipelines, not by re-ingesting it by URL;
- any other `s3://` source: the caller's own IAM policies must allow `s3:GetObject` on it and
  `s3:ListBucket` on its bucket, as IAM's policy simulator (`iam:SimulatePrincipalPolicy`)
  evaluates them for the caller's user or role. If IAM cannot answer (the local cloud has no
  simulator), the source is refused: unverifiable means no;
- `https://` (and `http://` on the local instance): public by nature; the job itself refuses
  loopback, link-local and reserved addresses;
- `sftp://`: refused through the API, which has no way to carry the caller's own SFTP
  credentials (the job's would not be theirs).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from edl import naming
from edl.naming import ingest_job_name
from edl.core_resources.pipelines.ingest.errors import IngestError
from edl.core_resources.pipelines.ingest.formats import FormatOptions
from edl.core_resources.rest_api.common import (ApiContext, BadRequest, Caller, Forbidden,
                                                Request, Unavailable, authorize, endpoint,
                                                module_handler)
from edl.utils.metadata import DatasetRecord

log = logging.getLogger("edl.rest_api.ingest")

UPLOAD_URL_SECONDS = 900
QUEUED = "queued"
_FILENAME_RE = re.compile(r"[A-Za-z0-9 ._()+,=@-]{1,200}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
    authorize(request.endpoint, request.caller, api.instance, dataset)
    filename = validate_filename(request.body["filename"])
    bucket = naming.drop_bucket(api.lake.config.bucket_prefix, api.instance.name, dataset.tier,
                                dataset.home_region)
    key = f"uploads/{dataset.dataset}/{api.new_id()}/{filename}"
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
    authorize(request.endpoint, request.caller, api.instance, dataset)
    body = request.body
    source = body["source"]
    check_source(api, request.caller, dataset, source)
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
    try:
        return FormatOptions(delimiter=body.get("delimiter"),
                             encoding=body.get("encoding", "utf-8"),
                             header=body.get("header", True))
    except IngestError as exc:
        raise BadRequest(exc.message, code="invalid_option") from None


def job_arguments(instance: str, dataset: str, update_id: str, job_id: str, caller_arn: str,
                  body: dict[str, Any], options: FormatOptions) -> dict[str, Any]:
    """The ingest job's command line (`python -m edl.core_resources.pipelines.ingest`) as Glue
    run arguments; the local job runner reads the same dict from the job item. A flag without a
    value is `True`."""
    arguments: dict[str, Any] = {
        "--instance": instance, "--dataset": dataset, "--source": body["source"],
        "--kind": body["kind"], "--update": update_id, "--job-id": job_id,
        "--requested-by": caller_arn, "--encoding": options.encoding}
    if options.delimiter is not None:
        arguments["--delimiter"] = options.delimiter
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
        api.jobs_table().update_item(
            Key={"job_id": job_id}, UpdateExpression="SET #s = :failed, #e = :error",
            ExpressionAttributeNames={"#s": "status", "#e": "error"},
            ExpressionAttributeValues={":failed": "failed", ":error": reason})
        raise Unavailable("the ingest job could not be started; retry shortly") from None
    api.jobs_table().update_item(
        Key={"job_id": job_id}, UpdateExpression="SET glue_run_id = :run",
        ExpressionAttributeValues={":run": run["JobRunId"]})


# -- may the caller read the source? -----------------------------------------------------------

def check_source(api: ApiContext, caller: Caller, dataset: DatasetRecord, source: str) -> None:
    """Refuse (403) a source the caller could not read themselves; see the module's rules."""
    url = urlparse(source)
    scheme = url.scheme.lower()
    if scheme == "s3":
        if not url.netloc:
            raise BadRequest(f"source {source!r} names no bucket", code="invalid_source")
        _check_s3_source(api, caller, dataset, url.netloc, unquote(url.path.lstrip("/")))
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
        raise BadRequest(f"unsupported source {source[:100]!r}: use s3://bucket/key or "
                         "https://host/path", code="invalid_source")


def _check_s3_source(api: ApiContext, caller: Caller, dataset: DatasetRecord, bucket: str,
                     key: str) -> None:
    prefix = api.lake.config.bucket_prefix
    drops = {naming.drop_bucket(prefix, api.instance.name, dataset.tier, region)
             for region in api.instance.regions}
    own_areas = (f"uploads/{dataset.dataset}/", f"{dataset.dataset}/")
    if bucket in drops:
        if key.startswith(own_areas) and ".." not in key.split("/"):
            return
        raise Forbidden(f"s3://{bucket}/{key} is not in {dataset.dataset}'s area of the drop "
                        f"bucket: use s3://{bucket}/uploads/{dataset.dataset}/… or "
                        f"s3://{bucket}/{dataset.dataset}/…", code="source_forbidden")
    if bucket.startswith(f"{prefix}-"):
        raise Forbidden(f"s3://{bucket}/ is one of the lake's own buckets; its data is not "
                        "ingested again by URL", code="source_forbidden")
    if not caller_may_read(api, caller, bucket, key):
        raise Forbidden(f"{caller.arn} may not read s3://{bucket}/{key} (or that could not be "
                        "verified), so the ingest job will not read it either; upload the file "
                        "with edl-api ingest --source ./FILE instead", code="source_forbidden")


def caller_may_read(api: ApiContext, caller: Caller, bucket: str, key: str) -> bool:
    """Whether IAM's policy simulator says the caller's own policies let them read the source."""
    iam = api.client("iam", None)
    try:
        principal = _principal_arn(iam, caller)
        objects = f"arn:aws:s3:::{bucket}/{key}" if key and not key.endswith("/") else \
            f"arn:aws:s3:::{bucket}/{key}*"
        results = []
        for action, resource in (("s3:GetObject", objects), ("s3:ListBucket",
                                                              f"arn:aws:s3:::{bucket}")):
            page = iam.simulate_principal_policy(PolicySourceArn=principal,
                                                 ActionNames=[action], ResourceArns=[resource])
            results.extend(r["EvalDecision"] for r in page["EvaluationResults"])
    except (ClientError, BotoCoreError, NotImplementedError, KeyError) as exc:
        log.warning("cannot verify that %s may read s3://%s/%s: %s", caller.arn, bucket, key, exc)
        return False
    return bool(results) and all(decision == "allowed" for decision in results)


def _principal_arn(iam, caller: Caller) -> str:
    """The IAM user or role behind the caller (a role session is simulated as its role)."""
    if caller.kind == "user":
        return caller.arn
    if caller.role_name:
        return iam.get_role(RoleName=caller.role_name)["Role"]["Arn"]
    raise KeyError(f"no IAM principal to simulate for {caller.arn}")


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
