"""SQL over the lake through Athena's API, as the caller (DESIGN §6).

    from edl.utils import lake
    table = lake.query("SELECT site, count(*) AS n FROM trials GROUP BY site",
                       instance="local", profile="bob")            # a pyarrow.Table

`edl-api query` and `lake.query` both come here, and both speak Athena's own API: the cloud's
Athena, or the local cloud's (the runtime answers it on the AWS endpoint) - only the endpoint
differs. A query is planned before it is sent:

1. parsed in Athena's dialect (Trino) with sqlglot: a syntax error names its line and column;
   anything but a query (`CREATE`, `INSERT`, `DROP`, ...) is refused, so nothing can change;
2. every table it reads is a dataset: `trials` or `edl_<instance>_<tier>.trials`. An unqualified
   name is looked up in the lake's metadata (an unknown dataset is an error naming it) and
   qualified with its tier's database; `--as-of trials=0000000003` puts the dataset as of that
   update in a CTE of the same name instead (`edl.utils.catalog.as_of_sql`);
3. the query runs with the short-lived credentials the broker vends the caller for reading those
   datasets: a caller without a grant is refused by the broker, which audits the refusal. One
   session reads the query's datasets, so a query reads either internal datasets only (the
   default reader role) or one dataset of a higher tier (its read role) - never two of those;
4. it runs in the workgroup of the highest tier it reads (`edl-<tier>`), which sets where the
   result goes. Its state is polled every 10 ms for a quarter of a second, every 50 ms to the
   end of the first, then ever less often, and reported; a query still running at its timeout - or when Ctrl-C is
   pressed - is stopped (`StopQueryExecution`).

A result of up to 999 rows comes with the first `GetQueryResults` page; a longer one is read
from the CSV object Athena wrote (never paged through). Either way it is typed by the columns
Athena reports, through the same CSV reader.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edl import naming
from edl.errors import EdlError, UsageError
from edl.utils.context import LakeContext
from edl.utils.metadata import DatasetRecord

SUCCEEDED, FAILED, CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)
DEFAULT_TIMEOUT_SECONDS = 600.0
_POLL_FIRST, _POLL_FAST, _POLL_MAX = 0.01, 0.05, 1.0
_POLL_FIRST_FOR, _POLL_FAST_FOR = 0.25, 1.0   # seconds polled every _POLL_FIRST, _POLL_FAST
_PAGE_ROWS = 1000      # GetQueryResults' largest page

Progress = Callable[[str, float, Mapping[str, Any]], None]   # (state, seconds, statistics)


class QueryError(EdlError):
    """The query failed, was refused or was stopped: nothing was changed."""


class QueryTimeout(QueryError):
    pass


@dataclass(frozen=True)
class PlannedQuery:
    sql: str                       # what is sent: tables qualified, --as-of CTEs in place
    datasets: tuple[DatasetRecord, ...]
    workgroup: str
    database: str                  # the query's default database (the highest tier's)


@dataclass(frozen=True)
class QueryResult:
    table: Any                     # pyarrow.Table
    query_execution_id: str
    workgroup: str
    output_location: str
    seconds: float                 # Athena's total execution time
    bytes_scanned: int
    columns: tuple[tuple[str, str], ...] = field(default=())   # (name, Athena type)


# -- planning ---------------------------------------------------------------------------------

def parse(sql: str):
    """The query's syntax tree (Trino); a syntax error or a statement that is not a query is
    a `QueryError` naming it."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    if not sql.strip():
        raise UsageError("the query is empty", hint="give the SQL, or --file FILE")
    try:
        trees = [t for t in sqlglot.parse(sql, read="trino") if t is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = (f" at line {first.get('line')}, column {first.get('col')}"
                 if first.get("line") else "")
        near = f" near {first['highlight']!r}" if first.get("highlight") else ""
        detail = (first.get("description") or str(exc).splitlines()[0]).split(" but got <")[0]
        raise QueryError(f"syntax error{where}{near}: {detail}",
                         hint="queries are in Athena's SQL (Trino's dialect)") from None
    if len(trees) != 1:
        raise QueryError(f"the text holds {len(trees)} statements; a query is one",
                         hint="run them one by one")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        statement = (tree.key or type(tree).__name__).upper()
        raise QueryError(f"{statement} is refused: the lake's SQL is read-only (queries only)",
                         hint="data changes through ingests and pipelines")
    return tree


Lookup = Callable[[str], DatasetRecord]   # a dataset's record by name, or UnknownDatasetError


def plan(sql: str, ctx: LakeContext, as_of: Mapping[str, str] | None = None, *,
         lookup: Lookup | None = None) -> PlannedQuery:
    """Qualify the query's tables with their datasets' databases (or --as-of CTEs), and pick
    the workgroup; every dataset it names must exist. Records come from `lookup` (default:
    the lake's metadata, as the caller)."""
    from sqlglot import exp

    lookup = lookup or ctx.metadata.get_dataset
    tree = parse(sql)
    as_of = dict(as_of or {})
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    databases = {naming.glue_database(ctx.instance, t): t for t in ctx.config.tiers} | {
        naming.glue_updates_database(ctx.instance, t): t for t in ctx.config.tiers}
    records: dict[str, DatasetRecord] = {}
    for table in list(tree.find_all(exp.Table)):
        name, db = table.name, table.db
        if not name or (not db and name in ctes):
            continue
        if db and db not in databases:
            raise QueryError(f"table {db}.{name} is not in the lake: its databases are "
                             f"{', '.join(sorted(databases))}",
                             hint=f"name the dataset alone: FROM {name}")
        record = records.get(name) or lookup(name)
        records[name] = record
        if db and databases[db] != record.tier:
            raise QueryError(f"dataset {name} is {record.tier}-tier, not in {db}",
                             hint=f"name it alone: FROM {name}")
        if not db and name not in as_of:
            table.set("db", exp.to_identifier(naming.glue_database(ctx.instance, record.tier)))
    unknown = sorted(set(as_of) - set(records))
    if unknown:
        raise UsageError(f"--as-of names {', '.join(unknown)}, which the query does not read",
                         hint="give --as-of DATASET=UPDATE for a dataset the query reads")
    for dataset, update_id in as_of.items():
        _put_first_cte(tree, dataset, _as_of_sql(ctx, records[dataset], update_id))
    tiers = list(ctx.config.tiers)
    top = max((r.tier for r in records.values()), key=tiers.index, default=tiers[0])
    return PlannedQuery(sql=tree.sql(dialect="trino"), datasets=tuple(records.values()),
                        workgroup=naming.athena_workgroup(top),
                        database=naming.glue_database(ctx.instance, top))


def _as_of_sql(ctx: LakeContext, record: DatasetRecord, update_id: str) -> str:
    from edl.utils.catalog import as_of_sql

    return as_of_sql(ctx.instance, record, ctx.updates.list_updates(record.dataset), update_id)


def _put_first_cte(tree, name: str, sql: str) -> None:
    """`WITH name AS (sql)` before the query's own CTEs (which may read it)."""
    import sqlglot
    from sqlglot import exp

    cte = exp.CTE(this=sqlglot.parse_one(sql, read="trino"), alias=exp.TableAlias(
        this=exp.to_identifier(name, quoted=True)))
    existing = tree.args.get("with_") or tree.args.get("with")
    key = "with_" if "with_" in tree.arg_types else "with"
    if existing is None:
        tree.set(key, exp.With(expressions=[cte]))
    else:
        existing.set("expressions", [cte, *existing.expressions])


def reading_dataset(planned: PlannedQuery, ctx: LakeContext) -> DatasetRecord:
    """The dataset whose read credentials the query runs with (see the module's 3.)."""
    higher = [r for r in planned.datasets if not ctx.config.tier(r.tier).default_read]
    if len(higher) > 1:
        names = ", ".join(sorted(r.dataset for r in higher))
        raise QueryError(f"the query reads {names}: one query reads through one dataset's "
                         "credentials, so at most one dataset that is not internal",
                         hint="query them one by one, or join them in Spark with lake.read")
    if higher:
        return higher[0]
    if not planned.datasets:
        raise QueryError("the query reads no dataset",
                         hint="name a dataset in FROM, e.g. SELECT count(*) FROM trials")
    return planned.datasets[0]


# -- running ----------------------------------------------------------------------------------

class AthenaQueries:
    """Runs planned queries through Athena's API with one set of credentials."""

    def __init__(self, athena_client, s3_client: Callable[[], Any], *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.athena = athena_client
        self.s3 = s3_client     # made when a result is too long for one page
        self.sleep = sleep
        self.clock = clock

    def run(self, planned: PlannedQuery, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
            progress: Progress | None = None) -> QueryResult:
        started = self.clock()
        query_id = self.athena.start_query_execution(
            QueryString=planned.sql, WorkGroup=planned.workgroup,
            QueryExecutionContext={"Catalog": "AwsDataCatalog",
                                   "Database": planned.database})["QueryExecutionId"]
        try:
            execution = self._wait(query_id, started, timeout, progress)
        except KeyboardInterrupt:
            self._stop(query_id)
            raise
        state = execution["Status"]["State"]
        if state != SUCCEEDED:
            reason = execution["Status"].get("StateChangeReason") or "no reason given"
            raise QueryError(f"query {query_id} {state.lower()}: {reason}")
        return self._result(query_id, planned, execution)

    def _wait(self, query_id: str, started: float, timeout: float,
              progress: Progress | None) -> dict:
        interval = _POLL_FIRST
        while True:
            execution = self.athena.get_query_execution(
                QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if progress is not None:
                progress(state, self.clock() - started, execution.get("Statistics", {}))
            if state in FINAL_STATES:
                return execution
            if self.clock() - started >= timeout:
                self._stop(query_id)
                raise QueryTimeout(f"query {query_id} ran past its timeout of {timeout:g} s "
                                   "and was stopped (CANCELLED)",
                                   hint="give it longer with --timeout, or narrow it")
            self.sleep(interval)
            # every 10 ms for a quarter of a second, every 50 ms to the end of the first (most
            # queries end within it), then ever less often
            elapsed = self.clock() - started
            if elapsed >= _POLL_FIRST_FOR:
                interval = min(interval * 2,
                               _POLL_FAST if elapsed < _POLL_FAST_FOR else _POLL_MAX)

    def _stop(self, query_id: str) -> None:
        # Best effort: the error (or Ctrl-C) that led here is what the caller must hear of.
        with contextlib.suppress(Exception):
            self.athena.stop_query_execution(QueryExecutionId=query_id)

    def _result(self, query_id: str, planned: PlannedQuery, execution: dict) -> QueryResult:
        """A result of one page (up to 1,000 rows, the header row among them) comes with
        `GetQueryResults`; a longer one is read from the CSV object Athena wrote."""
        page = self.athena.get_query_results(QueryExecutionId=query_id,
                                             MaxResults=_PAGE_ROWS)
        info = page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
        columns = tuple((c["Name"], _with_precision(c)) for c in info)
        location = execution["ResultConfiguration"]["OutputLocation"]
        if page.get("NextToken"):
            bucket, _, key = location.removeprefix("s3://").partition("/")
            body = self.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        else:
            body = page_csv(page["ResultSet"]["Rows"])
        stats = execution.get("Statistics", {})
        return QueryResult(
            table=read_result_csv(body, columns), query_execution_id=query_id,
            workgroup=planned.workgroup, output_location=location,
            seconds=stats.get("TotalExecutionTimeInMillis", 0) / 1000,
            bytes_scanned=int(stats.get("DataScannedInBytes", 0)), columns=columns)


def page_csv(rows: list[dict]) -> bytes:
    """A page's rows (the header row first) as Athena's result CSV: every value quoted, quotes
    doubled, NULL (a Datum without a value) an unquoted empty field."""
    def field(datum: dict) -> str:
        text = datum.get("VarCharValue")
        return "" if text is None else '"' + text.replace('"', '""') + '"'

    return "".join(",".join(field(d) for d in row["Data"]) + "\n" for row in rows).encode()


def read_result_csv(body: bytes, columns: tuple[tuple[str, str], ...]):
    """Athena's result CSV (a header, every value quoted, NULL an unquoted empty field) as a
    pyarrow Table typed by Athena's column types; nested and other types stay text."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [n for n, _ in columns]
    types = {n: arrow_type(t) for n, t in columns}
    if not body.strip():
        return pa.table({n: pa.array([], type=types[n]) for n in names})
    table = pacsv.read_csv(
        io.BytesIO(body),
        # One thread: Arrow's CPU pool, once started, can abort the process at exit
        # ("terminate called without an active exception"), and results are small.
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
            null_values=[""], true_values=["true"], false_values=["false"],
            timestamp_parsers=["%Y-%m-%d %H:%M:%S", pacsv.ISO8601]))
    return table


def _with_precision(column: Mapping[str, Any]) -> str:
    """`decimal` as `decimal(p,s)`: Athena gives a decimal's precision and scale apart."""
    kind = column["Type"]
    if kind.lower() == "decimal" and column.get("Precision"):
        return f"decimal({column['Precision']},{column.get('Scale', 0)})"
    return kind


def arrow_type(athena_type: str):
    import pyarrow as pa

    t = athena_type.strip().lower()
    simple = {"boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(),
              "integer": pa.int32(), "int": pa.int32(), "bigint": pa.int64(),
              "real": pa.float32(), "float": pa.float32(), "double": pa.float64(),
              "date": pa.date32(), "timestamp": pa.timestamp("us")}
    if t in simple:
        return simple[t]
    if t.startswith("decimal"):
        precision, _, scale = t.removeprefix("decimal").strip("()").partition(",")
        return pa.decimal128(int(precision or 38), int(scale or 0))
    if t.startswith("timestamp(") and "zone" not in t:
        return pa.timestamp("us")
    return pa.string()


# -- as a user ----------------------------------------------------------------------------------

def query(sql: str, ctx: LakeContext, *, as_of: Mapping[str, str] | None = None,
          timeout: float = DEFAULT_TIMEOUT_SECONDS, progress: Progress | None = None,
          lookup: Lookup | None = None) -> QueryResult:
    """Plan `sql`, get the broker's read credentials for it and run it through Athena."""
    import boto3

    from edl.aws import get_session

    if ctx.dataset_access is None or not hasattr(ctx.dataset_access, "credentials"):
        raise UsageError("a query runs as a user, with the broker's credentials",
                         hint="use LakeContext.for_reader(instance, profile)")
    planned = plan(sql, ctx, as_of, lookup=lookup)
    reader = reading_dataset(planned, ctx)
    # Only the vended credentials count: the caller's profile is not looked up (AWS_PROFILE may
    # name one of the local cloud's own profiles, which ~/.aws does not hold).
    core = get_session(session_vars={"profile": (None, None, None, None)})
    core._credentials = ctx.dataset_access.credentials(reader.dataset)  # refreshes by itself
    session = boto3.Session(botocore_session=core, region_name=reader.home_region)
    athena = session.client("athena", endpoint_url=ctx.endpoint_url)
    return AthenaQueries(athena, lambda: session.client("s3", endpoint_url=ctx.endpoint_url)
                         ).run(planned, timeout=timeout, progress=progress)
