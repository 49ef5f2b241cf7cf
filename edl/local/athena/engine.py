"""One query, run by DuckDB over the lake's parquet, as its caller.

`QueryEngine.run` parses the query (`sql.parse_query`), resolves every table it reads through
Glue (`tables.GlueTables`): a view's SQL is parsed and resolved in turn (in its own database) and
put in place of the reference as a subquery; a table becomes a pyarrow dataset registered with
a fresh in-memory DuckDB under a private name. The whole tree is then written in DuckDB's dialect
and run. DuckDB reads nothing itself: the connection is locked to no external access (no files,
no extensions - none are downloaded) before the query runs, so the only data it sees is what the
caller's credentials could read. `/` on integers divides as Trino does (`integer_division`), and
results DuckDB widens (`sum` of integers to HUGEINT) come back as Trino's `bigint`.

`Cancellation.cancel()` interrupts the running DuckDB statement from another thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from edl.local.athena import sql as athena_sql
from edl.local.athena.sql import QueryFailure
from edl.local.athena.tables import (
    Credentials,
    GlueTables,
    ResolvedTable,
    S3Reads,
    access_denied,
    is_access_denied,
)

log = logging.getLogger("edl.local.athena")

MAX_VIEW_DEPTH = 16
_WIDE_INTEGERS = ("HUGEINT", "UHUGEINT", "UBIGINT")
_DUCKDB_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (duckdb.BinderException, "COLUMN_NOT_FOUND"),
    (duckdb.CatalogException, "FUNCTION_NOT_FOUND"),
    (duckdb.ConversionException, "INVALID_CAST_ARGUMENT"),
    (duckdb.OutOfRangeException, "NUMERIC_VALUE_OUT_OF_RANGE"),
    (duckdb.ParserException, "SYNTAX_ERROR"),
    (duckdb.NotImplementedException, "NOT_SUPPORTED"),
)


class QueryCancelled(Exception):
    """The query was stopped (`StopQueryExecution`) while it ran."""


@dataclass
class Cancellation:
    """Lets another thread stop a query: before it starts, or while DuckDB runs it."""

    cancelled: bool = False
    _connection: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._connection is not None:
                self._connection.interrupt()

    def attach(self, connection: Any) -> None:
        with self._lock:
            if self.cancelled:
                raise QueryCancelled()
            self._connection = connection

    def detach(self) -> None:
        with self._lock:
            self._connection = None

    def check(self) -> None:
        if self.cancelled:
            raise QueryCancelled()


@dataclass(frozen=True)
class QueryOutcome:
    table: pa.Table
    bytes_scanned: int
    engine_millis: int


class QueryEngine:
    """Runs queries against the AWS endpoint at `endpoint()` (the local cloud's own)."""

    def __init__(self, endpoint: Callable[[], str], glue_client: Callable[[Credentials], Any],
                 threads: int = 2) -> None:
        self.endpoint = endpoint
        self.glue_client = glue_client
        self.threads = threads

    def run(self, query: str, database: str | None, credentials: Credentials,
            cancellation: Cancellation) -> QueryOutcome:
        started = time.monotonic()
        tree = athena_sql.parse_query(query)
        reads = S3Reads(self.endpoint(), credentials)
        tables = GlueTables(self.glue_client(credentials), reads)
        relations: dict[str, ResolvedTable] = {}
        self._resolve(tree, query, database, tables, relations, depth=0)
        cancellation.check()
        athena_sql.name_output_columns(tree)
        athena_sql.keep_dates_dates(tree, {
            f.name for resolved in relations.values() for f in resolved.dataset.schema
            if pa.types.is_date(f.type)})
        text = athena_sql.to_duckdb(tree)
        log.debug("athena - running %s", text)
        table = self._execute(text, relations, cancellation)
        return QueryOutcome(table, reads.bytes_scanned, int((time.monotonic() - started) * 1000))

    def _resolve(self, tree: Any, text: str, database: str | None, tables: GlueTables,
                 relations: dict[str, ResolvedTable], depth: int) -> None:
        """Replace every table reference of `tree` with a registered relation or a view's
        expanded query."""
        if depth > MAX_VIEW_DEPTH:
            raise QueryFailure("VIEW_IS_RECURSIVE", f"views nest deeper than {MAX_VIEW_DEPTH} "
                               "levels (does a view read itself?)")
        for reference in athena_sql.table_references(tree, text):
            name = athena_sql.table_name(reference)
            resolved = tables.resolve(name, database, athena_sql.where(reference, text))
            if isinstance(resolved, ResolvedTable):
                relation = f"__edl_table_{len(relations)}"
                relations[relation] = resolved
                athena_sql.replace_table(reference, relation)
                continue
            try:
                view_tree = athena_sql.parse_query(resolved.sql)
            except QueryFailure as failure:
                raise QueryFailure(failure.error_type,
                                   f"in view {resolved.name}: {failure.message}") from None
            self._resolve(view_tree, resolved.sql, resolved.database, tables, relations,
                          depth + 1)
            athena_sql.replace_table(reference, view_tree)

    def _execute(self, text: str, relations: dict[str, ResolvedTable],
                 cancellation: Cancellation) -> pa.Table:
        connection = duckdb.connect(config={"threads": self.threads,
                                            "autoinstall_known_extensions": False,
                                            "autoload_known_extensions": False})
        try:
            for relation, resolved in relations.items():
                connection.register(relation, resolved.dataset)
            connection.execute("SET integer_division = true")
            connection.execute("SET TimeZone = 'UTC'")
            connection.execute("SET enable_external_access = false")
            connection.execute("SET lock_configuration = true")
            cancellation.attach(connection)
            try:
                result = connection.sql(text)
                if result is None:
                    raise QueryFailure("NOT_SUPPORTED", "the statement returns no rows")
                wide = [(name, kind) for name, kind in zip(result.columns, result.types,
                                                           strict=True)
                        if str(kind) in _WIDE_INTEGERS]
                if wide:
                    result = result.project(", ".join(
                        f'CAST("{n}" AS BIGINT) AS "{n}"' if (n, k) in wide else f'"{n}"'
                        for n, k in zip(result.columns, result.types, strict=True)))
                return result.to_arrow_table()
            finally:
                cancellation.detach()
        except duckdb.InterruptException:
            raise QueryCancelled() from None
        except duckdb.Error as error:
            raise _failure(error, relations) from None
        finally:
            connection.close()


def _failure(error: Exception, relations: dict[str, ResolvedTable]) -> QueryFailure:
    """An Athena-like failure for a DuckDB error. DuckDB's own context lines (with a caret
    under the transpiled SQL) would point at text the user never wrote: only the first line
    is kept."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    for relation, resolved in relations.items():
        message = message.replace(relation, resolved.name)
    if is_access_denied(error):
        names = ", ".join(sorted({r.name for r in relations.values()}))
        return access_denied(f"table {names}", error)
    for kind, error_type in _DUCKDB_FAILURES:
        if isinstance(error, kind):
            return QueryFailure(error_type, message)
    return QueryFailure("GENERIC_USER_ERROR", message)
