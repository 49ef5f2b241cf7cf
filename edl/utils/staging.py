"""The S3 side of an update's lifecycle: staging, promotion, the manifest, and removal.

A pending update's files are written under the data bucket's staging root,
`_edl_staging/<dataset>/<update>/raw/…` and `…/data/…` (`edl.naming.staging_prefix`). The
dataset roles are scoped to `<dataset>/*`, so no reader can see unfinished work there; the
ingest job's role has the whole bucket. Committing an update (`edl.utils.updates`) happens in
this order:

1. promote: every raw file and part is copied server-side to its final key,
   `<dataset>/raw/<update>/…` and `<dataset>/data/<update>/part-NNNNN.parquet`; S3 computes each
   part's SHA-256 as it writes the copy (`storage.copy_object(checksum=True)`);
2. the manifest (every file's detail, every part's size and SHA-256) is written beside the parts
   as `_edl_manifest.json`, and its own SHA-256 goes into the update's item;
3. the conditional commit write makes the update complete;
4. the staging folder is deleted.

Between 1 and 3 promoted files exist under the dataset's prefixes for an update that is still
pending: readers never list prefixes (part keys come from complete records), so nothing reads
them, but a dataset role could fetch them by key. That window is closed by whichever comes
first: the job's own failure handling (`remove_update_files`), or the sweep (`edl.utils.sweep`),
which fails an update pending past its deadline and removes its staged and promoted files; a
crash between 3 and 4 leaves only a staging folder, which the sweep deletes too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from edl.errors import EdlError
from edl.naming import staging_prefix
from edl.utils.storage import copy_object, delete_prefix
from edl.utils.updates import FAILED, FileRecord, UpdateRecord, UpdateStateError, part_name

log = logging.getLogger(__name__)
PROMOTE_THREADS = 16


class ChecksumMismatchError(EdlError):
    """What was read is not what the update recorded (a part or the manifest changed)."""


@dataclass(frozen=True)
class StagedFile:
    """One object to promote: its path below the update's raw/ or data/ folder, and size."""

    path: str
    size: int


def promote(client, update: UpdateRecord, raw: list[StagedFile],
            parts: list[StagedFile]) -> list[str]:
    """Copy the staged raw files and parts to their final keys; → each part's SHA-256."""
    def copy(staged: StagedFile, source_prefix: str, prefix: str, checksum: bool):
        return copy_object(client, update.bucket, f"{source_prefix}{staged.path}", update.bucket,
                           f"{prefix}{staged.path}", staged.size, checksum=checksum)

    with ThreadPoolExecutor(max_workers=PROMOTE_THREADS) as pool:
        raw_done = [pool.submit(copy, f, update.staging_raw_prefix, update.raw_prefix, False)
                    for f in raw]
        part_sums = [pool.submit(copy, p, update.staging_data_prefix, update.data_prefix, True)
                     for p in parts]
        for future in raw_done:
            future.result()
        return [future.result() for future in part_sums]


def write_manifest(client, update: UpdateRecord, files: tuple[FileRecord, ...],
                   origins: list[str], part_sha256: list[str], part_bytes: list[int]) -> str:
    """Write the update's manifest beside its parts; → its SHA-256, for the update's item."""
    manifest = {
        "dataset": update.dataset, "update_id": update.update_id,
        "files": [{**f.to_item(), "origin": origin} for f, origin in zip(files, origins, strict=True)],
        "parts": [{"part": part_name(i), "bytes": size, "sha256": digest}
                  for i, (digest, size) in enumerate(zip(part_sha256, part_bytes, strict=True))],
    }
    body = json.dumps(manifest, indent=1).encode()
    client.put_object(Bucket=update.bucket, Key=update.manifest_key, Body=body)
    return hashlib.sha256(body).hexdigest()


def read_manifest(client, update: UpdateRecord) -> dict[str, Any]:
    """The update's manifest, checked against the SHA-256 its item recorded. An update written
    before manifests had checksums has none to check; one older still has no manifest (`{}`)."""
    try:
        body = client.get_object(Bucket=update.bucket, Key=update.manifest_key)["Body"].read()
    except client.exceptions.NoSuchKey:
        if update.manifest_sha256:
            raise ChecksumMismatchError(
                f"{update.dataset} update {update.update_id}: its manifest "
                f"{update.manifest_key} is missing", hint="restore it from the bucket's "
                "versions, or ingest the data again") from None
        return {}
    if update.manifest_sha256 and hashlib.sha256(body).hexdigest() != update.manifest_sha256:
        raise ChecksumMismatchError(
            f"{update.dataset} update {update.update_id}: its manifest {update.manifest_key} "
            "does not match the checksum recorded at commit",
            hint="restore it from the bucket's versions, or ingest the data again")
    return json.loads(body)


def manifest_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-file detail of a manifest, as the API shows it."""
    return [FileRecord.from_item(f).to_item() | {"origin": f.get("origin", "")}
            for f in manifest.get("files", [])]


def part_checksums(manifest: dict[str, Any], update: UpdateRecord) -> list[str]:
    """Each part's recorded SHA-256, in part order ("" where none was recorded)."""
    recorded = {p["part"]: p.get("sha256", "") for p in manifest.get("parts", [])}
    return [recorded.get(part_name(i), "") for i in range(update.part_count)]


def remove_update_files(client, update: UpdateRecord) -> int:
    """Delete everything an unfinished update wrote: its staging folder, and whatever was
    already promoted under the dataset's raw/ and data/ folders; → objects deleted."""
    removed = 0
    for prefix in (staging_prefix(update.dataset, update.update_id), update.raw_prefix,
                   update.data_prefix):
        removed += delete_prefix(client, update.bucket, prefix)
    return removed


def fail_and_remove(store, client, update: UpdateRecord, reason: str, *,
                    lineage: dict[str, Any] | None = None) -> None:
    """Fail a pending update with `reason` (a pipeline's output: with its run's `lineage`) and
    delete what it wrote, staged or promoted; `store` is the `UpdateStore`. An update failed
    meanwhile (the sweep, or a committer fencing this one off) is still cleaned up; one that
    cannot be marked failed stays pending, invisible, and the sweep fails it later; files
    that cannot be deleted are never read, and the sweep retries them."""
    unit = f"{update.dataset}/{update.update_id}"
    try:
        failed = store.fail_update(update.dataset, update.update_id, reason, lineage=lineage)
    except UpdateStateError:
        failed = store.get_update(update.dataset, update.update_id)
        if failed.status != FAILED:
            return
    except Exception:
        log.exception("%s - could not mark the update failed", unit)
        return
    try:
        remove_update_files(client, failed)
        store.mark_files_removed(failed.dataset, failed.update_id)
    except Exception:
        log.warning("%s - could not delete the update's files", unit, exc_info=True)

