"""The lake's events: what the commit step tells EventBridge when an update becomes complete.

    {"Source": "edl.lake", "DetailType": "EDL Update Complete", "EventBusName": "default",
     "Detail": {"instance", "dataset", "update_id", "kind", "rows"}}

In AWS the ingest job and the pipeline wrapper put one such event on the account's default bus
after each commit; Lambda projects with an `on_update` trigger have an EventBridge rule on it
(lambda_project.yaml). On the local cloud the runtime's job runner starts those invocations
itself after the job, so nothing is put there. A put that fails is logged and the update
stands: an event is a notification, never part of the commit.
"""

from __future__ import annotations

import json
import logging

from edl.utils.context import LakeContext
from edl.utils.lambdas import UPDATE_EVENT_SOURCE, UPDATE_EVENT_TYPE
from edl.utils.updates import UpdateRecord

log = logging.getLogger(__name__)


def update_complete_entry(instance: str, update: UpdateRecord) -> dict:
    """The PutEvents entry of a complete update."""
    return {"Source": UPDATE_EVENT_SOURCE, "DetailType": UPDATE_EVENT_TYPE,
            "EventBusName": "default",
            "Detail": json.dumps({"instance": instance, "dataset": update.dataset,
                                  "update_id": update.update_id, "kind": update.kind,
                                  "rows": update.rows})}


def publish_update_complete(ctx: LakeContext, update: UpdateRecord, region: str) -> bool:
    """Tell EventBridge (in `region`, the dataset's home) that `update` is complete; → whether
    it was put. Nothing on the local cloud (the job runner triggers there)."""
    if ctx.is_local or ctx.events is None:
        return False
    try:
        answer = ctx.events(region).put_events(  # type: ignore[attr-defined]
            Entries=[update_complete_entry(ctx.instance, update)])
    except Exception as exc:  # noqa: BLE001 - the commit stands; the event is a notification
        log.warning("%s/%s - could not put its EDL Update Complete event: %s", update.dataset,
                    update.update_id, exc)
        return False
    if answer.get("FailedEntryCount"):
        log.warning("%s/%s - EventBridge refused its EDL Update Complete event: %s",
                    update.dataset, update.update_id, answer.get("Entries"))
        return False
    return True
