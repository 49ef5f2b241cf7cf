"""The sweep: what finishes the lifecycle of updates whose own job could not.

A job can die anywhere: its Glue run times out, its local runner is killed. Its update then stays
`pending` (invisible, but never finished), its files stay in staging or half-promoted, or - past
its commit point - its Glue registration never happens. The sweep, run periodically (by the
local runtime's job runner at start and every 30 s; in the cloud by the sweeper Lambda on an
EventBridge schedule, `sweeper.yaml`), repairs each case, idempotently:

- a `pending` update older than its deadline is failed, with the reason, and its files are
  removed. The deadline is measured from the update's start (its claim by a job; its creation if
  no job ever claimed it) and defaults to the ingest Glue job's own timeout (`Timeout: 2880`
  minutes in `ingest_job.yaml`) plus a margin, so no job that could still be running is failed;
  the local runner, which knows at once when its jobs died, abandons their updates itself
  (`abandon`);
- a `failed` update whose files were not removed (its job died before removing them, or it was
  fenced off by a later committer) has them removed;
- a `complete` update not registered in the Glue catalog is registered (a failed registration
  never fails a job; it only waits for this);
- a staging folder of an update that is no longer pending (a crash between the commit and the
  deletion of staging) is deleted;
- an active grant whose `expires_at` has passed is expired (its active pointer removed, so it
  vends nothing, which the broker already refused since the expiry itself) and the audit log
  says `expire`, by the sweeper, distinct from a revoke.

A failure to repair one update is reported and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl.errors import EdlError
from edl.naming import STAGING_ROOT, sweeper
from edl.utils.audit import AuditLog
from edl.utils.catalog import GlueCatalog
from edl.utils.context import LakeContext
from edl.utils.grants import GrantStateError, GrantStore
from edl.utils.staging import remove_update_files
from edl.utils.storage import delete_prefix
from edl.utils.updates import (
    COMPLETE,
    FAILED,
    PENDING,
    UnknownUpdateError,
    UpdateRecord,
    UpdateStateError,
)

log = logging.getLogger(__name__)

INGEST_JOB_TIMEOUT = timedelta(minutes=2880)   # ingest_job.yaml's Glue `Timeout`
PENDING_DEADLINE = INGEST_JOB_TIMEOUT + timedelta(minutes=15)
# Catalog registrations one sweep makes at most: a backlog (a lake moved to a new catalog
# layout, thousands of updates) is worked off over several sweeps instead of holding one - and,
# on the local runtime, the job runner that sweeps between jobs - for as long as it takes.
REGISTER_LIMIT = 50


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did, by `dataset/update` (grants by grant id)."""

    failed: tuple[str, ...] = ()
    cleaned: tuple[str, ...] = ()
    registered: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())
    expired: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        return {"failed": list(self.failed), "cleaned": list(self.cleaned),
                "registered": list(self.registered), "expired": list(self.expired),
                "errors": list(self.errors)}


class Sweeper:
    def __init__(self, context: LakeContext, *, deadline: timedelta = PENDING_DEADLINE,
                 now: Callable[[], datetime] = _utcnow,
                 register_limit: int = REGISTER_LIMIT) -> None:
        self.ctx = context
        self.deadline = deadline
        self._now = now
        self.register_limit = register_limit

    def sweep(self) -> SweepReport:
        failed: list[str | None] = []
        cleaned: list[str] = []
        registered: list[str] = []
        errors: list[str] = []
        hours = self.deadline.total_seconds() / 3600
        for update in self.ctx.updates.scan_updates(PENDING):
            if self._overdue(update):
                reason = (f"abandoned: still pending {hours:g} h after it started (its job died "
                          "or timed out)")
                self._guard(errors, update, partial(_collect, failed, self.abandon,
                                                    update.dataset, update.update_id, reason))
        for update in self.ctx.updates.scan_updates(FAILED):
            if not update.files_removed:
                self._guard(errors, update, partial(_collect, cleaned, self._clean, update))
        backlog = [u for u in self.ctx.updates.scan_updates(COMPLETE) if not u.catalog_registered]
        for update in backlog[:self.register_limit]:   # the rest at the next sweeps
            self._guard(errors, update, partial(_collect, registered, self._register, update))
        if len(backlog) > self.register_limit:
            log.info("sweep - %d complete update(s) still to register in the catalog",
                     len(backlog) - self.register_limit)
        self._guard_staging(errors, cleaned)
        expired = self.expire_grants(errors)
        report = SweepReport(tuple(u for u in failed if u), tuple(cleaned), tuple(registered),
                             tuple(errors), tuple(expired))
        if failed or cleaned or registered or expired or errors:
            log.info("sweep - failed %d, cleaned %d, registered %d, expired %d, errors %d",
                     len(failed), len(cleaned), len(registered), len(expired), len(errors))
        return report

    def abandon(self, dataset: str, update_id: str, reason: str) -> str:
        """Fail a pending update whose job is gone, and remove its files; → `dataset/update`
        ("" when it had finished meanwhile: a complete update is never touched)."""
        try:
            update = self.ctx.updates.fail_update(dataset, update_id, reason)
        except UpdateStateError:
            update = self.ctx.updates.get_update(dataset, update_id)
            if update.status != FAILED:
                return ""
        log.warning("sweep - %s/%s failed: %s", dataset, update_id, reason)
        self._clean(update)
        return f"{dataset}/{update_id}"

    def abandon_job(self, job_id: str, reason: str) -> list[str]:
        """Abandon the pending updates a dead job was working on (`job_id` on the update)."""
        return [done for u in self.ctx.updates.scan_updates(PENDING) if u.job_id == job_id
                for done in [self.abandon(u.dataset, u.update_id, reason)] if done]

    def expire_grants(self, errors: list[str]) -> list[str]:
        """Expire the active grants whose time is up, each audited; → their grant ids."""
        clock = lambda: self._now().timestamp()  # noqa: E731
        grants = GrantStore(self.ctx.metadata.table("grants"), clock=clock)
        audit = AuditLog(self.ctx.metadata.table("audit"), clock=clock)
        actor = sweeper(self.ctx.instance)
        expired: list[str] = []
        try:
            due = grants.expired_grants(clock())
        except (ClientError, BotoCoreError) as exc:
            errors.append(f"grants: {exc}")
            return expired
        for grant in due:
            try:
                after = grants.end(grant, "expire", actor=actor, now=clock())
                audit.record(dataset=after.dataset, action="expire", actor=actor,
                             grant_id=after.grant_id, level=after.level, reason=after.reason,
                             detail={"grantee": after.grantee, "expires_at": after.expires_at})
            except GrantStateError:
                continue   # revoked meanwhile: not expired
            except (EdlError, ClientError, BotoCoreError) as exc:
                log.warning("sweep - grant %s: %s", grant.grant_id, exc)
                errors.append(f"grant {grant.grant_id}: {exc}")
                continue
            log.info("sweep - grant %s of %s expired", grant.grant_id, grant.grantee)
            expired.append(grant.grant_id)
        return expired

    # -- one repair each ------------------------------------------------------------------------

    def _overdue(self, update: UpdateRecord) -> bool:
        started = update.started_at or update.created_at
        if not started:
            return False
        return self._now() - datetime.fromisoformat(started) > self.deadline

    def _clean(self, update: UpdateRecord) -> str:
        client = self._s3(update.dataset)
        removed = remove_update_files(client, update)
        self.ctx.updates.mark_files_removed(update.dataset, update.update_id)
        log.info("sweep - %s/%s: removed %d file(s)", update.dataset, update.update_id, removed)
        return f"{update.dataset}/{update.update_id}"

    def _register(self, update: UpdateRecord) -> str:
        dataset = self.ctx.metadata.get_dataset(update.dataset)
        GlueCatalog(self.ctx.glue(dataset.home_region), self.ctx.instance,
                    self.ctx.updates).register_update(dataset, update)
        self.ctx.updates.mark_registered(update.dataset, update.update_id)
        return f"{update.dataset}/{update.update_id}"

    def _guard_staging(self, errors: list[str], cleaned: list[str]) -> None:
        """Delete staging folders of updates that are not pending any more."""
        for dataset in self.ctx.metadata.list_datasets():
            try:
                client = self._s3(dataset.dataset)
                bucket = self.ctx.data_bucket(dataset)
                prefix = f"{STAGING_ROOT}/{dataset.dataset}/"
                pages = client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix, Delimiter="/")
                folders = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
                for folder in folders:
                    update_id = folder[len(prefix):].rstrip("/")
                    if self._status(dataset.dataset, update_id) != PENDING:
                        delete_prefix(client, bucket, folder)
                        cleaned.append(f"{dataset.dataset}/{update_id}")
            except (EdlError, ClientError, BotoCoreError) as exc:
                errors.append(f"{dataset.dataset} staging: {exc}")

    def _status(self, dataset: str, update_id: str) -> str:
        try:
            return self.ctx.updates.get_update(dataset, update_id).status
        except UnknownUpdateError:
            return ""   # staging of no update at all: nothing can still be writing it

    def _guard(self, errors: list[str], update: UpdateRecord, repair: Callable[[], None]) -> None:
        try:
            repair()
        except (EdlError, ClientError, BotoCoreError) as exc:
            log.warning("sweep - %s/%s: %s", update.dataset, update.update_id, exc)
            errors.append(f"{update.dataset}/{update.update_id}: {exc}")

    def _s3(self, dataset: str):
        return self.ctx.s3_access(self.ctx.metadata.get_dataset(dataset).home_region).client()


def _collect(into: list, repair: Callable[..., Any], *args: Any) -> None:
    """Run one repair and keep what it reports (a `dataset/update` label)."""
    into.append(repair(*args))
