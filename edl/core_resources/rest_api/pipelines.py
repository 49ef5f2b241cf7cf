"""`POST /pipelines/{pipeline}/runs`: start a run of a deployed pipeline (DESIGN §4).

Who may start a run: the platform admin, or a caller who may write every output of the
pipeline - its owner, or the holder of an active write grant (on the internal tier too: its
default is read only, `tiers.yaml`). A run writes a new update of each output, so starting one
is writing them all; what it reads is its own role's, fixed when the pipeline was deployed.
The outputs' records and the caller's write pointers are read in one BatchGetItem.

Every decision is audited under each output: a run started is a `run` event per output (how the
caller may write it, and the job); a refusal for want of write is a `refuse` event under each
output the caller may not write, and the 403 names them all. Nothing is queued on a refusal.

The run is the one `edl run-pipeline` starts: a job item of type `pipeline` (`run_job_item`,
requested by the caller's ARN) in the jobs table, status `queued`. On the local instance the
runtime's job runner picks it up; in the cloud the pipeline's Glue job is started here with the
same arguments, as `start_ingest` starts the ingest job (if Glue refuses, the job is marked
failed and the answer is a 503). `GET /jobs/{job_id}` follows it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl.core_resources.rest_api.access import authorized_actor
from edl.core_resources.rest_api.audit import audited, record_event
from edl.core_resources.rest_api.common import (
    ApiContext,
    BadRequest,
    Forbidden,
    Request,
    Unavailable,
    endpoint,
    module_handler,
)
from edl.core_resources.rest_api.jobs import fail_job, note_glue_run
from edl.utils.grants import active_from, pointer_keys
from edl.utils.pipelines import PipelineStore, glue_run_arguments, queue_run, run_job_item
from edl.utils.tier_policy import Actor
from edl.utils.updates import format_update_id

log = logging.getLogger("edl.rest_api.pipelines")

QUEUED = "queued"


@dataclass(frozen=True)
class WriteBasis:
    """Why the caller may write one output: `owner`, `grant` (with its id) or `admin`."""

    dataset: str
    basis: str
    grant_id: str | None = None


@endpoint("start_pipeline_run")
@audited("start_pipeline_run")
def start_pipeline_run(request: Request, api: ApiContext) -> tuple[int, dict]:
    actor = authorized_actor(request.endpoint, request.caller, api.instance)
    name = request.path["pipeline"]
    registration = PipelineStore(api.lake.metadata.table("pipelines"), api.instance.name).get(name)
    writes = write_bases(api, actor, name, list(registration["outputs"]))
    as_of = checked_as_of(name, registration, request.body.get("as_of") or {})

    item = run_job_item(name, job_id=f"pipeline-{name}-{api.new_id()}", as_of=as_of,
                        requested_by=request.caller.arn)
    item["job_name"] = registration["job_name"]
    for write in writes:
        record_event(api, request, "run", dataset=write.dataset, level="write",
                     grant_id=write.grant_id,
                     detail={"pipeline": name, "job_id": item["job_id"], "basis": write.basis,
                             "as_of": as_of})
    if not queue_run(api.jobs_table(), item):
        raise Unavailable("a job of the same id exists already; retry")
    if not api.lake.is_local:
        _start_glue_run(api, item)
    log.info("%s - run %s queued by %s", name, item["job_id"], request.caller.arn)
    return 202, {"job_id": item["job_id"], "pipeline": name, "status": QUEUED}


def write_bases(api: ApiContext, actor: Actor, pipeline: str,
                outputs: list[str]) -> list[WriteBasis]:
    """How `actor` may write each output (in the order given); `Forbidden`, naming every output
    they may not write, unless they may write them all."""
    metadata = api.lake.metadata
    keys = {dataset: pointer_keys(dataset, actor.principal, "write") for dataset in outputs}
    found = metadata.get_many({"datasets": [{"dataset": d} for d in outputs],
                               "grants": [k for dataset_keys in keys.values()
                                          for k in dataset_keys]}, consistent=("grants",))
    records = {item["dataset"]: item for item in found["datasets"]}
    pointers = {(item["dataset"], item["grant_id"]): item for item in found["grants"]}
    now = api.now()
    writes, lacking = [], []
    for dataset in outputs:
        record = metadata.dataset_from(dataset, records.get(dataset))
        grant = active_from([pointers.get((k["dataset"], k["grant_id"])) for k in keys[dataset]],
                            now)
        if actor.owns(record.owner):
            writes.append(WriteBasis(dataset, "owner"))
        elif grant is not None:
            writes.append(WriteBasis(dataset, "grant", grant.grant_id))
        elif actor.is_admin:
            writes.append(WriteBasis(dataset, "admin"))
        else:
            lacking.append(dataset)
    if lacking:
        asks = "; ".join(f"edl-api grant request {d} --level write" for d in lacking)
        raise Forbidden(
            f"{actor.principal} may not start a run of pipeline {pipeline}: a run writes every "
            f"output ({', '.join(outputs)}), and you may not write {', '.join(lacking)}; only "
            f"a platform admin or someone who may write them all starts one. Ask with: {asks}",
            code="no_write", subjects=tuple(lacking))
    return writes


def checked_as_of(pipeline: str, registration: dict[str, Any],
                  as_of: dict[str, str]) -> dict[str, str]:
    """The body's `as_of` (input alias → update id, the ids' shape checked by api_config.yaml):
    each alias one of the pipeline's inputs (else 400), each id in its ten-digit form."""
    inputs = sorted(json.loads(registration["config"])["inputs"])
    unknown = sorted(set(as_of) - set(inputs))
    if unknown:
        raise BadRequest(f"as_of names {', '.join(unknown)}, which pipeline {pipeline} has no "
                         f"input called (its inputs: {', '.join(inputs) or 'none'})",
                         code="unknown_input")
    return {alias: format_update_id(update) for alias, update in sorted(as_of.items())}


def _start_glue_run(api: ApiContext, item: dict[str, Any]) -> None:
    """Start the run's Glue job; if Glue refuses, the job is marked failed and the caller is
    told to retry."""
    try:
        run = api.client("glue", None).start_job_run(
            JobName=item["job_name"], Arguments=glue_run_arguments(item["arguments"]))
    except (ClientError, BotoCoreError) as exc:
        reason = f"the pipeline's Glue job {item['job_name']} could not be started ({exc})"
        log.error("%s - %s", item["pipeline"], reason)
        fail_job(api, item["job_id"], reason)
        raise Unavailable("the pipeline's job could not be started; retry shortly") from None
    note_glue_run(api, item["job_id"], run["JobRunId"])


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
