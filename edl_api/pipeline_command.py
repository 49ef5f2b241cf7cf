"""`edl-api run-pipeline`: start a run of a deployed pipeline through the REST API, as you.

The API starts it when you are the platform admin or may write every output of the pipeline
(you own it, or hold a write grant on it); a refusal names the outputs you may not write. The run
is a job: `--wait` follows it (`GET /jobs/{job_id}`) until it has succeeded or failed, as
`edl-api ingest --wait` follows an ingest, and then shows the updates it wrote.
"""

from __future__ import annotations

import argparse
import re

from edl.errors import EdlError, UsageError
from edl_api import report
from edl_api.commands import JobFailedError, JobView, Session

_ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")   # an input's alias (pipeline_config)

SUMMARY = "start a run of a deployed pipeline (admin, or write on its outputs)"
DESCRIPTION = """Start a run of a deployed pipeline: its inputs as of their newest complete
updates (or --as-of ALIAS=UPDATE), each output written as a new update. You may start one if
you are the platform admin or may write every output (you own it, or hold a write grant; ask
with `edl-api grant request DATASET --level write`). Answers at once with the run's job id;
--wait follows the job until it has succeeded or failed."""


def parse_as_of(values: list[str] | None) -> dict[str, str]:
    """`["visits=4", "sites=0000000002"]` → `{"visits": "0000000004", "sites": "0000000002"}`,
    refused (before any request) unless each is ALIAS=UPDATE."""
    from edl.utils.updates import format_update_id

    found: dict[str, str] = {}
    for value in values or []:
        alias, sep, update = (part.strip() for part in value.partition("="))
        if not sep or not _ALIAS_RE.fullmatch(alias) or not update:
            raise UsageError(f"--as-of {value!r} is not ALIAS=UPDATE",
                             hint="name an input by its alias in pipeline_config.yaml, e.g. "
                                  "--as-of visits=0000000004")
        if not update.isdigit() or len(update) > 10:
            raise UsageError(f"--as-of {value!r}: {update!r} is not an update id",
                             hint="update ids are numbers, e.g. 0000000004 or 4")
        found[alias] = format_update_id(update)
    return found


def run_pipeline(opts: argparse.Namespace, s: Session) -> int:
    as_of = parse_as_of(opts.as_of)
    started = s.api.start_pipeline_run(opts.name, as_of)
    if opts.json and not opts.wait:
        report.print_json(s.ui, started)
        return 0
    if not opts.json:
        report.pipeline_run_started(s.ui, started)
    if not opts.wait:
        return 0
    job_id = started.get("job_id")
    if not job_id:
        raise EdlError("the API's answer has no job_id, so there is nothing to wait for",
                       hint="this is a mismatch between edl-api and the API's version")
    with JobView(s.ui) as view:
        final = s.api.wait_for_job(job_id, timeout=opts.timeout, on_poll=view.show,
                                   sleep=s.sleep, clock=s.clock)
    if opts.json:
        report.print_json(s.ui, final)
    if final.get("status") != "succeeded":
        raise JobFailedError(f"run {job_id} of pipeline {opts.name} failed: "
                             f"{report.job_error(final)}",
                             hint="its output updates are failed and invisible; see the run "
                                  f"with: edl-api job {job_id}")
    if not opts.json:
        for line in report.run_outputs(final) or [f"run {job_id} succeeded"]:
            s.ui.success(line)
    return 0
