"""The `edl-api` sub-commands: each takes its parsed options and a `Session` (the API, the UI, a
clock), makes its call(s) and hands the answer to `report` — or prints the raw JSON with --json.
Each returns the exit code."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.status import Status

from edl.errors import EdlError
from edl.ui import UI
from edl_api import report
from edl_api.lake_api import LakeApi, local_file


class JobFailedError(EdlError):
    """The job ended in `failed`; the message carries the job's own error."""


@dataclass
class Session:
    """What a sub-command works with. The API client is built on first use, so that bad input
    is refused before credentials or the API's URL are looked up."""

    connect: Callable[[], LakeApi]
    ui: UI
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)  # wall time, for "expires in"

    @cached_property
    def api(self) -> LakeApi:
        return self.connect()


def datasets(opts: argparse.Namespace, s: Session) -> int:
    items = s.api.list_datasets(max_items=opts.limit)
    if opts.json:
        report.print_json(s.ui, {"items": items, "next_token": None})
    else:
        report.datasets_table(s.ui, items)
    return 0


def dataset(opts: argparse.Namespace, s: Session) -> int:
    record = s.api.get_dataset(opts.name)
    if opts.json:
        report.print_json(s.ui, record)
    else:
        report.dataset_details(s.ui, record)
    return 0


def updates(opts: argparse.Namespace, s: Session) -> int:
    items = s.api.list_updates(opts.name, status=opts.status, max_items=opts.limit)
    if opts.json:
        report.print_json(s.ui, {"items": items, "next_token": None})
    else:
        report.updates_table(s.ui, opts.name, items)
    return 0


def lineage(opts: argparse.Namespace, s: Session) -> int:
    items = [u for u in s.api.list_updates(opts.name) if opts.all or u.get("lineage")]
    if opts.json:
        report.print_json(s.ui, {"dataset": opts.name, "items": [
            {"update_id": u.get("update_id"), "status": u.get("status"),
             "kind": u.get("kind"), "lineage": u.get("lineage") or None} for u in items]})
    else:
        report.lineage_table(s.ui, opts.name, items)
    return 0


def update(opts: argparse.Namespace, s: Session) -> int:
    record = s.api.get_update(opts.name, opts.update_id)
    if opts.json:
        report.print_json(s.ui, record)
    else:
        report.update_details(s.ui, record)
    return 0


def job(opts: argparse.Namespace, s: Session) -> int:
    record = s.api.get_job(opts.job_id)
    if opts.json:
        report.print_json(s.ui, record)
    else:
        report.job_details(s.ui, record)
    return 0


def ingest(opts: argparse.Namespace, s: Session) -> int:
    local_file(opts.source)  # a missing local file is refused before any request
    options = {"format": opts.format, "delimiter": opts.delimiter, "quote": opts.quote,
               "encoding": opts.encoding, "header": opts.header}
    with _UploadView(s.ui) as view:
        started = s.api.ingest(opts.name, opts.source, opts.kind, options, on_upload=view.start)
    if not opts.wait:
        if opts.json:
            report.print_json(s.ui, started)
        else:
            report.ingest_started(s.ui, opts.name, started)
        return 0
    if not opts.json:
        report.ingest_started(s.ui, opts.name, started)
    job_id = started.get("job_id")
    if not job_id:
        raise EdlError("the API's ingest answer has no job_id, so there is nothing to wait for",
                       hint=f"look at the update: edl-api update {opts.name} "
                            f"{started.get('update_id', 'ID')}")
    with JobView(s.ui) as view:
        final = s.api.wait_for_job(job_id, timeout=opts.timeout, on_poll=view.show,
                                   sleep=s.sleep, clock=s.clock)
    if opts.json:
        report.print_json(s.ui, final)
    if final.get("status") != "succeeded":
        raise JobFailedError(
            f"job {job_id} failed: {report.job_error(final)}",
            hint=f"details: edl-api update {opts.name} {final.get('update_id') or started.get('update_id', 'ID')}")
    if not opts.json:
        s.ui.success(f"update {final.get('update_id') or started.get('update_id')} of "
                     f"{opts.name} is complete")
    return 0


class _UploadView:
    """A byte progress bar while a local file uploads (a single line when not on a terminal)."""

    def __init__(self, ui: UI) -> None:
        self.ui = ui
        self._progress: Progress | None = None

    def __enter__(self) -> _UploadView:
        return self

    def start(self, path: Path, total: int) -> Callable[[int], None] | None:
        self.ui.info(f"uploading {path} ({report.size(total)})")
        if not self.ui.err.is_terminal:
            return None
        progress = Progress("[progress.description]{task.description}", BarColumn(),
                            DownloadColumn(), TransferSpeedColumn(),
                            console=self.ui.err, transient=True)
        self._progress = progress
        progress.start()
        task = progress.add_task(path.name, total=total)
        return lambda sent: progress.update(task, completed=sent)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


class JobView:
    """A spinner with the job's status and progress on a terminal; else a line per change."""

    def __init__(self, ui: UI) -> None:
        self.ui = ui
        self._status: Status | None = None
        self._last = ""

    def __enter__(self) -> JobView:
        if self.ui.err.is_terminal:
            status = self.ui.err.status("waiting for the job")
            self._status = status
            status.start()
        return self

    def show(self, job: dict[str, Any]) -> None:
        line = report.job_line(job)
        if self._status is not None:
            self._status.update(escape(line))
        elif line != self._last:
            self.ui.info(line)
        self._last = line

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            self._status.stop()
            if self._last:
                self.ui.info(self._last)
