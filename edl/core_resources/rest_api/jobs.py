"""`GET /jobs/{job_id}`: a job's status, progress and, when done, what it wrote and any error.

The job item (`edl-<instance>-jobs`) is written `queued` by `start_ingest` (an ingest: its
dataset and update) or `start_pipeline_run` (a pipeline run: its pipeline and, once done, its
inputs and outputs); on the local instance the local runtime's job runner moves it to `running`
and then `succeeded` or `failed` (with `error`), updating `progress` on the way. In the cloud a
Glue run does not write the item: the handler that started it notes its run id
(`note_glue_run`), and while the item says `queued` or `running` the run's state is read from
Glue (the item's `job_name`, else the ingest job).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl.core_resources.rest_api.common import (
    ApiContext,
    NotFound,
    Request,
    authorize,
    endpoint,
    module_handler,
    plain,
)
from edl.naming import ingest_job_name
from edl.utils.pipelines import PIPELINE_JOB

_FIELDS = ("job_id", "type", "dataset", "update_id", "status", "requested_by", "created_at",
           "started_at", "finished_at", "progress", "error", "request")
_RUN_FIELDS = ("job_id", "type", "pipeline", "status", "trigger", "requested_by", "created_at",
               "started_at", "finished_at", "progress", "error", "run_id", "inputs", "outputs",
               "duration_seconds")
_GLUE_STATES = {"STARTING": "running", "RUNNING": "running", "WAITING": "running",
                "STOPPING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
                "ERROR": "failed", "TIMEOUT": "failed", "STOPPED": "failed"}


@endpoint("get_job")
def get_job(request: Request, api: ApiContext) -> dict:
    authorize(request.endpoint, request.caller, api.instance)
    job_id = request.path["job_id"]
    item = api.jobs_table().get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    if item is None:
        raise NotFound(f"there is no job {job_id!r}")
    fields = _RUN_FIELDS if item.get("type") == PIPELINE_JOB else _FIELDS
    view: dict[str, Any] = {name: plain(item.get(name)) for name in fields}
    if item.get("glue_run_id") and item.get("status") in ("queued", "running"):
        job_name = item.get("job_name") or ingest_job_name(api.instance.name)
        view.update(_glue_state(api, job_name, item["glue_run_id"]))
    return view


def note_glue_run(api: ApiContext, job_id: str, run_id: str) -> None:
    """Record on the job item the Glue run that carries it out."""
    api.jobs_table().update_item(
        Key={"job_id": job_id}, UpdateExpression="SET glue_run_id = :run",
        ExpressionAttributeValues={":run": run_id})


def fail_job(api: ApiContext, job_id: str, reason: str) -> None:
    """Mark a job failed before it ran (its Glue run could not be started)."""
    api.jobs_table().update_item(
        Key={"job_id": job_id}, UpdateExpression="SET #s = :failed, #e = :error",
        ExpressionAttributeNames={"#s": "status", "#e": "error"},
        ExpressionAttributeValues={":failed": "failed", ":error": reason})


def _glue_state(api: ApiContext, job_name: str, run_id: str) -> dict[str, Any]:
    try:
        run = api.client("glue", None).get_job_run(JobName=job_name, RunId=run_id)["JobRun"]
    except (ClientError, BotoCoreError):
        return {}  # the item's own status stands
    state = {"status": _GLUE_STATES.get(run.get("JobRunState", ""), "running")}
    if run.get("ErrorMessage"):
        state["error"] = run["ErrorMessage"]
    if run.get("StartedOn"):
        state["started_at"] = run["StartedOn"].isoformat()
    if run.get("CompletedOn"):
        state["finished_at"] = run["CompletedOn"].isoformat()
    return state


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
