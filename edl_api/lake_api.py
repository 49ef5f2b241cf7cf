"""The lake's API operations by name, over `ApiClient` (paths and bodies as in api_config.yaml).

Besides one method per endpoint, two flows a user wants in one step:

- `ingest()`: a local file is put into the tier's drop bucket first (POST uploads → a presigned
  PUT URL → PUT the file), then the ingest starts from the `source` the API returned. An s3://
  source outside the lake is read as the caller into a local file first (`outside_sources`) and
  then uploaded the same way; any other source (the lake's own s3://, https://) goes to
  start_ingest as it is.
- `wait_for_job()`: poll get_job until the job (an ingest, or a pipeline run started with
  `start_pipeline_run`) has succeeded or failed, with a growing interval and a timeout; sleep
  and clock are injectable.

Grants, the credential broker and the audit log (issue 9's contract): a grant is named by its
`grant_id` (`<dataset>.<12 hex>`), durations are text (`90s`, `15m`, `12h`, `30d`) checked here
with `edl.durations` before any request and sent as written, so that both sides read the same.
A 403 `no_grant` from the broker becomes `NoGrantError`, whose hint is the request to make.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edl.durations import parse_duration
from edl.errors import EdlError, UsageError
from edl.naming import ACCESS_LEVELS, SOURCE_SCHEMES, validate_dataset_name
from edl_api.client import ApiClient, ApiError, path_part
from edl_api.outside_sources import OutsideSources

KINDS = ("snapshot", "delta")
FORMATS = ("csv", "jsonl", "parquet", "excel")
JOB_DONE = ("succeeded", "failed")
LEVELS = ACCESS_LEVELS
GRANT_STATES = ("requested", "active", "rejected", "revoked", "expired")
GRANT_ID_RE = re.compile(r"[a-z][a-z0-9_]{2,62}\.[0-9a-f]{12}")
PIPELINE_NAME_RE = re.compile(r"[a-z][a-z0-9_]{2,62}")   # pipeline_config.yaml's `name`
# The API's own list; plain http:// goes to the API too, which takes it on the local instance.
REMOTE_SCHEMES = (*(f"{scheme}://" for scheme in SOURCE_SCHEMES), "http://")
SOURCES_HELP = "a local file, " + ", ".join(f"{scheme}://…" for scheme in SOURCE_SCHEMES)

# Told (path, size) when an upload starts; may answer a callback for the bytes sent so far.
OnUpload = Callable[[Path, int], "Callable[[int], None] | None"]


class JobTimeoutError(EdlError):
    """A job did not finish within the wait's timeout (it goes on running)."""


class NoGrantError(ApiError):
    """The broker refused credentials: the caller holds no grant for the dataset and level."""


class LakeApi:
    def __init__(self, client: ApiClient, outside: OutsideSources | None = None) -> None:
        self.client = client
        self.outside = outside

    # -- datasets and updates -------------------------------------------------------------------

    def list_datasets(self, max_items: int | None = None) -> list[dict[str, Any]]:
        return list(self.client.paginate("/datasets", max_items=max_items))

    def get_dataset(self, dataset: str) -> dict[str, Any]:
        return self.client.get(f"/datasets/{_dataset(dataset)}")

    def list_updates(self, dataset: str, status: str | None = None,
                     max_items: int | None = None) -> list[dict[str, Any]]:
        return list(self.client.paginate(f"/datasets/{_dataset(dataset)}/updates",
                                         {"status": status}, max_items=max_items))

    def get_update(self, dataset: str, update_id: str) -> dict[str, Any]:
        return self.client.get(f"/datasets/{_dataset(dataset)}/updates/{path_part(update_id)}")

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/jobs/{path_part(job_id)}")

    # -- grants ---------------------------------------------------------------------------------

    def request_grant(self, dataset: str, level: str, *, duration: str | None = None,
                      justification: str | None = None,
                      grantee: str | None = None) -> dict[str, Any]:
        """Ask for `level` on `dataset` (for the caller, or for `grantee` if you own it); the
        grant, `requested` or, when the maker may approve it, `active` at once."""
        body = {"level": _level(level), "duration": _duration(duration, "--for"),
                "justification": justification, "grantee": grantee}
        try:
            return self.client.post(f"/datasets/{_dataset(dataset)}/grants",
                                    {k: v for k, v in body.items() if v is not None})
        except ApiError as exc:
            existing = GRANT_ID_RE.search(exc.api_message) if exc.status == 409 else None
            if existing:
                exc.hint = f"look at it: edl-api grant show {existing.group(0)}"
            raise

    def list_grants(self, *, dataset: str | None = None, state: str | None = None,
                    mine: bool = False, pending: bool = False,
                    max_items: int | None = None) -> list[dict[str, Any]]:
        if state is not None and state not in GRANT_STATES:
            raise UsageError(f"unknown grant state {state!r}",
                             hint=f"choose one of: {', '.join(GRANT_STATES)}")
        query = {"dataset": _dataset(dataset) if dataset else None, "state": state,
                 "mine": True if mine else None, "pending": True if pending else None}
        return list(self.client.paginate("/grants", query, max_items=max_items))

    def get_grant(self, grant_id: str) -> dict[str, Any]:
        return self.client.get(f"/grants/{grant_path(grant_id)}")

    def approve_grant(self, grant_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._decide(grant_id, "approve", reason)

    def reject_grant(self, grant_id: str, reason: str) -> dict[str, Any]:
        if not (reason or "").strip():
            raise UsageError("a rejection needs a reason", hint='give --reason "why"')
        return self._decide(grant_id, "reject", reason)

    def revoke_grant(self, grant_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._decide(grant_id, "revoke", reason)

    def _decide(self, grant_id: str, action: str, reason: str | None) -> dict[str, Any]:
        path = f"/grants/{grant_path(grant_id)}/{action}"
        try:
            return self.client.post(path, {"reason": reason} if reason else {})
        except ApiError as exc:
            if exc.status == 409:
                exc.hint = f"nothing was changed; see its state: edl-api grant show {grant_id}"
            raise

    # -- the credential broker and the audit log ------------------------------------------------

    def get_credentials(self, dataset: str, level: str = "read",
                        duration: str | None = None) -> dict[str, Any]:
        """Short-lived credentials of the dataset's role for `level`, as the broker vends them
        (keys as in the contract: access_key_id, …, expiration, region, bucket, prefix)."""
        name = _dataset(dataset)
        query = {"level": _level(level), "duration": _duration(duration, "--duration")}
        try:
            return self.client.get(f"/datasets/{name}/credentials", query)
        except ApiError as exc:
            if exc.status != 403 or exc.code != "no_grant":
                raise
            message = exc.api_message if name in exc.api_message else \
                f"you hold no grant to {level} {name}: {exc.api_message}"
            hint = None if "edl-api grant request" in message else request_hint(name, level)
            raise NoGrantError(exc.status, exc.code, message, hint=hint) from None

    def list_audit(self, *, dataset: str | None = None, since: str | None = None,
                   max_items: int | None = None) -> list[dict[str, Any]]:
        query = {"dataset": _dataset(dataset) if dataset else None,
                 "since": _duration(since, "--since")}
        return list(self.client.paginate("/audit", query, max_items=max_items))

    # -- pipelines ------------------------------------------------------------------------------

    def start_pipeline_run(self, pipeline: str,
                           as_of: dict[str, str] | None = None) -> dict[str, Any]:
        """Start a run of a deployed pipeline, its inputs as of the given updates (alias →
        update id; the others as of their newest): `{job_id, pipeline, status}`, to follow
        with `wait_for_job`."""
        path = f"/pipelines/{path_part(validate_pipeline_name(pipeline))}/runs"
        return self.client.post(path, {"as_of": dict(as_of)} if as_of else {})

    # -- ingest ---------------------------------------------------------------------------------

    def create_upload(self, dataset: str, filename: str) -> dict[str, Any]:
        return self.client.post(f"/datasets/{_dataset(dataset)}/uploads", {"filename": filename})

    def start_ingest(self, dataset: str, source: str, kind: str,
                     options: dict[str, Any] | None = None) -> dict[str, Any]:
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}", hint=f"choose one of: {', '.join(KINDS)}")
        body = {"source": source, "kind": kind,
                **{k: v for k, v in (options or {}).items() if v is not None}}
        return self.client.post(f"/datasets/{_dataset(dataset)}/ingest", body)

    def upload_file(self, dataset: str, path: Path, on_upload: OnUpload | None = None) -> str:
        """Put a local file into the dataset's drop bucket; the s3:// source to ingest from.
        `on_upload(path, size)` is told once the API has given the URL, and may return a
        callback for the bytes sent so far."""
        upload = self.create_upload(dataset, path.name)
        url, source = upload.get("url"), upload.get("source")
        if not url or not source:
            raise EdlError("the API's upload answer has no url or source",
                           hint="this is a mismatch between edl-api and the API's version")
        size = path.stat().st_size
        on_progress = on_upload(path, size) if on_upload else None
        with path.open("rb") as file:
            self.client.put_file(url, file, size, headers=upload.get("headers"),
                                 on_progress=on_progress)
        return source

    def ingest(self, dataset: str, source: str, kind: str, options: dict[str, Any] | None = None,
               on_upload: OnUpload | None = None) -> dict[str, Any]:
        """Start an ingest; a local file is uploaded first. The start_ingest answer, with the
        source that was ingested added as `source`."""
        validate_dataset_name(dataset)
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}", hint=f"choose one of: {', '.join(KINDS)}")
        local = local_file(source)
        with tempfile.TemporaryDirectory(prefix="edl-api-") as spool:
            if local is None and self.outside is not None and self.outside.is_outside(source):
                local = self.outside.fetch(source, Path(spool))
            if local is not None:
                source = self.upload_file(dataset, local, on_upload)
        started = self.start_ingest(dataset, source, kind, options)
        return {**started, "source": started.get("source", source)}

    def wait_for_job(self, job_id: str, *, timeout: float,
                     on_poll: Callable[[dict[str, Any]], None] | None = None,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic,
                     interval: float = 0.25, max_interval: float = 2.0) -> dict[str, Any]:
        """Poll the job until it succeeded or failed; its last state. Raises JobTimeoutError."""
        deadline = clock() + timeout
        while True:
            job = self.get_job(job_id)
            if on_poll:
                on_poll(job)
            if job.get("status") in JOB_DONE:
                return job
            if clock() >= deadline:
                raise JobTimeoutError(
                    f"job {job_id} still {job.get('status', 'unknown')} after {timeout:g}s",
                    hint=f"it goes on running; look at it with: edl-api job {job_id}")
            sleep(min(interval, max(0.0, deadline - clock())))
            interval = min(max_interval, interval * 1.5)


def local_file(source: str) -> Path | None:
    """The local file a source names (a path or file://…), None for a remote source.
    A local path that is not a readable file is refused here, before any request."""
    if source.startswith(REMOTE_SCHEMES):
        return None
    path = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
    if "://" in source and not source.startswith("file://"):
        raise UsageError(f"unsupported source {source!r}", hint=f"use {SOURCES_HELP}")
    if not path.exists():
        raise UsageError(f"no such file: {path}",
                         hint=f"give {SOURCES_HELP}")
    if not path.is_file():
        raise UsageError(f"{path} is not a file",
                         hint="ingest one file at a time; zip a folder to ingest it as one update")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {path}")
    return path


def _dataset(name: str) -> str:
    return validate_dataset_name(name)


def _level(level: str) -> str:
    if level not in LEVELS:
        raise UsageError(f"unknown level {level!r}", hint=f"choose one of: {', '.join(LEVELS)}")
    return level


def _duration(text: str | None, what: str) -> str | None:
    """A duration as the user wrote it (trimmed), once `edl.durations` has read it."""
    if text is None:
        return None
    parse_duration(text, what=what)
    return text.strip().lower()


def validate_grant_id(grant_id: str) -> str:
    """A grant id, `<dataset>.<12 hex>`, checked before any request."""
    if not isinstance(grant_id, str) or not GRANT_ID_RE.fullmatch(grant_id):
        raise UsageError(f"invalid grant id {str(grant_id)[:80]!r}",
                         hint="a grant id reads <dataset>.<12 hex digits>, e.g. "
                              "trials.3f9a2c1b7d40; list them with `edl-api grants`")
    return grant_id


def validate_pipeline_name(name: str) -> str:
    """A pipeline's name, checked before any request."""
    if not isinstance(name, str) or not PIPELINE_NAME_RE.fullmatch(name):
        raise UsageError(f"invalid pipeline name {str(name)[:80]!r}",
                         hint="a pipeline's name is 3-63 lowercase letters, digits and _, "
                              "starting with a letter (its pipeline_config.yaml's name)")
    return name


def grant_path(grant_id: str) -> str:
    return path_part(validate_grant_id(grant_id))


def request_hint(dataset: str, level: str) -> str:
    return (f"ask for it: edl-api grant request {dataset} --level {level} --for 30d "
            '--justification "why you need it"')
