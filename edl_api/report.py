"""How `edl-api` shows the API's answers: tables for people, the raw JSON for scripts.

Results go to stdout, progress and messages to stderr (through `edl.ui.UI`). The readers here are
lenient about which optional fields an answer carries, so a newer API with more fields, or an
older one with fewer, still prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.text import Text

from edl.ui import UI


def first(record: dict[str, Any], *names: str, default: Any = None) -> Any:
    """The first of `names` that `record` has with a value."""
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return default


def table(ui: UI, title: str | None, columns: Sequence[str],
          rows: Iterable[Sequence[Any]]) -> None:
    """A table whose cells are shown as they are (the API's text is never rich markup)."""
    ui.table(escape(title) if title else None, columns,
             [[escape(str(cell)) if cell is not None else "" for cell in row] for row in rows])


def print_json(ui: UI, payload: Any) -> None:
    ui.result(json.dumps(payload, indent=2, sort_keys=True, default=str))


def details(ui: UI, title: str | None, pairs: Iterable[tuple[str, Any]]) -> None:
    """A record's fields as aligned `key  value` lines (empty fields left out)."""
    shown = [(key, str(value)) for key, value in pairs if value not in (None, "", [], {})]
    width = max((len(key) for key, _ in shown), default=0)
    if title:
        ui.out.print(Text(title, style="bold"))
    for key, value in shown:
        ui.out.print(Text.assemble((key.ljust(width), "bold"), "  ", value))


def when(value: Any) -> str:
    """An ISO time or epoch seconds, shown as `YYYY-MM-DD HH:MM:SS` (UTC)."""
    if value in (None, ""):
        return ""
    try:
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError):
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def size(value: Any) -> str:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if amount < 1024 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return ""


def count(value: Any) -> str:
    return "" if value in (None, "") else f"{int(value):,}" if str(value).isdigit() else str(value)


# -- datasets --------------------------------------------------------------------------------

def dataset_name(record: dict[str, Any]) -> str:
    return first(record, "name", "dataset", default="")


def newest_update(record: dict[str, Any]) -> Any:
    """The newest update: a record (get_dataset's newest complete one) rather than a bare id."""
    candidates = [record.get(k) for k in ("newest_update", "latest_update", "last_update")]
    return next((c for c in candidates if isinstance(c, dict)),
                next((c for c in candidates if c not in (None, "")), None))


def update_summary(update: Any) -> str:
    if isinstance(update, dict):
        uid = first(update, "update_id", "id", default="?")
        extra = ", ".join(x for x in (first(update, "kind", default=""),
                                      when(first(update, "finished_at", "created_at"))) if x)
        return f"{uid} ({extra})" if extra else str(uid)
    return "" if update is None else str(update)


def datasets_table(ui: UI, datasets: Sequence[dict[str, Any]]) -> None:
    rows = [(dataset_name(d), d.get("tier"), d.get("owner"),
             count(first(d, "update_count", "updates", "updates_count")),
             update_summary(newest_update(d))) for d in datasets]
    table(ui, None, ("name", "tier", "owner", "updates", "last update"), rows)
    ui.info(f"{len(rows)} dataset{'s' if len(rows) != 1 else ''}")


def schema_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Columns of a dataset's newest update, or of an update: [{name, type}, …]."""
    columns = first(record, "schema", "columns")
    for name in ("newest_update", "last_update", "latest_update"):
        if columns is None and isinstance(record.get(name), dict):
            columns = first(record[name], "schema", "columns")
    if isinstance(columns, dict) and "fields" in columns:
        columns = columns["fields"]
    return [c for c in columns or [] if isinstance(c, dict)]


def schema_table(ui: UI, title: str, columns: list[dict[str, Any]]) -> None:
    if not columns:
        ui.info(f"{title}: none yet (no complete update)")
        return
    table(ui, title, ("column", "type"),
             [(c.get("name"), c.get("type")) for c in columns])


def dataset_details(ui: UI, record: dict[str, Any]) -> None:
    if isinstance(record.get("dataset"), dict):  # {"dataset": {...}, "newest_update": ...}
        record = {**record["dataset"], **{k: v for k, v in record.items() if k != "dataset"}}
    newest = newest_update(record)
    details(ui, f"dataset {dataset_name(record)}", [
        ("tier", record.get("tier")),
        ("owner", record.get("owner")),
        ("home region", first(record, "home_region", "region")),
        ("description", record.get("description")),
        ("created", when(record.get("created_at"))),
        ("updates", count(first(record, "update_count", "updates", "updates_count"))),
        ("last update", update_summary(record.get("last_update"))),
        ("newest complete", update_summary(newest) if isinstance(newest, dict) else None),
        ("rows", count(newest.get("rows")) if isinstance(newest, dict) else None),
    ])
    delta = first(record, "delta", "delta_convention")
    if isinstance(delta, dict):
        details(ui, "delta convention", [
            ("key columns", ", ".join(delta.get("key_columns") or [])),
            ("operation column", delta.get("op_column")),
            ("delete marker", delta.get("delete_marker")),
        ])
    else:
        ui.info("delta convention: none (deltas cannot be applied by key)")
    schema_table(ui, "schema of the newest update", schema_of(record))


# -- updates ---------------------------------------------------------------------------------

def updates_table(ui: UI, dataset: str, updates: Sequence[dict[str, Any]]) -> None:
    rows = [(first(u, "update_id", "id"), u.get("kind"), u.get("status"), count(u.get("rows")),
             count(first(u, "file_count", "files_count")), size(u.get("bytes")),
             when(u.get("created_at")), when(u.get("finished_at"))) for u in updates]
    table(ui, f"updates of {dataset}",
             ("update", "kind", "status", "rows", "files", "bytes", "created", "finished"), rows)
    ui.info(f"{len(rows)} update{'s' if len(rows) != 1 else ''}")


def lineage_table(ui: UI, dataset: str, updates: Sequence[dict[str, Any]]) -> None:
    def inputs(lineage: dict[str, Any]) -> str:
        lines = []
        for i in lineage.get("inputs") or []:
            made_of = i.get("updates") or []
            lines.append(f"{i.get('dataset')} as of {i.get('update_id')}"
                         + (f" ({', '.join(made_of)})" if len(made_of) > 1 else ""))
        return "\n".join(lines) or "-"

    rows = []
    for u in updates:
        lineage = u.get("lineage") or {}
        rows.append((first(u, "update_id", "id"), u.get("status"),
                     lineage.get("pipeline") or "(ingest)", inputs(lineage) if lineage else "-",
                     str(lineage.get("run_id", ""))[:8], str(lineage.get("code_hash", ""))[:12]))
    table(ui, f"lineage of {dataset}",
          ("update", "status", "made by", "from", "run", "code"), rows)
    ui.info(f"{len(rows)} update{'s' if len(rows) != 1 else ''}"
            + ("" if rows else " written by a pipeline (--all lists every update)"))


def update_details(ui: UI, update: dict[str, Any]) -> None:
    details(ui, f"update {first(update, 'update_id', 'id')} of {update.get('dataset', '')}", [
        ("kind", update.get("kind")),
        ("status", update.get("status")),
        ("source", update.get("source")),
        ("rows", count(update.get("rows"))),
        ("bytes", size(update.get("bytes"))),
        ("files", count(first(update, "file_count", "files_count"))),
        ("requested by", update.get("requested_by")),
        ("job", update.get("job_id")),
        ("created", when(update.get("created_at"))),
        ("started", when(update.get("started_at"))),
        ("finished", when(update.get("finished_at"))),
        ("reason", first(update, "reason", "error")),
    ])
    files = [f for f in update.get("files") or [] if isinstance(f, dict)]
    if files:
        table(ui, "files", ("path", "format", "rows", "bytes", "sha256"),
                 [(f.get("path"), f.get("format"), count(f.get("rows")), size(f.get("bytes")),
                   str(f.get("sha256", ""))[:12]) for f in files])
    schema_table(ui, "schema", schema_of(update))


# -- jobs ------------------------------------------------------------------------------------

def job_error(job: dict[str, Any]) -> str:
    error = job.get("error")
    if isinstance(error, dict):
        return ": ".join(str(x) for x in (error.get("code"), error.get("message")) if x)
    return str(error or "no reason given")


def progress_text(job: dict[str, Any]) -> str:
    progress = job.get("progress")
    if isinstance(progress, dict):
        return ", ".join(f"{k} {v}" for k, v in progress.items() if v not in (None, ""))
    if isinstance(progress, (int, float)) and not isinstance(progress, bool):
        return f"{progress * 100:.0f}%" if progress <= 1 else f"{progress:.0f}%"
    return "" if progress is None else str(progress)


def job_line(job: dict[str, Any]) -> str:
    status = job.get("status", "unknown")
    text = f"job {job.get('job_id', '')} {status}"
    if job.get("update_id"):
        text += f" (update {job['update_id']} of {job.get('dataset', '?')})"
    elif job.get("pipeline"):
        text += f" (pipeline {job['pipeline']})"
    progress = progress_text(job)
    return f"{text}: {progress}" if progress else text


def job_details(ui: UI, job: dict[str, Any]) -> None:
    details(ui, f"job {job.get('job_id', '')}", [
        ("status", job.get("status")),
        ("dataset", job.get("dataset")),
        ("update", job.get("update_id")),
        ("pipeline", job.get("pipeline")),
        ("outputs", ", ".join(run_outputs(job))),
        ("progress", progress_text(job)),
        ("error", job_error(job) if job.get("error") else None),
        ("created", when(job.get("created_at"))),
        ("started", when(job.get("started_at"))),
        ("finished", when(job.get("finished_at"))),
    ])


def ingest_started(ui: UI, dataset: str, started: dict[str, Any]) -> None:
    details(ui, f"ingest into {dataset}", [
        ("update", started.get("update_id")),
        ("job", started.get("job_id")),
        ("status", started.get("status")),
        ("source", started.get("source")),
    ])


def pipeline_run_started(ui: UI, started: dict[str, Any]) -> None:
    details(ui, f"run of pipeline {started.get('pipeline', '?')}", [
        ("job", started.get("job_id")),
        ("status", started.get("status")),
    ])


def run_outputs(job: dict[str, Any]) -> list[str]:
    """A pipeline run's outputs as `alias: dataset update N (R rows)`."""
    outputs = job.get("outputs")
    if not isinstance(outputs, dict):
        return []
    shown = []
    for alias, output in sorted(outputs.items()):
        output = output if isinstance(output, dict) else {}
        rows = output.get("rows")
        shown.append(f"{alias}: {output.get('dataset', '?')} update "
                     f"{output.get('update_id', '?')}"
                     + (f" ({count(rows)} rows)" if rows is not None else ""))
    return shown
