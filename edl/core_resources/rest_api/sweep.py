"""The sweeper Lambda: `edl.utils.sweep` on a schedule, in the cloud.

An EventBridge rule (`sweeper.yaml`) invokes `handler` every few minutes; it fails updates still
pending past their deadline and removes their files, removes what failed updates left, deletes
stray staging folders and registers complete updates the Glue catalog does not have yet. It is
not an API endpoint: it lives beside the handlers because it is packaged with them (one zip)
and runs as its own role. On the local cloud the job runner runs the same sweep.
"""

from __future__ import annotations

import logging

from edl.utils.context import LakeContext
from edl.utils.sweep import Sweeper

log = logging.getLogger(__name__)


def handler(event, context) -> dict:
    """EventBridge's scheduled event in, what the sweep did out (also in the function's log).
    The instance comes from `$EDL_INSTANCE`, AWS through the function's role."""
    report = Sweeper(LakeContext.for_instance(None)).sweep()
    log.info("sweep - %s", report.to_dict())
    return report.to_dict()
