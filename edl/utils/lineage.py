"""Lineage: which input updates, code and run made an output update (DESIGN §4).

Each output update of a pipeline run carries a `lineage` record in its item (complete or
failed):

    {"pipeline": "visits_by_site", "run_id": "<uuid>", "job_id": "pipeline-…",
     "code_hash": "<sha256 of the pipeline folder>",
     "inputs": [{"alias": "visits", "dataset": "visits", "update_id": "0000000004",
                 "updates": ["0000000001", "0000000003", "0000000004"]}],
     "outputs": [{"alias": "by_site", "dataset": "visits_by_site", "update_id": "0000000002"}]}

(an input's `update_id` is the update it was read as of, `updates` the snapshot and deltas that
made it), and the run emits one OpenLineage `RunEvent` at its start and one at its end (`COMPLETE` or
`FAIL`), kept with the run (the job's item) and, when `OPENLINEAGE_URL` is set (the variable the
OpenLineage clients read), POSTed to `<url>/api/v1/lineage`. A lineage endpoint that is down
costs a warning, never the run. Datasets are named in OpenLineage as `s3://<data bucket>` +
the dataset's name, their update as the dataset version facet.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
PRODUCER = "urn:edl:pipelines"
URL_VARIABLE = "OPENLINEAGE_URL"
START, COMPLETE, FAIL = "START", "COMPLETE", "FAIL"


@dataclass(frozen=True)
class DatasetVersion:
    """One dataset as a run read or wrote it: alias, dataset, update and its data bucket."""

    alias: str
    dataset: str
    update_id: str
    bucket: str
    updates: tuple[str, ...] = ()   # an input's: the updates read (its snapshot, then deltas)

    def to_record(self) -> dict:
        record: dict = {"alias": self.alias, "dataset": self.dataset, "update_id": self.update_id}
        if self.updates:
            record["updates"] = list(self.updates)
        return record

    def to_openlineage(self) -> dict[str, Any]:
        return {"namespace": f"s3://{self.bucket}", "name": self.dataset,
                "facets": {"version": {"_producer": PRODUCER,
                                       "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/"
                                                     "DatasetVersionDatasetFacet.json",
                                       "datasetVersion": self.update_id}}}


def lineage_record(*, pipeline: str, run_id: str, job_id: str, code_hash: str,
                   inputs: list[DatasetVersion], outputs: list[DatasetVersion]) -> dict[str, Any]:
    """What each output update of the run keeps in its item's `lineage`."""
    return {"pipeline": pipeline, "run_id": run_id, "job_id": job_id, "code_hash": code_hash,
            "inputs": [i.to_record() for i in inputs],
            "outputs": [o.to_record() for o in outputs]}


def run_event(event_type: str, *, instance: str, pipeline: str, run_id: str, code_hash: str,
              inputs: list[DatasetVersion], outputs: list[DatasetVersion],
              error: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """One OpenLineage RunEvent of a pipeline run."""
    run_facets: dict[str, Any] = {}
    if error is not None:
        run_facets["errorMessage"] = {
            "_producer": PRODUCER, "message": error[:4000], "programmingLanguage": "python",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"}
    return {
        "eventType": event_type,
        "eventTime": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "producer": PRODUCER, "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": f"edl://{instance}", "name": pipeline,
                "facets": {"sourceCodeLocation": {
                    "_producer": PRODUCER, "type": "edl-package", "url": f"sha256:{code_hash}",
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/"
                                  "SourceCodeLocationJobFacet.json"}}},
        "inputs": [i.to_openlineage() for i in inputs],
        "outputs": [o.to_openlineage() for o in outputs],
    }


def post_event(event: dict[str, Any], url: str | None = None, timeout: float = 5.0) -> bool:
    """POST `event` to the OpenLineage endpoint (`url`, else `$OPENLINEAGE_URL`), if any;
    → whether it was accepted. Failures are logged, never raised."""
    base = url if url is not None else os.environ.get(URL_VARIABLE, "")
    if not base:
        return False
    target = base.rstrip("/") + "/api/v1/lineage"
    request = urllib.request.Request(target, data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return 200 <= answer.status < 300
    except Exception as exc:  # noqa: BLE001 - lineage is reported, never a reason to fail
        log.warning("lineage - could not send the %s event to %s: %s", event.get("eventType"),
                    target, exc)
        return False
