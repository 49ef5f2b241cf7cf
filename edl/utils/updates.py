"""The update model: allocating update ids, and the pending → complete | failed lifecycle.

An update is one immutable addition to a dataset (DESIGN §1). Its item lives in the `updates`
table (HASH `dataset`, RANGE `update_id`). Rules, each enforced by a DynamoDB condition so they
hold across processes and machines:

- ids come from the atomic counter `update_seq` on the dataset's item (`ADD`), so two concurrent
  ingests never get the same id; ids are zero-padded (`0000000007`) to sort lexically in numeric
  order, and the new item is written only if no item with that id exists;
- a job claims a pending update (`job_id` set once), so two jobs never work on one update;
- `complete` and `failed` are written only over `pending`: a complete update is never rewritten,
  and a second attempt on it is refused with `UpdateStateError`.

Commit order. Ids are allocated when an ingest starts, but updates complete in any order, so
reads order complete updates by `commit_seq`, a second counter on the dataset's item taken at the
commit point. To keep "as of N" repeatable, no update may become complete with a position below
one that is already readable. Commits of one dataset therefore pass one at a time through a lock
on the dataset's item (`committing` = the update, `committing_since`): taking the lock and taking
the position (`ADD commit_seq`) are one conditional write, the complete record is written, then
the lock is released. A committer that died holding the lock leaves a gap, never a duplicate: the
next committer waits out the lease, fails the holder's update if it is still pending (so it can
never complete at the older position), and takes the lock over (`edl.utils.commit_lock`). Items
written before commit positions existed have no `commit_seq`; they sort first, by update id.

The item stays small whatever the update's width (DynamoDB items stop at 400 KB): the schema is
kept once (`arrow_schema`; `columns` is derived from it), and the per-file detail (paths, formats,
rows, checksums, each file's own columns) and each part's SHA-256 live in the update's manifest
object, `<dataset>/data/<update>/_edl_manifest.json`, whose own SHA-256 is in the item
(`manifest_sha256`). Items written before this kept a `files` list; it is still read.

Two bookkeeping flags are set after an update is finished, and change nothing a reader sees:
`catalog_registered` on a complete update (its Glue registration succeeded; the sweep retries it
otherwise) and `files_removed` on a failed one (its files are gone; the sweep removes them
otherwise). The item keeps which layout of the catalog the update was registered in
(`catalog_layout`, `CATALOG_LAYOUT` today: a view per dataset and a table of its updates,
`edl.utils.catalog`); an update registered in an older layout counts as not registered, so the
sweep registers it again and so moves its dataset to today's layout.

Readers see complete updates only; a pending update (running, or whose job died) and a failed one
are invisible. A rerun always allocates a new id.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from edl import naming
from edl.errors import EdlError
from edl.utils.commit_lock import CommitLock
from edl.utils.metadata import Tables, UnknownDatasetError, plain, read_all
from edl.utils.schemas import describe_schema, schema_from_text

PENDING, COMPLETE, FAILED = "pending", "complete", "failed"
KINDS = ("snapshot", "delta")
# The Glue catalog's layout (edl.utils.catalog): 1, a table per dataset mixing every update;
# 2, a view per dataset over a table of its updates.
CATALOG_LAYOUT = 2
# Ids tried when the dataset's counter lags behind its updates (allocate_update).
_ALLOCATE_ATTEMPTS = 5
ID_WIDTH = 10
MANIFEST = naming.MANIFEST_NAME


class UpdateStateError(EdlError):
    """An update is not in the state an operation needs (e.g. rewriting a complete update)."""


class UnknownUpdateError(EdlError):
    exit_code = 3


def format_update_id(seq: int | str) -> str:
    """`7` or `"7"` or `"0000000007"` → `"0000000007"`."""
    text = str(seq).strip()
    if not text.isdigit():
        raise UnknownUpdateError(f"invalid update id {seq!r}",
                                 hint="update ids are numbers, e.g. 0000000007 or 7")
    return f"{int(text):0{ID_WIDTH}d}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class FileRecord:
    """One file of an update: where it sits under raw/, its format, and what it held."""

    path: str
    format: str
    rows: int
    bytes: int
    sha256: str
    part: str
    columns: tuple[dict[str, str], ...] = ()

    def to_item(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "rows": self.rows, "bytes": self.bytes,
                "sha256": self.sha256, "part": self.part, "columns": list(self.columns)}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> FileRecord:
        return cls(path=item["path"], format=item["format"], rows=int(item["rows"]),
                   bytes=int(item["bytes"]), sha256=item["sha256"], part=item["part"],
                   columns=tuple({"name": c["name"], "type": c["type"]}
                                 for c in item.get("columns", [])))


@dataclass(frozen=True)
class UpdateRecord:
    dataset: str
    update_id: str
    kind: str
    status: str
    source: str
    bucket: str
    requested_by: str = ""
    job_id: str = ""
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    rows: int = 0
    bytes: int = 0
    part_count: int = 0
    file_count: int = 0
    files: tuple[FileRecord, ...] = ()
    columns: tuple[dict[str, str], ...] = ()
    arrow_schema: str = field(default="", repr=False)
    reason: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    commit_seq: int = 0
    manifest_sha256: str = ""
    catalog_registered: bool = False   # in the catalog's current layout
    files_removed: bool = False
    # a pipeline's output: the run that made it (edl.utils.lineage); {} for an ingest
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_prefix(self) -> str:
        return f"{self.dataset}/raw/{self.update_id}/"

    @property
    def data_prefix(self) -> str:
        return f"{self.dataset}/data/{self.update_id}/"

    @property
    def manifest_key(self) -> str:
        return f"{self.data_prefix}{MANIFEST}"

    @property
    def staging_raw_prefix(self) -> str:
        return naming.staging_raw_prefix(self.dataset, self.update_id)

    @property
    def staging_data_prefix(self) -> str:
        return naming.staging_data_prefix(self.dataset, self.update_id)

    @property
    def commit_position(self) -> tuple[int, int]:
        """Where the update sits in the order updates became complete: by `commit_seq`, after
        every update committed before commit positions existed (those sort by id)."""
        if self.commit_seq:
            return (1, self.commit_seq)
        return (0, int(self.update_id))

    def part_keys(self) -> list[str]:
        return [f"{self.data_prefix}{part_name(i)}" for i in range(self.part_count)]

    def to_item(self) -> dict[str, Any]:
        item = {
            "dataset": self.dataset, "update_id": self.update_id, "kind": self.kind,
            "status": self.status, "source": self.source, "bucket": self.bucket,
            "requested_by": self.requested_by, "job_id": self.job_id,
            "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "rows": self.rows, "bytes": self.bytes,
            "part_count": self.part_count, "file_count": self.file_count,
            # the schema once: `columns` only where there is no Arrow schema to derive it from
            "columns": [] if self.arrow_schema else list(self.columns),
            "arrow_schema": self.arrow_schema, "reason": self.reason, "options": self.options,
            "commit_seq": self.commit_seq or None, "manifest_sha256": self.manifest_sha256,
            "catalog_registered": self.catalog_registered or None,
            "catalog_layout": CATALOG_LAYOUT if self.catalog_registered else None,
            "files_removed": self.files_removed or None,
            "lineage": self.lineage or None,
        }
        return {k: v for k, v in item.items() if v not in ("", None, [], {})}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> UpdateRecord:
        arrow_schema = item.get("arrow_schema", "")
        columns = item_columns(item)
        return cls(
            dataset=item["dataset"], update_id=item["update_id"], kind=item["kind"],
            status=item["status"], source=item.get("source", ""), bucket=item.get("bucket", ""),
            requested_by=item.get("requested_by", ""), job_id=item.get("job_id", ""),
            created_at=item.get("created_at", ""), started_at=item.get("started_at", ""),
            finished_at=item.get("finished_at", ""), rows=int(item.get("rows", 0)),
            bytes=int(item.get("bytes", 0)), part_count=int(item.get("part_count", 0)),
            file_count=int(item.get("file_count", 0)),
            files=tuple(FileRecord.from_item(f) for f in item.get("files", [])),
            columns=tuple(columns),
            arrow_schema=arrow_schema, reason=item.get("reason", ""),
            options=plain(item.get("options", {})),
            commit_seq=int(item.get("commit_seq", 0)),
            manifest_sha256=item.get("manifest_sha256", ""),
            catalog_registered=bool(item.get("catalog_registered", False))
            and int(item.get("catalog_layout", 1)) >= CATALOG_LAYOUT,
            files_removed=bool(item.get("files_removed", False)),
            lineage=plain(item.get("lineage") or {}),
        )


def item_columns(item: dict[str, Any]) -> list[dict[str, str]]:
    """An update item's columns (name and type): derived from its Arrow schema, which items
    hold once; items written before that hold the list itself."""
    if item.get("columns"):
        return [{"name": c["name"], "type": c["type"]} for c in item["columns"]]
    schema = item.get("arrow_schema")
    return list(describe_schema(schema_from_text(schema))) if schema else []


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


class UpdateStore:
    """Allocates, claims, completes and fails updates in the `updates` table of one instance."""

    def __init__(self, dynamodb, instance: str, now: Callable[[], str] = _now, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.instance = instance
        self._dynamodb = dynamodb
        self._now = now
        self._clock = clock
        self._sleep = sleep
        self._table = Tables(dynamodb, instance)

    # -- lifecycle ------------------------------------------------------------------------------

    def allocate_update(self, dataset: str, kind: str, source: str, bucket: str, *,
                        requested_by: str = "", job_id: str = "",
                        options: dict[str, Any] | None = None) -> UpdateRecord:
        """Take the next id from the dataset's counter and write the pending update.

        An id already taken means the counter lags (a restored table, or moto, whose `ADD` is
        not atomic under concurrent callers): the next ids are tried, a few of them; a counter
        far behind is an error that says how to repair it."""
        naming.validate_dataset_name(dataset)
        if kind not in KINDS:
            raise UpdateStateError(f"unknown update kind {kind!r}",
                                   hint=f"choose one of: {', '.join(KINDS)}")
        for _attempt in range(_ALLOCATE_ATTEMPTS):
            record = UpdateRecord(
                dataset=dataset, update_id=format_update_id(self._next_seq(dataset)), kind=kind,
                status=PENDING, source=source, bucket=bucket, requested_by=requested_by,
                job_id=job_id, created_at=self._now(), options=dict(options or {}),
            )
            try:
                self._table("updates").put_item(
                    Item=record.to_item(), ConditionExpression="attribute_not_exists(update_id)")
                return record
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        raise UpdateStateError(
            f"{dataset} update {record.update_id} already exists; the dataset's update counter "
            "is behind its updates",
            hint="raise update_seq on the dataset's item above its newest update id")

    def _next_seq(self, dataset: str) -> int:
        try:
            return int(self._table("datasets").update_item(
                Key={"dataset": dataset},
                UpdateExpression="ADD update_seq :one",
                ConditionExpression="attribute_exists(dataset)",
                ExpressionAttributeValues={":one": 1},
                ReturnValues="UPDATED_NEW",
            )["Attributes"]["update_seq"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise UnknownDatasetError(
                    f"dataset {dataset!r} does not exist in instance {self.instance!r}",
                    hint=f"deploy it first: edl deploy-dataset {dataset} --instance "
                    f"{self.instance} ...") from None
            raise

    def claim_update(self, dataset: str, update_id: str, job_id: str) -> UpdateRecord:
        """Mark a pending update as worked on by `job_id`; refused if it is not pending or
        another job has it."""
        try:
            item = self._table("updates").update_item(
                Key={"dataset": dataset, "update_id": update_id},
                UpdateExpression="SET job_id = :job, started_at = :now",
                ConditionExpression="attribute_exists(update_id) AND #s = :pending AND "
                "(attribute_not_exists(job_id) OR job_id = :job OR job_id = :empty)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":job": job_id, ":now": self._now(),
                                           ":pending": PENDING, ":empty": ""},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            current = self.get_update(dataset, update_id)
            raise UpdateStateError(
                f"{dataset} update {update_id} is {current.status}"
                + (f" and taken by job {current.job_id}" if current.status == PENDING else "")
                + "; it cannot be ingested again",
                hint="updates are immutable: ingest again without --update to create a new one",
            ) from None
        return UpdateRecord.from_item(item)

    def complete_update(self, record: UpdateRecord) -> UpdateRecord:
        """Write the finished update (rows, schema, manifest checksum) and make it visible, only
        if it is still pending: the single commit point of an ingest. It takes the next commit
        position under the dataset's commit lock (see the module docstring)."""
        lock = CommitLock(self._table("datasets"), is_pending=self._is_pending,
                          fence=self._fence, clock=self._clock, sleep=self._sleep)
        seq = lock.acquire(record.dataset, record.update_id)
        try:
            done = replace(record, status=COMPLETE, finished_at=self._now(), reason="",
                           commit_seq=seq)
            self._write_final(done)
        finally:
            lock.release(record.dataset, record.update_id)
        return done

    def _is_pending(self, dataset: str, update_id: str) -> bool:
        return self.get_update(dataset, update_id).status == PENDING

    def _fence(self, dataset: str, update_id: str, reason: str) -> None:
        """Fail a dead committer's update so that it can never complete."""
        # it may have finished meanwhile; either way it is no longer pending
        with contextlib.suppress(UpdateStateError):
            self.fail_update(dataset, update_id, reason)

    def fail_update(self, dataset: str, update_id: str, reason: str, *,
                    lineage: dict[str, Any] | None = None) -> UpdateRecord:
        """Mark a pending update failed with `reason` (and, for a pipeline's output, the run's
        `lineage`); refused (`UpdateStateError`) if it is finished already."""
        current = self.get_update(dataset, update_id)
        failed = replace(current, status=FAILED, finished_at=self._now(), reason=reason[:4000],
                         lineage=dict(lineage) if lineage else current.lineage)
        self._write_final(failed)
        return failed

    def mark_registered(self, dataset: str, update_id: str) -> None:
        """Record that a complete update is in the Glue catalog, in its current layout
        (bookkeeping, not data)."""
        self._table("updates").update_item(
            Key={"dataset": dataset, "update_id": update_id},
            UpdateExpression="SET #f = :true, #layout = :layout", ConditionExpression="#s = :status",
            ExpressionAttributeNames={"#f": "catalog_registered", "#layout": "catalog_layout",
                                      "#s": "status"},
            ExpressionAttributeValues={":true": True, ":layout": CATALOG_LAYOUT,
                                       ":status": COMPLETE})

    def mark_files_removed(self, dataset: str, update_id: str) -> None:
        """Record that a failed update's files (staging and promoted) are gone."""
        self._set_flag(dataset, update_id, "files_removed", FAILED)

    def _set_flag(self, dataset: str, update_id: str, flag: str, status: str) -> None:
        self._table("updates").update_item(
            Key={"dataset": dataset, "update_id": update_id},
            UpdateExpression="SET #f = :true", ConditionExpression="#s = :status",
            ExpressionAttributeNames={"#f": flag, "#s": "status"},
            ExpressionAttributeValues={":true": True, ":status": status})

    def _write_final(self, record: UpdateRecord) -> None:
        try:
            self._table("updates").put_item(
                Item=record.to_item(),
                ConditionExpression="attribute_exists(update_id) AND #s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":pending": PENDING},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            current = self.get_update(record.dataset, record.update_id)
            raise UpdateStateError(
                f"{record.dataset} update {record.update_id} is already {current.status}; "
                "a finished update is never rewritten",
                hint="ingest again to create a new update") from None

    # -- reading --------------------------------------------------------------------------------

    def get_update(self, dataset: str, update_id: str) -> UpdateRecord:
        update_id = format_update_id(update_id)
        item = self._table("updates").get_item(
            Key={"dataset": dataset, "update_id": update_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise UnknownUpdateError(
                f"dataset {dataset!r} has no update {update_id}",
                hint=f"list its updates: lake.list_updates({dataset!r})")
        return UpdateRecord.from_item(item)

    def list_updates(self, dataset: str, status: str | None = None) -> list[UpdateRecord]:
        """The dataset's updates in id order (optionally only those in `status`)."""
        from boto3.dynamodb.conditions import Key

        items = read_all(self._table("updates").query,
                         KeyConditionExpression=Key("dataset").eq(dataset), ConsistentRead=True)
        records = sorted((UpdateRecord.from_item(i) for i in items), key=lambda r: r.update_id)
        return [r for r in records if status is None or r.status == status]

    def scan_updates(self, status: str) -> list[UpdateRecord]:
        """Every dataset's updates in `status` (for the sweep: a scan with a filter, read
        page by page; its cost grows with the table, once per sweep)."""
        from boto3.dynamodb.conditions import Attr

        items = read_all(self._table("updates").scan,
                         FilterExpression=Attr("status").eq(status), ConsistentRead=True)
        return sorted((UpdateRecord.from_item(i) for i in items),
                      key=lambda r: (r.dataset, r.update_id))

