"""`edl-api query`: SQL over the lake, run as you through Athena (`edl.utils.query`).

The query is planned and run by `edl.utils.query` with the broker's read credentials for the
datasets it reads, vended by the API to the caller of this command. While it is queued or
running its state goes to stderr; then the rows go to stdout (or `--out`) as a table, CSV, JSON
(an array of objects) or parquet, and a summary line (rows, time, bytes scanned, query id) to
stderr. A file given by `--out` is written next to its final name and renamed into place, so it
is either whole or not there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edl.errors import UsageError
from edl_api.commands import Session

FORMATS = ("table", "csv", "json", "parquet")
# More rows than this are not drawn as a table: they go to a file (or a pipe) as CSV or parquet.
TERMINAL_ROWS = 1000


def read_sql(opts: argparse.Namespace) -> str:
    if (opts.sql is None) == (opts.file is None):
        raise UsageError("give the SQL or --file FILE (one of them)",
                         hint='edl-api query "SELECT count(*) FROM trials"')
    if opts.file is None:
        return opts.sql
    try:
        return Path(opts.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {opts.file}: {exc.strerror}",
                         hint="give the path of a .sql file") from None


def parse_as_of(values: list[str] | None) -> dict[str, str]:
    from edl.naming import validate_dataset_name
    from edl.utils.updates import format_update_id

    found: dict[str, str] = {}
    for value in values or []:
        dataset, sep, update = value.partition("=")
        if not sep or not dataset or not update:
            raise UsageError(f"--as-of {value!r} is not DATASET=UPDATE",
                             hint="e.g. --as-of trials=0000000003")
        validate_dataset_name(dataset)
        try:
            found[dataset] = format_update_id(update)
        except Exception:  # noqa: BLE001 - any unreadable id is the same usage error
            raise UsageError(f"--as-of {value!r}: {update!r} is not an update id",
                             hint="list the dataset's updates: edl-api updates DATASET") from None
    return found


def query(opts: argparse.Namespace, s: Session) -> int:
    from edl.utils.context import LakeContext
    from edl.utils.metadata import DatasetRecord
    from edl.utils.query import query as run_query

    form = "json" if opts.json else (opts.format or "table")
    if opts.json and opts.format not in (None, "json"):
        raise UsageError("--json is --format json; give one of them")
    sql = read_sql(opts)
    as_of = parse_as_of(opts.as_of)
    if form == "parquet" and opts.out is None and sys.stdout.isatty():
        raise UsageError("parquet is not for a terminal", hint="add --out FILE.parquet")
    ctx = LakeContext.for_reader(
        opts.instance, opts.profile,
        broker=lambda dataset, level: s.api.get_credentials(dataset, level))
    seen: list[str] = []

    def progress(state: str, seconds: float, stats: Mapping[str, Any]) -> None:
        if not seen or seen[-1] != state:
            seen.append(state)
            s.ui.info(f"{state.lower()} ({seconds:.1f} s)")

    # Records through the API this command already talks to (GET /datasets/{d} answers with a
    # record's fields): no DynamoDB client to make.
    result = run_query(sql, ctx, as_of=as_of, timeout=opts.timeout, progress=progress,
                       lookup=lambda name: DatasetRecord.from_item(s.api.get_dataset(name)))
    table = result.table
    if form == "table" and opts.out is None and table.num_rows > TERMINAL_ROWS:
        raise UsageError(f"the result has {table.num_rows} rows, more than a terminal shows "
                         f"({TERMINAL_ROWS})",
                         hint="write it to a file: --format csv --out result.csv (or parquet)")
    if opts.out is not None:
        _write_file(Path(opts.out), table, "csv" if form == "table" else form)
        s.ui.info(f"wrote {opts.out}")
    elif form == "table":
        s.ui.table(None, table.column_names,
                   ([_cell(v) for v in row.values()] for row in table.to_pylist()))
    else:
        _write_stream(sys.stdout.buffer, table, form)
    s.ui.info(f"{table.num_rows} row{'s' if table.num_rows != 1 else ''} in "
              f"{result.seconds:.2f} s, {_size(result.bytes_scanned)} scanned "
              f"(query {result.query_execution_id}, workgroup {result.workgroup})")
    return 0


def _cell(value: Any) -> str:
    return "NULL" if value is None else str(value)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _write_stream(out, table, form: str) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if form == "csv":
        pacsv.write_csv(table, out)
    elif form == "parquet":
        pq.write_table(table, out)
    else:
        out.write(json.dumps(table.to_pylist(), default=str, ensure_ascii=False,
                             indent=None).encode("utf-8") + b"\n")
    out.flush()


def _write_file(path: Path, table, form: str) -> None:
    """Written beside `path` and renamed into place: whole, or not there."""
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            _write_stream(out, table, form)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_parser(add) -> None:
    p = add("query", "run SQL over the lake (Athena's dialect) as you",
            query, description="Run a query over the lake through Athena, with the "
            "credentials the broker vends you for the datasets it reads (a dataset without "
            "your grant is refused). A dataset's name means its current data, every delta "
            "applied; --as-of DATASET=UPDATE reads it as of an update. Read-only: CREATE, "
            "INSERT, DROP and the like are refused.")
    p.add_argument("sql", nargs="?", metavar="SQL", help="the query (or --file)")
    p.add_argument("--file", metavar="FILE", help="read the query from FILE")
    p.add_argument("--as-of", action="append", metavar="DATASET=UPDATE",
                   help="read DATASET as of UPDATE (repeat for several datasets)")
    p.add_argument("--format", choices=FORMATS,
                   help="table (default; at most 1000 rows), csv, json (an array of objects) "
                        "or parquet")
    p.add_argument("--out", metavar="PATH", help="write the rows to PATH instead of stdout")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="stop the query if it runs longer than S seconds (default: 600)")
