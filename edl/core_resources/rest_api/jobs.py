"""`GET /jobs/{job_id}`: a job's status, progress and, when done, its update and any error.

The job item (`edl-<instance>-jobs`) is written `queued` by `start_ingest`; on the local instance
the local runtime's job runner moves it to `running` and then `succeeded` or `failed` (with
`error`), updating `progress` on the way. In the cloud a Glue run does not write the item, so
while the item says `queued` or `running` the run's state is read from Glue.
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

_FIELDS = ("job_id", "type", "dataset", "update_id", "status", "requested_by", "created_at",
           "started_at", "finished_at", "progress", "error", "request")
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
    view: dict[str, Any] = {name: plain(item.get(name)) for name in _FIELDS}
    if item.get("glue_run_id") and item.get("status") in ("queued", "running"):
        view.update(_glue_state(api, item["glue_run_id"]))
    return view


def _glue_state(api: ApiContext, run_id: str) -> dict[str, Any]:
    try:
        run = api.client("glue", None).get_job_run(
            JobName=ingest_job_name(api.instance.name), RunId=run_id)["JobRun"]
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
