"""The Glue Data Catalog of the lake: what Athena (and the local Athena) query (DESIGN §1, §6).

Two databases per instance and tier:

- `edl_<instance>_<tier>_updates` (`naming.glue_updates_database`) holds, per dataset, the
  physical table `<dataset>`: Parquet, partition keys `commit_seq` (bigint), `update_id`
  (string), `kind` (string), one partition per *complete* update at
  `s3://<bucket>/<dataset>/data/<update>/`, each partition with its own columns (the table's are
  the unified schema of all of them). Pending and failed updates are never registered. Files
  whose names start with `_` (the update's manifest) are not data to Athena (Hive's rule).
- `edl_<instance>_<tier>` (`naming.glue_database`) holds, per dataset, the view `<dataset>`,
  stored the way Athena stores a Presto/Trino view (`presto_view`). Its SQL (`dataset_sql`) is
  the dataset as `lake.read` returns it: the newest snapshot by commit order with every later
  delta applied by key (last write wins; the delete marker removes the key), the op column
  dropped unless that snapshot has it. Time travel is the same SQL bounded by `commit_seq <= N`
  (`as_of_sql`), or by hand: `SELECT … FROM edl_<i>_<t>_updates.<dataset> WHERE commit_seq <= N`.

Known difference to `lake.read`: SQL cannot see a row's position inside one update, so a key
given twice in one delta is resolved by commit order only (either row may win). Athena reads
Parquet timestamps to the millisecond (`timestamp(3)`).

Registration (`GlueCatalog.register_update`, at the commit and by the sweep) goes through the
Glue API (DESIGN §8) and is idempotent. It works from the list of complete updates (DynamoDB,
read consistently), not from the one update it was called for: it registers every complete update
not yet flagged as registered, then writes the table's columns and the view. Two commits of one
dataset may register at once; each re-reads the complete updates after writing, and writes again
until they did not change meanwhile. So whichever registration writes last has seen every update
committed before it checked, and one that committed later writes after it: both end registered,
the view's columns the union. A write never replaces a definition made from more updates than
its own (the `edl_commit_seq`/`edl_updates` parameters). A dataset registered the old way (one
partitioned table `<dataset>` in the tier database, partition key `update`) is migrated on its
next registration: all its complete updates are registered in the new table first, then the old
table gives way to the view (dropping a Glue table deletes no data in S3).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from edl import naming
from edl.errors import EdlError
from edl.utils.lake import plan_read
from edl.utils.metadata import DatasetRecord, DeltaConvention
from edl.utils.schemas import glue_type, schema_from_text, trino_type, unify_schemas
from edl.utils.updates import COMPLETE, UpdateRecord, UpdateStateError, UpdateStore

log = logging.getLogger(__name__)

PARTITION_KEYS = (("commit_seq", "bigint"), ("update_id", "string"), ("kind", "string"))
VIEW_CATALOG = "awsdatacatalog"
_VIEW_PREFIX = "/* Presto View: "
_VIEW_SUFFIX = " */"
_BATCH = 100           # Glue's BatchCreatePartition takes at most 100 partitions
_ATTEMPTS = 8          # re-reads of the complete updates before leaving it to the sweep

_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}


class CatalogError(EdlError):
    """A dataset cannot be registered in the Glue catalog as it is."""


# -- the SQL ---------------------------------------------------------------------------------------

def quote(identifier: str) -> str:
    """A Trino identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def dataset_sql(updates_database: str, dataset: str, columns: Sequence[str],
                convention: DeltaConvention | None, snapshot_has_op: bool,
                as_of_commit_seq: int | None = None) -> str:
    """The Trino SQL of the dataset as `lake.read` returns it, from its physical table
    `<updates_database>.<dataset>`.

    `columns` are the physical table's columns (the unified schema, the op column among them if
    an update has it); the result has them in that order, less the op column unless
    `snapshot_has_op` (the newest snapshot in reach has it). `as_of_commit_seq=N` keeps only the
    updates committed at position N or before (time travel). Updates written before commit
    positions existed have `commit_seq` 0 and are ordered by update id, as `lake.read` does."""
    names = list(columns)
    clash = sorted({n.lower() for n in names} & {k for k, _ in PARTITION_KEYS})
    if clash:
        raise CatalogError(f"dataset {dataset!r} has column(s) {', '.join(clash)}, which its "
                           "table in the catalog uses as partition keys",
                           hint="rename the column in the source files")
    op = convention.op_column if convention else None
    output = ", ".join(quote(c) for c in names if c != op or snapshot_has_op)
    table = f"{quote(updates_database)}.{quote(dataset)}"
    bound = "" if as_of_commit_seq is None else f'"commit_seq" <= {int(as_of_commit_seq)}'
    base_bound = f" AND {bound}" if bound else ""
    live_bound = f'"u".{bound} AND ' if bound else ""
    every = "".join(f'"u".{quote(c)}, ' for c in names)
    # The table is read twice, not once into a CTE that both parts read: an engine may then
    # materialise every row before filtering, where the newest snapshot needs the partition
    # keys only and a query's filters can reach the data.
    sql = (
        f'WITH "base" AS (\n'
        f'  SELECT "commit_seq", "update_id" FROM {table}\n'
        f"  WHERE \"kind\" = 'snapshot'{base_bound}\n"
        f'  GROUP BY "commit_seq", "update_id"\n'
        f'  ORDER BY "commit_seq" DESC, "update_id" DESC LIMIT 1\n'
        f'), "live" AS (\n'
        f'  SELECT {every}"u"."commit_seq", "u"."update_id", "u"."kind"\n'
        f'  FROM {table} AS "u" LEFT JOIN "base" ON TRUE\n'
        f'  WHERE {live_bound}("base"."commit_seq" IS NULL\n'
        f'     OR "u"."commit_seq" > "base"."commit_seq"\n'
        f'     OR ("u"."commit_seq" = "base"."commit_seq"\n'
        f'         AND "u"."update_id" >= "base"."update_id"))\n'
        f")")
    if convention is None:
        return sql + f'\nSELECT {output} FROM "live"'
    keys = ", ".join(quote(k) for k in convention.key_columns)
    keep = '"_edl_rank" = 1'
    if op and op in names and convention.delete_marker is not None:
        keep += (f" AND ({quote(op)} IS NULL"
                 f" OR CAST({quote(op)} AS varchar) <> {_literal(convention.delete_marker)})")
    return sql + (
        f'\n, "ranked" AS (\n'
        f'  SELECT "live".*, row_number() OVER (PARTITION BY {keys}\n'
        f'    ORDER BY "commit_seq" DESC, "update_id" DESC) AS "_edl_rank"\n'
        f'  FROM "live"\n'
        f")\n"
        f'SELECT {output} FROM "ranked"\n'
        # a snapshot without later deltas reads as it is, as lake.read reads it
        f'WHERE NOT EXISTS (SELECT 1 FROM "live" WHERE "kind" = \'delta\')\n'
        f"   OR ({keep})")


@dataclass(frozen=True)
class DatasetDefinition:
    """What the catalog holds for a dataset, computed from its complete updates."""

    table_columns: tuple[tuple[str, str], ...]   # the physical table's (name, Glue type)
    view_columns: tuple[tuple[str, str, str], ...]   # the view's (name, Glue type, Trino type)
    sql: str
    commit_seq: int            # the newest commit position it covers
    updates: int               # how many complete updates it covers

    @property
    def version(self) -> tuple[int, int]:
        return (self.commit_seq, self.updates)


def _commit_order(updates: Sequence[UpdateRecord]) -> list[UpdateRecord]:
    return sorted((u for u in updates if u.status == COMPLETE), key=lambda u: u.commit_position)


def define_dataset(instance: str, dataset: DatasetRecord, updates: Sequence[UpdateRecord],
                   as_of: str | None = None) -> DatasetDefinition:
    """The physical table's columns, the view's columns and its SQL for the dataset as of
    update `as_of` (default: its newest complete update); `updates` are its updates (any
    status: only complete ones count)."""
    plan = plan_read(dataset.dataset, list(updates), as_of)
    complete = _commit_order(updates)
    target = next(u for u in complete if u.update_id == plan.as_of)
    reach = [u for u in complete if u.commit_position <= target.commit_position]
    schema = unify_schemas([(f"update {u.update_id}", schema_from_text(u.arrow_schema))
                            for u in reach if u.arrow_schema],
                           what=f"updates of {dataset.dataset}")
    op = dataset.delta.op_column if dataset.delta else None
    snapshot_has_op = bool(op and plan.snapshot and plan.snapshot.arrow_schema
                           and op in schema_from_text(plan.snapshot.arrow_schema).names)
    bound = None if as_of is None else target.commit_seq
    sql = dataset_sql(naming.glue_updates_database(instance, dataset.tier), dataset.dataset,
                      schema.names, dataset.delta, snapshot_has_op, bound)
    return DatasetDefinition(
        table_columns=tuple((f.name, glue_type(f.type)) for f in schema),
        view_columns=tuple((f.name, glue_type(f.type), trino_type(f.type)) for f in schema
                           if f.name != op or snapshot_has_op),
        sql=sql, commit_seq=max(u.commit_seq for u in reach), updates=len(reach))


def as_of_sql(instance: str, dataset: DatasetRecord, updates: Sequence[UpdateRecord],
              as_of: str) -> str:
    """The dataset as of update `as_of` in SQL (what `--as-of DATASET=UPDATE` puts in a CTE)."""
    return define_dataset(instance, dataset, updates, as_of).sql


# -- the Presto view encoding ----------------------------------------------------------------------

def presto_view(sql: str, database: str, columns: Sequence[tuple[str, str]],
                owner: str) -> dict[str, str]:
    """`ViewOriginalText` and `ViewExpandedText` of a Glue table that Athena reads as a view:
    `columns` are (name, Trino type). It runs with its invoker's rights (the caller's)."""
    body = {"originalSql": sql, "catalog": VIEW_CATALOG, "schema": database,
            "columns": [{"name": n, "type": t} for n, t in columns],
            "owner": owner, "runAsInvoker": True}
    encoded = base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")
    return {"ViewOriginalText": f"{_VIEW_PREFIX}{encoded}{_VIEW_SUFFIX}",
            "ViewExpandedText": "/* Presto View */"}


def decode_presto_view(original_text: str) -> dict[str, Any]:
    """The JSON inside a Presto view's `ViewOriginalText`."""
    text = original_text.strip()
    if not (text.startswith(_VIEW_PREFIX) and text.endswith(_VIEW_SUFFIX)):
        raise ValueError("not a Presto view: the text is not '/* Presto View: <base64> */'")
    encoded = text[len(_VIEW_PREFIX):-len(_VIEW_SUFFIX)].strip()
    return json.loads(base64.b64decode(encoded).decode("utf-8"))


# -- registration ----------------------------------------------------------------------------------

def _missing(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "EntityNotFoundException"


def _exists(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "AlreadyExistsException"


class GlueCatalog:
    """Keeps a dataset's physical table and view current with its complete updates."""

    def __init__(self, glue_client, instance: str, updates: UpdateStore) -> None:
        self._glue = glue_client
        self.instance = instance
        self.updates = updates

    def register_update(self, dataset: DatasetRecord, update: UpdateRecord) -> None:
        if update.status != COMPLETE:
            raise UpdateStateError(f"{dataset.dataset} update {update.update_id} is "
                                   f"{update.status}; only complete updates are registered")
        unit = f"{dataset.dataset}/{update.update_id}"
        views = naming.glue_database(self.instance, dataset.tier)
        tables = naming.glue_updates_database(self.instance, dataset.tier)
        self._ensure_database(views, f"EDL {self.instance} {dataset.tier}-tier datasets")
        self._ensure_database(tables, f"EDL {self.instance} {dataset.tier}-tier datasets, "
                              "one partition per update (time travel: WHERE commit_seq <= N)")
        seen: tuple[str, ...] = ()
        for _ in range(_ATTEMPTS):
            complete = self.updates.list_updates(dataset.dataset, status=COMPLETE)
            ids = tuple(u.update_id for u in complete)
            if ids == seen:
                log.info("%s - registered: %s.%s (%d update(s)), view %s.%s", unit, tables,
                         dataset.dataset, len(ids), views, dataset.dataset)
                return
            if update.update_id not in ids:
                raise UpdateStateError(f"{unit} is not among the complete updates")
            self._write(unit, dataset, update, complete, views, tables)
            seen = ids
        raise CatalogError(f"{unit}: the dataset's complete updates kept changing while it "
                           f"was registered ({_ATTEMPTS} attempts)",
                           hint="the sweep registers it again later")

    def _write(self, unit: str, dataset: DatasetRecord, update: UpdateRecord,
               complete: list[UpdateRecord], views: str, tables: str) -> None:
        definition = define_dataset(self.instance, dataset, complete)
        old_table = self._old_table(views, dataset.dataset)
        created = self._put_table(tables, dataset, update, definition)
        if created or old_table:
            todo = complete   # a new table (or the migration): every complete update
        else:
            todo = [u for u in complete if not u.catalog_registered
                    or u.update_id == update.update_id]
        self._create_partitions(tables, dataset.dataset, todo)
        if old_table:
            log.info("%s - replacing the old table %s.%s by the view (its data stays in S3)",
                     unit, views, dataset.dataset)
            self._delete_table(views, dataset.dataset)
        self._put_view(views, dataset, definition)

    def _ensure_database(self, database: str, description: str) -> None:
        try:
            self._glue.create_database(DatabaseInput={"Name": database,
                                                      "Description": description})
        except ClientError as exc:
            if not _exists(exc):
                raise

    def _get_table(self, database: str, name: str) -> dict | None:
        try:
            return self._glue.get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def _old_table(self, database: str, name: str) -> bool:
        """Whether the tier database still holds the dataset's old-style table."""
        table = self._get_table(database, name)
        return table is not None and table.get("TableType") != "VIRTUAL_VIEW"

    def _delete_table(self, database: str, name: str) -> None:
        try:
            self._glue.delete_table(DatabaseName=database, Name=name)
        except ClientError as exc:
            if not _missing(exc):
                raise

    def _put(self, database: str, table_input: dict, version: tuple[int, int]) -> bool:
        """Create the table, or update it unless it has the same shape already or was written
        from more updates than `version`; → whether it was created."""
        existing = self._get_table(database, table_input["Name"])
        if existing is None:
            try:
                self._glue.create_table(DatabaseName=database, TableInput=table_input)
                return True
            except ClientError as exc:
                if not _exists(exc):
                    raise
            existing = self._get_table(database, table_input["Name"]) or {}
        params = existing.get("Parameters", {})
        theirs = (int(params.get("edl_commit_seq", -1)), int(params.get("edl_updates", -1)))
        if theirs <= version and _shape(existing) != _shape(table_input):
            self._glue.update_table(DatabaseName=database, TableInput=table_input)
        return False

    def _put_table(self, database: str, dataset: DatasetRecord, update: UpdateRecord,
                   definition: DatasetDefinition) -> bool:
        columns = [{"Name": n, "Type": t} for n, t in definition.table_columns]
        table_input = {
            "Name": dataset.dataset,
            "Description": f"EDL dataset {dataset.dataset}, every complete update "
                           "(a partition each); query the view of the same name in "
                           f"{naming.glue_database(self.instance, dataset.tier)}",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", **_version(definition)},
            "PartitionKeys": [{"Name": n, "Type": t} for n, t in PARTITION_KEYS],
            "StorageDescriptor": {**_PARQUET, "Columns": columns,
                                  "Location": f"s3://{update.bucket}/{dataset.dataset}/data/"},
        }
        return self._put(database, table_input, definition.version)

    def _create_partitions(self, database: str, table: str,
                           updates: list[UpdateRecord]) -> None:
        inputs = [_partition_input(u) for u in updates]
        for start in range(0, len(inputs), _BATCH):
            reply = self._glue.batch_create_partition(
                DatabaseName=database, TableName=table,
                PartitionInputList=inputs[start:start + _BATCH])
            failed = [e for e in reply.get("Errors", [])
                      if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"]
            if failed:
                detail = failed[0].get("ErrorDetail", {})
                raise CatalogError(
                    f"{table}: Glue refused {len(failed)} partition(s), the first "
                    f"{failed[0].get('PartitionValues')}: {detail.get('ErrorCode')} "
                    f"{detail.get('ErrorMessage', '')}".rstrip())

    def _put_view(self, database: str, dataset: DatasetRecord,
                  definition: DatasetDefinition) -> None:
        text = presto_view(definition.sql, database,
                           [(n, trino) for n, _, trino in definition.view_columns],
                           dataset.owner)
        table_input = {
            "Name": dataset.dataset,
            "Description": dataset.description or f"EDL dataset {dataset.dataset}",
            "TableType": "VIRTUAL_VIEW",
            "Parameters": {"presto_view": "true", "comment": "Presto View",
                           **_version(definition)},
            "StorageDescriptor": {"Columns": [{"Name": n, "Type": t}
                                              for n, t, _ in definition.view_columns],
                                  "SerdeInfo": {}},
            "PartitionKeys": [],
            **text,
        }
        self._put(database, table_input, definition.version)


def _shape(table: dict) -> tuple:
    """What registration decides about a table or view (Glue adds defaults to the rest)."""
    def pairs(columns: list[dict]) -> tuple:
        return tuple((c["Name"], c["Type"]) for c in columns)

    return (table.get("TableType"), pairs(table.get("StorageDescriptor", {}).get("Columns", [])),
            pairs(table.get("PartitionKeys", [])), table.get("ViewOriginalText"),
            table.get("StorageDescriptor", {}).get("Location"))


def _version(definition: DatasetDefinition) -> dict[str, str]:
    return {"edl_commit_seq": str(definition.commit_seq),
            "edl_updates": str(definition.updates)}


def _partition_input(update: UpdateRecord) -> dict:
    columns = [{"Name": f.name, "Type": glue_type(f.type)}
               for f in schema_from_text(update.arrow_schema)] if update.arrow_schema else []
    return {"Values": [str(update.commit_seq), update.update_id, update.kind],
            "StorageDescriptor": {**_PARQUET, "Columns": columns,
                                  "Location": f"s3://{update.bucket}/{update.data_prefix}"},
            "Parameters": {"edl_rows": str(update.rows)}}
