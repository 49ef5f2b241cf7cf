"""Reading the lake: a dataset's updates, and the dataset as of any update.

    from edl.utils import lake
    lake.list_updates("clinical_trials")                 # UpdateRecords, oldest first
    df = lake.read(spark, "clinical_trials")             # newest snapshot, later deltas applied
    df = lake.read(spark, "clinical_trials", as_of="0000000004")   # time travel
    table = lake.query("SELECT site, count(*) FROM clinical_trials GROUP BY site")  # SQL

Every function takes `instance=` (default: `$EDL_INSTANCE`), `profile=` (the caller: an AWS
profile, default `AWS_PROFILE` or the AWS environment) and, for jobs, tests and callers that
already hold clients, `context=` (a `LakeContext`). Without a context the caller reads as a user
(`LakeContext.for_reader`): metadata with their own credentials, each dataset's data with the
short-lived credentials the lake's broker vends them for (dataset, read), refreshed as they near
their expiry; the broker is asked only when data is read, and refuses a caller without a grant
(`NoGrantError`, whose hint is the `edl-api grant request` to make).

    df = lake.read(spark, "trials", instance="local", profile="bob")

How a read is made (DESIGN §1): only complete updates count, in the order they became complete
(`UpdateRecord.commit_position`, not their ids: an update allocated early may complete late). As
of update N, take the newest snapshot committed no later than N, then every delta committed after
it and no later than N; so what "as of N" returns never changes once N is complete. The deltas
are read *once*, all together, next to the snapshot; every row carries its update's commit
position and its position in the update; one window per key, ordered by those two, keeps the
last row; rows whose operation column holds the delete
marker then remove their key. That is one shuffle whatever the number of deltas, so the cost grows
with rows, not with deltas squared. The operation column is dropped from the result unless the
snapshot itself has it. Every part is checked against the SHA-256 in its update's manifest;
the manifest itself against the checksum in the update's item.

How Spark reaches the parts depends on the Spark (`edl.utils.lake_paths`): in the cloud (Glue 5
runs Spark 3.5) Spark reads `s3://` itself; locally pyspark 4's Python data source streams them
with pyarrow, and a pyspark 3.5 without S3 has RDD tasks do the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edl.errors import EdlError, UsageError
from edl.utils.context import LakeContext
from edl.utils.lake_paths import UpdateParts, parts_path
from edl.utils.metadata import DatasetRecord
from edl.utils.part_io import ORDER_COLUMN, ROW_COLUMN, PartToRead
from edl.utils.schemas import schema_from_text, sparkable_schema, unify_schemas
from edl.utils.staging import part_checksums, read_manifest
from edl.utils.updates import (
    COMPLETE,
    FileRecord,
    UnknownUpdateError,
    UpdateRecord,
    format_update_id,
)


class NoDataError(EdlError):
    exit_code = 3


@dataclass(frozen=True)
class ReadPlan:
    """Which updates make the dataset as of `as_of`: a base snapshot (or none) and deltas."""

    as_of: str
    snapshot: UpdateRecord | None
    deltas: tuple[UpdateRecord, ...]


def plan_read(dataset: str, updates: list[UpdateRecord], as_of: str | None = None) -> ReadPlan:
    complete = sorted((u for u in updates if u.status == COMPLETE),
                      key=lambda u: u.commit_position)
    if as_of is not None:
        wanted = format_update_id(as_of)
        match = [u for u in updates if u.update_id == wanted]
        if not match:
            raise UnknownUpdateError(f"dataset {dataset!r} has no update {wanted}",
                                     hint=f"list its updates: lake.list_updates({dataset!r})")
        if match[0].status != COMPLETE:
            raise UnknownUpdateError(
                f"{dataset} update {wanted} is {match[0].status}; only complete updates can "
                "be read", hint="pick a complete update from lake.list_updates(...)")
        target = match[0]
    elif complete:
        target = complete[-1]
    else:
        raise NoDataError(f"dataset {dataset!r} has no complete update yet",
                          hint="ingest one: python -m edl.core_resources.pipelines.ingest ...")
    eligible = [u for u in complete if u.commit_position <= target.commit_position]
    snapshots = [u for u in eligible if u.kind == "snapshot"]
    base = snapshots[-1] if snapshots else None
    deltas = tuple(u for u in eligible if u.kind == "delta"
                   and (base is None or u.commit_position > base.commit_position))
    return ReadPlan(as_of=target.update_id, snapshot=base, deltas=deltas)


def _context(instance: str | None, profile: str | None,
             context: LakeContext | None) -> LakeContext:
    if context is None:
        return LakeContext.for_reader(instance, profile)
    if profile is not None:
        raise UsageError("give context= or profile=, not both",
                         hint="a context already names its caller")
    return context


def list_updates(dataset: str, *, status: str | None = None, instance: str | None = None,
                 profile: str | None = None,
                 context: LakeContext | None = None) -> list[UpdateRecord]:
    ctx = _context(instance, profile, context)
    ctx.metadata.get_dataset(dataset)
    return ctx.updates.list_updates(dataset, status=status)


def get_update(dataset: str, update_id: str, *, files: bool = False,
               instance: str | None = None, profile: str | None = None,
               context: LakeContext | None = None) -> UpdateRecord:
    """One update; with `files`, its per-file detail too, read from its manifest (the item
    keeps none, so that it stays small however many files an update has)."""
    ctx = _context(instance, profile, context)
    record = ctx.updates.get_update(dataset, update_id)
    if not files or record.files or record.status != COMPLETE:
        return record
    dataset_record = ctx.metadata.get_dataset(dataset)
    manifest = read_manifest(ctx.data_access(dataset_record).client(), record)
    return replace(record, files=tuple(FileRecord.from_item(f)
                                       for f in manifest.get("files", [])))


def read(spark, dataset: str, *, as_of: str | None = None, instance: str | None = None,
         profile: str | None = None, context: LakeContext | None = None):
    """The dataset as a Spark DataFrame, as of `as_of` (default: the newest complete update)."""
    ctx = _context(instance, profile, context)
    record = ctx.metadata.get_dataset(dataset)
    plan = plan_read(dataset, ctx.updates.list_updates(dataset), as_of)
    reader = _PartsReader(spark, ctx, record)
    if not plan.deltas:
        if plan.snapshot is None:  # plan_read refuses a dataset with no complete update
            raise NoDataError(f"dataset {dataset!r} has no complete update")
        return reader.frame([plan.snapshot], with_meta=False)
    return _apply_deltas(reader, record, plan)


def query(sql: str, *, as_of: dict[str, str] | None = None, instance: str | None = None,
          profile: str | None = None, context: LakeContext | None = None,
          timeout: float | None = None):
    """The rows of an Athena-dialect query over the lake as a pyarrow Table, run as the caller
    through Athena (in the cloud, or the local cloud's) with the broker's read credentials;
    `as_of={"trials": "0000000003"}` reads a dataset as of an update (`edl.utils.query`).
    `.to_pandas()` gives pandas; `query_df` a Spark DataFrame."""
    from edl.utils.query import DEFAULT_TIMEOUT_SECONDS
    from edl.utils.query import query as run_query

    ctx = _context(instance, profile, context)
    return run_query(sql, ctx, as_of=as_of,
                     timeout=DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout).table


def query_df(spark, sql: str, **kwargs):
    """`query(sql, **kwargs)` as a Spark DataFrame (the result travels through Arrow)."""
    return spark.createDataFrame(query(sql, **kwargs))


def _apply_deltas(reader: _PartsReader, record: DatasetRecord, plan: ReadPlan):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    convention = record.delta
    if convention is None:
        raise EdlError(f"dataset {record.dataset!r} has delta updates but no delta convention",
                       hint="set key_columns (and op_column/delete_marker) on the dataset")
    # positions in commit order: the snapshot first (0), then the deltas (1, 2, …)
    deltas = reader.frame(list(plan.deltas), with_meta=True, first_position=1)
    if plan.snapshot is not None:
        base = reader.frame([plan.snapshot], with_meta=True)
        snapshot_columns = [c for c in base.columns if c not in (ORDER_COLUMN, ROW_COLUMN)]
        rows = base.unionByName(deltas, allowMissingColumns=True)
    else:
        snapshot_columns = [c for c in deltas.columns if c not in (ORDER_COLUMN, ROW_COLUMN)
                            and c != convention.op_column]
        rows = deltas
    newest_first = Window.partitionBy(*convention.key_columns).orderBy(
        F.col(ORDER_COLUMN).desc(), F.col(ROW_COLUMN).desc())
    latest = rows.withColumn("_edl_rank", F.row_number().over(newest_first)).where(
        F.col("_edl_rank") == 1)
    op = convention.op_column
    if op and op in rows.columns and convention.delete_marker is not None:
        latest = latest.where(F.col(op).isNull()
                              | (F.col(op).cast("string") != F.lit(convention.delete_marker)))
    extra = [c for c in rows.columns if c not in snapshot_columns
             and c not in (ORDER_COLUMN, ROW_COLUMN, op)]
    return latest.select(*snapshot_columns, *extra)


class _PartsReader:
    """Turns update records into DataFrames, by the path this Spark has to the parts."""

    def __init__(self, spark, ctx: LakeContext, record: DatasetRecord) -> None:
        self.access = ctx.data_access(record)
        self.dataset = record.dataset
        self.path = parts_path(spark, self.access)

    def frame(self, updates: list[UpdateRecord], with_meta: bool, first_position: int = 0):
        labelled = [(f"update {u.update_id}", schema_from_text(u.arrow_schema)) for u in updates]
        schema = sparkable_schema(unify_schemas(labelled, what=f"updates of {self.dataset}"))
        reads = []
        for order, (u, (_label, own)) in enumerate(zip(updates, labelled, strict=True),
                                                  start=first_position):
            checksums = part_checksums(read_manifest(self.access.client(), u), u)
            reads.append(UpdateParts(u.update_id, own, tuple(
                PartToRead(u.bucket, key, u.update_id, i, order, checksums[i])
                for i, key in enumerate(u.part_keys()))))
        return self.path.read(self.dataset, reads, schema, with_meta)
