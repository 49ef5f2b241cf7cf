"""Writing a Spark DataFrame as a new update of a dataset, under the ingest's commit rules.

    writer = OutputWriter(ctx)
    staged = writer.stage(frame, pending_update, dataset)   # parts in the update's staging folder
    writer.commit(staged, lineage=...)                        # promoted, manifest, complete

Each Spark task writes its partition as one parquet part with pyarrow straight to the update's
staging folder (`_edl_staging/<dataset>/<update>/data/`, which no reader role can see), through
the `edl_parts_sink` data source (`edl.utils.lake_sink`): no row becomes a Python object, and
Spark needs no S3 connector (DESIGN §8). Empty partitions write nothing; an output with no rows at all still gets one empty part, so that it
has a schema. The commit then does what the ingest's does (`edl.utils.staging`): the parts are
copied server-side to `<dataset>/data/<update>/part-NNNNN.parquet` (numbered in partition order),
S3 computing each part's SHA-256, the manifest is written, and the conditional write over
`pending` makes the update complete. Until then nothing is visible; `discard` fails the update
and removes whatever it wrote.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from edl.utils.context import LakeContext
from edl.utils.metadata import DatasetRecord
from edl.utils.schemas import describe_schema, schema_from_text, schema_to_text
from edl.utils.staging import PROMOTE_THREADS, fail_and_remove, write_manifest
from edl.utils.storage import copy_object, delete_prefix
from edl.utils.updates import UpdateRecord, part_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedOutput:
    """An output written to its update's staging folder, not yet visible."""

    update: UpdateRecord
    dataset: DatasetRecord
    schema: str                        # the Arrow schema (base64 IPC) of every part
    parts: tuple[tuple[str, int, int], ...]   # (staged key, rows, bytes) of each part, in order

    @property
    def rows(self) -> int:
        return sum(rows for _, rows, _ in self.parts)


def arrow_schema_of(frame):
    """The Arrow schema Spark hands `mapInArrow` for `frame`'s rows (timestamps in UTC)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    try:
        return to_arrow_schema(frame.schema, timezone="UTC", prefers_large_types=False)
    except TypeError:   # pyspark 3.5 (Glue 5) takes the schema alone, and labels UTC itself
        return to_arrow_schema(frame.schema)


def _make_active(spark) -> None:
    """Spark finds a Python data source to write to in the *active* session of the calling
    thread, not in the DataFrame's (reads resolve through their reader's session). The local
    runtime runs jobs in a thread of its own, where no session is active: make it this one."""
    jvm = getattr(spark, "_jvm", None)
    session = getattr(spark, "_jsparkSession", None)
    if jvm is not None and session is not None:
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(session)


class OutputWriter:
    """Stages and commits pipeline outputs as updates of their datasets."""

    def __init__(self, ctx: LakeContext) -> None:
        self.ctx = ctx

    def stage(self, frame, update: UpdateRecord, dataset: DatasetRecord) -> StagedOutput:
        """Write `frame` into `update`'s staging folder, one part per non-empty partition."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from edl.utils.lake_sink import SINK_NAME, EdlPartsSink, sink_options, written_parts

        access = self.ctx.data_access(dataset)
        schema = arrow_schema_of(frame)
        schema_text = schema_to_text(schema)
        prefix = update.staging_data_prefix
        spark = frame.sparkSession
        spark.dataSource.register(EdlPartsSink)
        _make_active(spark)
        spark.sparkContext.setJobDescription(
            f"pipeline output {dataset.dataset}/{update.update_id}")
        try:
            frame.write.format(SINK_NAME).mode("append").options(
                **sink_options(update.bucket, prefix, schema_text, access)).save()
        finally:
            spark.sparkContext.setJobDescription(None)
        parts = tuple((p["key"], int(p["rows"]), int(p["bytes"]))
                      for p in written_parts(access, update.bucket, prefix))
        if not parts:   # no rows at all: one empty part, so that the update has a schema
            key = f"{prefix}empty.parquet"
            with access.filesystem().open_output_stream(f"{update.bucket}/{key}") as stream:
                pq.write_table(pa.Table.from_batches([], schema), stream, compression="snappy")
            parts = ((key, 0, access.filesystem().get_file_info(f"{update.bucket}/{key}").size),)
        return StagedOutput(update, dataset, schema_text, parts)

    def commit(self, staged: StagedOutput, *, lineage: dict | None = None) -> UpdateRecord:
        """Promote the staged parts, write the manifest and make the update complete."""
        update = staged.update
        client = self.ctx.data_access(staged.dataset).client()

        def promote(numbered: tuple[int, tuple[str, int, int]]) -> str | None:
            index, (key, _rows, size) = numbered
            return copy_object(client, update.bucket, key, update.bucket,
                               f"{update.data_prefix}{part_name(index)}", size, checksum=True)

        with ThreadPoolExecutor(max_workers=PROMOTE_THREADS) as pool:
            sums = [s or "" for s in pool.map(promote, enumerate(staged.parts))]
        sizes = [size for _, _, size in staged.parts]
        manifest = write_manifest(client, update, (), [], sums, sizes)
        schema = schema_from_text(staged.schema)
        finished = replace(update, rows=staged.rows, bytes=sum(sizes),
                           part_count=len(staged.parts), file_count=0,
                           columns=tuple(describe_schema(schema)), arrow_schema=staged.schema,
                           manifest_sha256=manifest, lineage=dict(lineage or {}))
        complete = self.ctx.updates.complete_update(finished)
        try:
            delete_prefix(client, update.bucket, update.staging_data_prefix)
        except Exception:  # nobody reads staging; the sweep deletes what is left
            log.warning("%s/%s - could not delete the staging folder", update.dataset,
                        update.update_id, exc_info=True)
        return self._register(staged.dataset, complete)

    def _register(self, dataset: DatasetRecord, update: UpdateRecord) -> UpdateRecord:
        """Put the complete update in the Glue catalog (for SQL), as the ingest does; a failure
        is a warning: the update is complete, and the sweep registers it later."""
        from edl.utils.catalog import GlueCatalog

        try:
            GlueCatalog(self.ctx.glue(dataset.home_region), self.ctx.instance,
                        self.ctx.updates).register_update(dataset, update)
            self.ctx.updates.mark_registered(dataset.dataset, update.update_id)
        except Exception as exc:  # noqa: BLE001 - the commit stands; the sweep retries
            log.warning("%s/%s - complete, but not in the Glue catalog yet (the sweep registers "
                        "it again): %s", update.dataset, update.update_id, exc)
            return update
        return replace(update, catalog_registered=True)

    def discard(self, update: UpdateRecord, dataset: DatasetRecord, reason: str,
                lineage: dict | None = None) -> None:
        """Fail a pending output update with `reason` and remove what it wrote."""
        fail_and_remove(self.ctx.updates, self.ctx.data_access(dataset).client(), update, reason,
                        lineage=lineage)
