"""Writing a Spark DataFrame as a new update of a dataset, under the ingest's commit rules.

    writer = OutputWriter(ctx)
    staged = writer.stage(frame, pending_update, dataset)   # parts in the update's staging folder
    writer.commit(staged, lineage=...)                        # promoted, manifest, complete

Each Spark task writes its partition as one parquet part straight to the update's staging folder
(`_edl_staging/<dataset>/<update>/data/`, which no reader role can see), by the path this Spark
has to S3 (`edl.utils.lake_paths`): in the cloud Spark's own parquet writer (Glue 5 runs Spark
3.5, whose EMRFS writes `s3://`), locally pyspark 4's `edl_parts_sink` data source
(`edl.utils.lake_sink`: no row becomes a Python object, and Spark needs no S3 connector,
DESIGN §8), and RDD tasks with pyarrow where Spark has neither. Empty partitions write
nothing; an output with no rows at all still gets one empty part, so that it has a schema. The
commit then does what the ingest's does (`edl.utils.staging`): the parts are copied
server-side to `<dataset>/data/<update>/part-NNNNN.parquet` (numbered in partition order),
S3 computing each part's SHA-256, the manifest is written, and the conditional write over
`pending` makes the update complete. Until then nothing is visible; `discard` fails the update
and removes whatever it wrote.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from edl.utils.context import LakeContext
from edl.utils.events import publish_update_complete
from edl.utils.lake_paths import parts_path
from edl.utils.metadata import DatasetRecord
from edl.utils.schemas import (
    arrow_schema_of_spark,
    describe_schema,
    schema_from_text,
    schema_to_text,
)
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


class OutputWriter:
    """Stages and commits pipeline outputs as updates of their datasets."""

    def __init__(self, ctx: LakeContext) -> None:
        self.ctx = ctx

    def stage(self, frame, update: UpdateRecord, dataset: DatasetRecord) -> StagedOutput:
        """Write `frame` into `update`'s staging folder, one part per non-empty partition."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        access = self.ctx.data_access(dataset)
        schema = arrow_schema_of_spark(frame.schema)   # what the parts hold
        prefix = update.staging_data_prefix
        spark = frame.sparkSession
        path = parts_path(spark, access)
        log.info("%s/%s - writing the output (%s)", dataset.dataset, update.update_id, path.name)
        spark.sparkContext.setJobDescription(
            f"pipeline output {dataset.dataset}/{update.update_id}")
        try:
            written = path.write(frame, update.bucket, prefix, schema)
        finally:
            spark.sparkContext.setJobDescription(None)
        parts = tuple((p.key, p.rows, p.bytes) for p in written)
        if not parts:   # no rows at all: one empty part, so that the update has a schema
            key = f"{prefix}empty.parquet"
            with access.filesystem().open_output_stream(f"{update.bucket}/{key}") as stream:
                pq.write_table(pa.Table.from_batches([], schema), stream, compression="snappy")
            parts = ((key, 0, access.filesystem().get_file_info(f"{update.bucket}/{key}").size),)
        return StagedOutput(update, dataset, schema_to_text(schema), parts)

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
        publish_update_complete(self.ctx, complete, staged.dataset.home_region)
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
