"""The deployed pipelines (`edl-<instance>-pipelines`) and their runs (jobs of type `pipeline`).

`edl deploy-pipeline` registers a pipeline once its stack is deployed:

    {"pipeline": "visits_by_site", "kind": "pyspark", "trigger": "on_update",
     "inputs": ["visits"], "outputs": ["visits_by_site"], "config": {...pipeline_config...},
     "code_hash": "<sha256>", "package": "s3://<artifacts>/pipelines/<name>/<sha256>.zip",
     "job_name": "edl-<instance>-pipeline-<name>", "role_arn": "…", "deployed_at": "…"}

A run is an item of the jobs table, like an ingest (`type: pipeline`, `queued → running →
succeeded | failed`), whose `arguments` are the wrapper's command line; on the local cloud the
runtime's job runner runs it, in AWS the pipeline's Glue job. `on_update` triggers fire through
`queue_triggered_runs`: for a complete update of a dataset, one run of each on_update pipeline
that reads it, under a job id made of the pipeline, the dataset and the update, written only if
absent, so that the same input update never starts a pipeline twice.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from edl.errors import EdlError
from edl.utils.metadata import read_all

PIPELINE_JOB = "pipeline"
COMPACT_PIPELINE = "compact"     # the built-in pipeline of `edl compact`


class UnknownPipelineError(EdlError):
    exit_code = 3


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class PipelineStore:
    """The pipelines table of one instance (a boto3 DynamoDB resource's Table)."""

    def __init__(self, table, instance: str) -> None:
        self.table = table
        self.instance = instance

    def put(self, registration: dict[str, Any]) -> None:
        self.table.put_item(Item=registration)

    def get(self, name: str) -> dict[str, Any]:
        item = self.table.get_item(Key={"pipeline": name}, ConsistentRead=True).get("Item")
        if item is None:
            raise UnknownPipelineError(
                f"pipeline {name!r} is not deployed in instance {self.instance!r}",
                hint=f"deploy it first: edl deploy-pipeline pipelines/{name} "
                f"--instance {self.instance}")
        return item

    def all(self) -> list[dict[str, Any]]:
        return sorted(read_all(self.table.scan, ConsistentRead=True),
                      key=lambda i: i["pipeline"])

    def triggered_by(self, dataset: str) -> list[dict[str, Any]]:
        """The on_update pipelines that read `dataset` (the table is small: one scan)."""
        return [p for p in self.all()
                if p.get("trigger") == "on_update" and dataset in p.get("inputs", [])]


def run_job_item(pipeline: str, *, job_id: str | None = None, as_of: dict[str, str] | None = None,
                 requested_by: str = "", trigger: str = "manual") -> dict[str, Any]:
    """The jobs-table item of a pipeline run, queued."""
    job_id = job_id or f"pipeline-{pipeline}-{secrets.token_hex(6)}"
    arguments: dict[str, Any] = {"--pipeline": pipeline, "--job-id": job_id,
                                 "--requested-by": requested_by}
    if as_of:
        arguments["--as-of"] = [f"{alias}={update}" for alias, update in sorted(as_of.items())]
    return {"job_id": job_id, "status": "queued", "type": PIPELINE_JOB, "pipeline": pipeline,
            "created_at": _now(), "trigger": trigger, "requested_by": requested_by,
            "arguments": arguments}


def glue_run_arguments(arguments: dict[str, Any]) -> dict[str, str]:
    """A run's `arguments` as its Glue job takes them: each a string, a repeated one (`--as-of`)
    comma-joined, and no `--pipeline` (the job knows its own; its package is its default)."""
    return {key: ",".join(value) if isinstance(value, list) else str(value)
            for key, value in arguments.items() if key != "--pipeline"}


def queue_run(jobs_table, item: dict[str, Any]) -> bool:
    """Write a queued run's item unless one with its id exists; → whether it was written."""
    try:
        jobs_table.put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def triggered_job_id(pipeline: str, dataset: str, update_id: str) -> str:
    """The one job id a complete update of `dataset` gives an on_update run of `pipeline`."""
    digest = hashlib.sha256(f"{pipeline}\0{dataset}\0{update_id}".encode()).hexdigest()[:16]
    return f"pipeline-{pipeline}-on-{digest}"


def queue_triggered_runs(store: PipelineStore, jobs_table, dataset: str, update_id: str, *,
                         produced_by: str | None = None) -> list[str]:
    """Queue one run of every on_update pipeline reading `dataset`, for its complete update
    `update_id`; → the job ids queued now (a run queued before for the same update is not
    queued again). An update a pipeline wrote itself (`produced_by`) does not start that
    pipeline again."""
    queued = []
    for registration in store.triggered_by(dataset):
        name = registration["pipeline"]
        if name == produced_by:
            continue
        job_id = triggered_job_id(name, dataset, update_id)
        item = run_job_item(name, job_id=job_id, trigger=f"on_update {dataset} {update_id}",
                            requested_by="on_update")
        if queue_run(jobs_table, item):
            queued.append(job_id)
    return queued


def fetch_package(client, url: str, cache: Path, folder: str = "pipeline") -> Path:
    """The code folder (`pipeline/`, or a Lambda project's `project/`) of the package at `url`
    (`s3://bucket/key`), unpacked once under `cache` (by the package's key, which names its
    content); → the folder."""
    import shutil
    import tempfile
    import zipfile

    bucket, _, key = url.removeprefix("s3://").partition("/")
    target = cache / hashlib.sha256(url.encode()).hexdigest()[:24]
    if (target / folder).is_dir():
        return target / folder
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=cache, prefix=".unpacking-"))
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        archive_path = work / "package.zip"
        archive_path.write_bytes(body)
        with zipfile.ZipFile(archive_path) as archive:
            for member in archive.infolist():
                name = Path(member.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise EdlError(f"package {url} holds a path outside its folder: "
                                   f"{member.filename}", hint="deploy it again")
                if member.filename.startswith(f"{folder}/"):
                    archive.extract(member, work)
        archive_path.unlink()
        try:
            work.rename(target)
        except OSError:   # unpacked meanwhile by another run: theirs is the same
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target / folder
