"""The ingest job's driver: one update from source to visible, or to failed (DESIGN §3).

Steps, in this order:

0. take the update: allocate a new id (or claim the pending one the API created). Until it
   commits, its files live in its staging folder, `_edl_staging/<dataset>/<update>/raw/` and
   `…/data/` (`edl.utils.staging`), which no dataset role can read;
1. list the source on the driver, then one Spark task per source file brings it into the staged
   raw folder: a plain S3 object is copied server-side (CopyObject), anything else is streamed
   through the task, unpacking archives (`archives.Unpacker`). When the source holds plain S3
   objects only, the raw paths are known from the listing and the copies are left to step 3's
   tasks: one stage fewer;
2./3. one Spark task per raw file converts it to the staged `data/part-NNNNN.parquet` (parts
   numbered in the order of the raw paths), computing the sha256 and size of a copied raw file
   while it reads it, so its bytes are read once; the driver unifies the files' schemas into the
   update's schema and, where a part differs, one task per such part rewrites it to match;
   deltas are checked for the dataset's key columns;
4. promotion: raw files and parts are copied server-side to `<dataset>/raw/<update>/` and
   `<dataset>/data/<update>/`, S3 computing each part's SHA-256 on the way; the manifest (every
   file's path, format, rows, bytes, sha256, columns; every part's SHA-256) is written beside
   the parts as `_edl_manifest.json`;
5. the update is marked complete (the single commit point: a conditional write over `pending`,
   taking the next commit position), the staging folder is deleted, and the update is
   registered in the Glue catalog. A registration that fails is a warning, not a failed job: the
   update is complete, and the sweep (`edl.utils.sweep`) registers it later.

Before step 5 readers see nothing: `lake.read` reads complete updates only, and builds part keys
from the update record, never by listing. Any error before it marks the update failed with the
reason and deletes what the update wrote, staged or promoted; a crash that prevents even that
leaves the update pending, and the sweep fails it past its deadline and removes its files. A
rerun always takes a new id, so it is always safe.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from functools import partial

from edl import naming
from edl.core_resources.pipelines.ingest import tasks
from edl.core_resources.pipelines.ingest.archives import ArchiveLimits, RawFile, Unpacker
from edl.core_resources.pipelines.ingest.errors import (
    DeltaKeyError,
    DuplicatePathError,
    IngestError,
)
from edl.core_resources.pipelines.ingest.formats import FormatOptions
from edl.core_resources.pipelines.ingest.limits import check_update_totals
from edl.core_resources.pipelines.ingest.sources import parse_source
from edl.errors import EdlError
from edl.utils.catalog import GlueCatalog
from edl.utils.context import LakeContext
from edl.utils.events import publish_update_complete
from edl.utils.metadata import DatasetRecord
from edl.utils.schemas import (
    SchemaConflictError,
    describe_schema,
    schema_from_text,
    schema_to_text,
    unify_schemas,
)
from edl.utils.staging import StagedFile, fail_and_remove, promote, write_manifest
from edl.utils.storage import S3Access, delete_prefix
from edl.utils.updates import (
    COMPLETE,
    FileRecord,
    UpdateRecord,
    UpdateStateError,
    part_name,
)

log = logging.getLogger(__name__)


class CatalogRegistrationError(EdlError):
    """The update is complete, but registering it in the Glue catalog failed."""


@dataclass(frozen=True)
class IngestRequest:
    dataset: str
    source: str
    kind: str = "snapshot"
    update_id: str | None = None
    job_id: str = ""
    requested_by: str = ""
    options: FormatOptions = field(default_factory=FormatOptions)
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    sftp_password: str | None = field(default=None, repr=False)
    sftp_key_file: str | None = None
    ca_bundle: str | None = None


class IngestJob:
    def __init__(self, spark, context: LakeContext) -> None:
        self.spark = spark
        self.ctx = context

    def run(self, request: IngestRequest) -> UpdateRecord:
        naming.validate_dataset_name(request.dataset)
        dataset = self.ctx.metadata.get_dataset(request.dataset)
        bucket = self.ctx.data_bucket(dataset)
        access = self.ctx.s3_access(dataset.home_region)
        job_id = request.job_id or f"ingest-{uuid.uuid4().hex[:12]}"
        if request.update_id:
            update = self.ctx.updates.claim_update(dataset.dataset, request.update_id, job_id)
        else:
            update = self.ctx.updates.allocate_update(
                dataset.dataset, request.kind, request.source, bucket,
                requested_by=request.requested_by, job_id=job_id,
                options=request.options.to_dict())
            update = self.ctx.updates.claim_update(dataset.dataset, update.update_id, job_id)
        unit = f"{dataset.dataset}/{update.update_id}"
        log.info("%s - ingesting %s (%s)", unit, update.source, update.kind)
        try:
            finished = self._ingest(unit, update, dataset, access, request)
            complete = self.ctx.updates.complete_update(finished)
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, (IngestError, SchemaConflictError)) else \
                f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self._fail(unit, update, access, reason)
            raise
        log.info("%s - complete: %d files, %d rows (commit %d)", unit, complete.file_count,
                 complete.rows, complete.commit_seq)
        self._remove_staging(unit, complete, access)
        publish_update_complete(self.ctx, complete, dataset.home_region)
        try:
            self.register(dataset, complete)
        except CatalogRegistrationError as exc:
            log.warning("%s - %s; the sweep registers it again later", unit, exc)
            return complete
        return replace(complete, catalog_registered=True)

    def register(self, dataset: DatasetRecord, update: UpdateRecord) -> None:
        """Register a complete update in the Glue catalog, and record that it is."""
        if update.status != COMPLETE:
            raise UpdateStateError(
                f"{dataset.dataset} update {update.update_id} is {update.status}; only a "
                "complete update is registered in the catalog",
                hint="pick a complete update from lake.list_updates(...)")
        try:
            GlueCatalog(self.ctx.glue(dataset.home_region), self.ctx.instance,
                        self.ctx.updates).register_update(dataset, update)
            self.ctx.updates.mark_registered(dataset.dataset, update.update_id)
        except Exception as exc:
            raise CatalogRegistrationError(
                f"{dataset.dataset} update {update.update_id} is complete, but registering it "
                f"in the Glue catalog failed ({exc})",
                hint="register it again: python -m edl.core_resources.pipelines.ingest "
                f"--instance {self.ctx.instance} --dataset {dataset.dataset} "
                f"--register-update {update.update_id}") from exc

    # -- steps --------------------------------------------------------------------------------

    def _ingest(self, unit: str, update: UpdateRecord, dataset: DatasetRecord,
                access: S3Access, request: IngestRequest) -> UpdateRecord:
        source = parse_source(request.source, access, local_instance=self.ctx.is_local,
                              sftp_password=request.sftp_password,
                              sftp_key_file=request.sftp_key_file, ca_bundle=request.ca_bundle)
        if update.kind == "delta":
            self._check_convention(dataset)
        raw, copies = self._fetch(unit, source, update, access, request.limits)
        formats = [request.options.format_of(f.path) for f in raw]
        results = self._convert(unit, raw, formats, update, access, request, copies)
        raw = [replace(f, bytes=r.raw_bytes, sha256=r.raw_sha256) if r.raw_sha256 else f
               for f, r in zip(raw, results, strict=True)]
        schema = unify_schemas([(f.path, schema_from_text(r.schema))
                                for f, r in zip(raw, results, strict=True)], what=f"files of {unit}")
        results = self._conform(unit, update, access, schema, results)
        if update.kind == "delta":
            self._check_delta_keys(dataset, schema, raw)
        files = tuple(
            FileRecord(path=f.path, format=fmt, rows=r.rows, bytes=f.bytes, sha256=f.sha256,
                       part=part_name(i), columns=tuple(describe_schema(
                           schema_from_text(r.schema))))
            for i, (f, fmt, r) in enumerate(zip(raw, formats, results, strict=True)))
        client = access.client()
        part_sizes = [r.part_bytes for r in results]
        part_sums = promote(client, update, [StagedFile(f.path, f.bytes) for f in raw],
                            [StagedFile(part_name(i), size) for i, size in enumerate(part_sizes)])
        log.info("%s - promoted %d raw file(s) and %d part(s)", unit, len(raw), len(part_sums))
        manifest_sha256 = write_manifest(client, update, files, [f.origin for f in raw],
                                         part_sums, part_sizes)
        return replace(update, rows=sum(r.rows for r in results),
                       bytes=sum(f.bytes for f in raw), part_count=len(files),
                       file_count=len(files), files=files,
                       columns=tuple(describe_schema(schema)), arrow_schema=schema_to_text(schema),
                       manifest_sha256=manifest_sha256)

    def _fetch(self, unit, source, update, access, limits) -> tuple[list[RawFile], dict]:
        """→ the raw files, and {raw path: (bucket, key, size)} of those the conversion tasks
        are to copy in first (when every source file is a plain S3 object)."""
        files = source.list_files()
        check_update_totals((f.size for f in files), limits, f"the source of {unit}")
        if all(tasks.copyable(source, f) for f in files):
            log.info("%s - %d plain S3 object(s), copied into raw/ by their conversion", unit,
                     len(files))
            unpacker = Unpacker(tasks.S3Sink(access, update.bucket, update.staging_raw_prefix),
                                limits)
            for f in files:
                unpacker.add_copied(f.path, f.url, f.size)
            copies = {f.path: (source.bucket, f.locator, f.size) for f in files}
            return sorted(unpacker.files, key=lambda f: f.path), copies
        log.info("%s - fetching %d source file(s)", unit, len(files))
        sink = tasks.S3Sink(access, update.bucket, update.staging_raw_prefix)
        outcomes = self._run_tasks(f"ingest {unit}: fetch", files,
                                   partial(_fetch_one, source=source, sink=sink, limits=limits))
        raw: dict[str, RawFile] = {}
        for outcome in outcomes:
            for f in outcome:
                if f.path in raw:
                    raise DuplicatePathError(
                        f"{f.origin} and {raw[f.path].origin} would both be stored as "
                        f"{f.path!r}", hint="rename one of them, or ingest them separately")
                raw[f.path] = f
        check_update_totals((f.bytes for f in raw.values()), limits,
                            f"the unpacked files of {unit}")
        log.info("%s - raw: %d file(s), %d bytes", unit, len(raw),
                 sum(f.bytes for f in raw.values()))
        return [raw[p] for p in sorted(raw)], {}

    def _convert(self, unit, raw, formats, update, access, request, copies):
        jobs = [tasks.ConvertJob(access, update.bucket, f"{update.staging_raw_prefix}{f.path}",
                                 f"{update.staging_data_prefix}{part_name(i)}", f.path, fmt,
                                 request.options, checksum=not f.sha256,
                                 copy_from=copies.get(f.path), limits=request.limits)
                for i, (f, fmt) in enumerate(zip(raw, formats, strict=True))]
        results = self._run_tasks(f"ingest {unit}: convert", jobs, tasks.convert)
        log.info("%s - converted %d file(s), %d rows", unit, len(results),
                 sum(r.rows for r in results))
        return results

    def _conform(self, unit, update, access, schema, results):
        target = schema_to_text(schema)
        differing = [i for i, r in enumerate(results)
                     if not schema_from_text(r.schema).equals(schema)]
        if not differing:
            return results
        log.info("%s - conforming %d part(s) to the update's schema", unit, len(differing))
        keys = [f"{update.staging_data_prefix}{part_name(i)}" for i in differing]
        sizes = self.spark.sparkContext.parallelize(keys, len(keys)).map(
            partial(_conform_one, access=access, bucket=update.bucket, schema=target)).collect()
        results = list(results)
        for i, size in zip(differing, sizes, strict=True):
            results[i] = replace(results[i], schema=target, part_bytes=size)
        return results

    def _run_tasks(self, description: str, items: list, work) -> list:
        sc = self.spark.sparkContext
        sc.setJobDescription(description)
        try:
            outcomes = sc.parallelize(items, max(1, len(items))).map(work).collect()
        finally:
            sc.setJobDescription(None)
        errors = [o.error for o in outcomes if o.error is not None]
        if errors:
            raise errors[0]
        return [o.value for o in outcomes]

    # -- checks and bookkeeping ---------------------------------------------------------------

    @staticmethod
    def _check_convention(dataset: DatasetRecord) -> None:
        if dataset.delta is None:
            raise DeltaKeyError(
                f"dataset {dataset.dataset!r} has no delta convention, so it takes no deltas",
                hint="set its key columns (edl deploy-dataset … ) or ingest a snapshot")

    @staticmethod
    def _check_delta_keys(dataset: DatasetRecord, schema, raw: list[RawFile]) -> None:
        if dataset.delta is None:  # _check_convention refused this before anything was read
            raise DeltaKeyError(f"dataset {dataset.dataset!r} has no delta convention")
        missing = [k for k in dataset.delta.key_columns if k not in schema.names]
        if missing:
            raise DeltaKeyError(
                f"the delta for {dataset.dataset} lacks the key column(s) "
                f"{', '.join(missing)} (files: {', '.join(f.path for f in raw)})",
                hint=f"a delta must hold the key columns "
                f"{', '.join(dataset.delta.key_columns)}")

    def _remove_staging(self, unit: str, update: UpdateRecord, access: S3Access) -> None:
        try:
            delete_prefix(access.client(), update.bucket, naming.staging_prefix(
                update.dataset, update.update_id))
        except Exception:  # nobody reads staging; the sweep deletes what is left
            log.warning("%s - could not delete the staging folder", unit, exc_info=True)

    def _fail(self, unit: str, update: UpdateRecord, access: S3Access, reason: str) -> None:
        log.error("%s - failed: %s", unit, reason)
        fail_and_remove(self.ctx.updates, access.client(), update, reason)


def _fetch_one(file, source, sink, limits):
    return tasks.fetch(source, file, sink, limits)


def _conform_one(key, access, bucket, schema):
    return tasks.conform(access, bucket, key, schema)
