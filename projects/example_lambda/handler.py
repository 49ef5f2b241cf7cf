"""Quality check of an update of clinical_trials, run by Lambda on each complete update.

The event is the lake's `EDL Update Complete` event (`detail`: dataset, update_id), or, when
invoked by hand, any event whose `detail` names a dataset (and optionally an update: the newest
complete one otherwise). The function runs as the project's role, which may read exactly the
datasets of lambda_config.yaml.
"""

import logging
import os

from edl.utils.context import LakeContext
from edl.utils.updates import COMPLETE

log = logging.getLogger(__name__)


def handle(event, context):
    detail = event.get("detail") or {}
    dataset = detail.get("dataset", "clinical_trials")
    lake = LakeContext.for_instance()   # as this function's role, in EDL_INSTANCE
    if detail.get("update_id"):
        update = lake.updates.get_update(dataset, detail["update_id"])
    else:
        complete = lake.updates.list_updates(dataset, status=COMPLETE)
        if not complete:
            raise ValueError(f"{dataset} has no complete update to check")
        update = max(complete, key=lambda u: u.commit_position)
    columns = [c["name"] for c in update.columns]
    required = [c for c in os.environ.get("REQUIRED_COLUMNS", "").split(",") if c]
    missing = [c for c in required if c not in columns]
    minimum = int(os.environ.get("MIN_ROWS", "1"))
    log.info("%s update %s: %d rows, %d columns", dataset, update.update_id, update.rows,
             len(columns))
    if update.rows < minimum or missing:
        raise ValueError(f"{dataset} update {update.update_id} fails the check: "
                         f"{update.rows} rows (at least {minimum}), missing columns "
                         f"{missing or 'none'}")
    return {"dataset": dataset, "update_id": update.update_id, "kind": update.kind,
            "rows": update.rows, "columns": columns, "ok": True,
            "request_id": context.aws_request_id}
