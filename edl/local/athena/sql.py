"""Athena's SQL (Trino dialect) for the local Athena: parse, refuse, find tables, transpile.

`parse_query` accepts exactly one read-only query - `SELECT`, `WITH … SELECT`, `VALUES`, or a
set operation of those - and refuses anything else before a table is touched: DDL and writes
(`CREATE`, `INSERT`, `DROP`, `MSCK`, …) because the lake is read-only through SQL, statements
Athena has that the local Athena does not run (`SHOW`, `DESCRIBE`, `EXPLAIN`) by name, and a
syntax error with its line and column (1-based, where the offending token starts, as Athena
reports them: `line 2:10: …`).

`table_references` lists the tables a query reads (not its CTEs, not `UNNEST`); the engine
replaces each with a DuckDB relation or an expanded view (`replace_table`). `to_duckdb` names the
output columns as Trino does (`_col0`, … for an unnamed expression) and writes DuckDB's dialect;
what sqlglot cannot express in DuckDB is a `NOT_SUPPORTED` failure naming the construct.

Every failure is a `QueryFailure` whose `error_type` is the name Athena gives that kind of
error, so a failed execution's reason reads like Athena's (`SYNTAX_ERROR: line 1:8: …`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError
from sqlglot.tokens import Tokenizer

READ = "trino"
WRITE = "duckdb"
DEFAULT_CATALOG = "awsdatacatalog"
_PRESTO_VIEW_PREFIX = "/* Presto View: "
_PRESTO_VIEW_SUFFIX = " */"

# First keywords of statements that change something: refused whatever follows, even when
# sqlglot cannot parse the rest (it does not know `MSCK REPAIR TABLE`, `UNLOAD`, `VACUUM`).
_WRITE_KEYWORDS = ("ALTER", "ANALYZE", "CALL", "COMMENT", "CREATE", "DEALLOCATE", "DELETE",
                   "DROP", "EXECUTE", "GRANT", "INSERT", "MERGE", "MSCK", "OPTIMIZE",
                   "PREPARE", "REFRESH", "REVOKE", "SET", "TRUNCATE", "UNLOAD", "UPDATE",
                   "USE", "VACUUM", "RESET", "START", "COMMIT", "ROLLBACK", "COPY", "ATTACH",
                   "DETACH", "INSTALL", "LOAD", "PRAGMA")
_NOT_RUN_KEYWORDS = ("SHOW", "DESCRIBE", "DESC", "EXPLAIN")
# sqlglot's messages name its own classes and tokens; a user wants the SQL word.
_SQLGLOT_CLASS = re.compile(r"<class 'sqlglot\.expressions\.[\w.]*?(\w+)'>")
_SQLGLOT_TOKEN = re.compile(r"<Token token_type: TokenType\.\w+, text: (.*?), line: .*?>")
_WRITE_NODES: tuple[type[exp.Expr], ...] = (
    exp.Create, exp.Insert, exp.Drop, exp.Delete, exp.Update, exp.Merge, exp.Alter,
    exp.Command, exp.Grant, exp.Set, exp.Use, exp.TruncateTable)


class QueryFailure(Exception):
    """Why a query fails: `error_type` is Athena's name for the kind (`SYNTAX_ERROR`, …);
    `user_error` is false only for failures of the local Athena itself."""

    def __init__(self, error_type: str, message: str, user_error: bool = True) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.user_error = user_error

    @property
    def reason(self) -> str:
        return f"{self.error_type}: {self.message}"


@dataclass(frozen=True)
class TableName:
    """A table as a query names it: database None means the execution context's database."""

    database: str | None
    name: str
    catalog: str | None = None

    def qualified(self, default_database: str | None) -> str:
        database = self.database or default_database or "default"
        return f"{(self.catalog or DEFAULT_CATALOG).lower()}.{database}.{self.name}"


def _position(sql: str, start: int) -> tuple[int, int]:
    """(line, column), both 1-based, of a character offset."""
    before = sql[:start]
    return before.count("\n") + 1, start - (before.rfind("\n") + 1) + 1


def where(node: exp.Expr, sql: str) -> str:
    """`line L:C: ` for a node sqlglot knows the position of, else ``."""
    for candidate in (node, node.args.get("this")):
        meta = getattr(candidate, "meta", None) or {}
        if "start" in meta:
            line, col = _position(sql, meta["start"])
            return f"line {line}:{col}: "
    return ""


def _first_keyword(sql: str) -> tuple[str, int] | None:
    """The first token of a statement (upper-cased) and its offset, skipping comments and
    opening parentheses."""
    try:
        tokens = Tokenizer().tokenize(sql)
    except TokenError:
        return None
    for token in tokens:
        if token.text == "(":
            continue
        return token.text.upper(), token.start
    return None


def _refuse_by_keyword(sql: str) -> None:
    first = _first_keyword(sql)
    if first is None:
        return
    keyword, start = first
    line, col = _position(sql, start)
    if keyword in _WRITE_KEYWORDS:
        raise QueryFailure("NOT_SUPPORTED", f"line {line}:{col}: {keyword} statements are "
                           "refused: the lake is read-only through SQL (run SELECT, WITH or "
                           "VALUES queries; data changes go through `edl-api ingest`)")
    if keyword in _NOT_RUN_KEYWORDS:
        raise QueryFailure("NOT_SUPPORTED", f"line {line}:{col}: {keyword} is not supported "
                           "by the local Athena (query the table, or ask Glue for its columns)")


def _syntax_error(sql: str, error: ParseError) -> QueryFailure:
    first = error.errors[0] if error.errors else {}
    line, col = first.get("line"), first.get("col")
    highlight = first.get("highlight") or ""
    description = first.get("description") or str(error)
    description = _SQLGLOT_TOKEN.sub(lambda m: f"'{m.group(1)}'", description)
    description = _SQLGLOT_CLASS.sub(lambda m: m.group(1).upper(), description)
    if line is None or col is None:
        return QueryFailure("SYNTAX_ERROR", description)
    # sqlglot gives the column where the offending token ends; Athena, where it starts.
    col = max(1, col - len(highlight) + 1)
    near = f" at '{highlight}'" if highlight else ""
    return QueryFailure("SYNTAX_ERROR", f"line {line}:{col}: {description}{near}")


def parse_query(sql: str) -> exp.Expr:
    """The parse tree of one read-only query, or a `QueryFailure` saying why it is not one."""
    if not sql or not sql.strip():
        raise QueryFailure("SYNTAX_ERROR", "line 1:1: the query is empty")
    _refuse_by_keyword(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=READ, error_level=ErrorLevel.RAISE)
                      if s is not None]
    except ParseError as error:
        raise _syntax_error(sql, error) from None
    except TokenError as error:
        raise QueryFailure("SYNTAX_ERROR", f"line 1:1: {error}") from None
    if not statements:
        raise QueryFailure("SYNTAX_ERROR", "line 1:1: the query is empty")
    if len(statements) > 1:
        raise QueryFailure("NOT_SUPPORTED", "Only one sql statement is allowed; this text "
                           f"holds {len(statements)}")
    tree = statements[0]
    for node in tree.walk():
        if isinstance(node, _WRITE_NODES):
            name = node.key.upper() if not isinstance(node, exp.Command) else str(node.this)
            raise QueryFailure("NOT_SUPPORTED", f"{where(node, sql)}{name.upper()} statements "
                               "are refused: the lake is read-only through SQL")
    if not isinstance(tree, (exp.Query, exp.Values)):
        raise QueryFailure("NOT_SUPPORTED", f"{tree.key.upper()} is not a query: only SELECT, "
                           "WITH and VALUES run on the local Athena")
    return tree


def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def table_references(tree: exp.Expr, sql: str = "") -> list[exp.Table]:
    """The tables the query reads: every `FROM`/`JOIN` table that is not one of the
    query's CTEs. A table function (`FROM read_csv(…)`) is refused: only the catalog's tables
    may be read."""
    ctes = _cte_names(tree)
    found = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise QueryFailure("NOT_SUPPORTED", f"{where(table, sql)}table functions are not "
                               f"supported ({table.this.sql(dialect=READ)}): read the "
                               "catalog's tables")
        if not table.db and table.name.lower() in ctes:
            continue
        found.append(table)
    return found


def table_name(table: exp.Table) -> TableName:
    """Trino folds unquoted names to lower case; Glue's names are lower case too."""
    return TableName(database=table.db.lower() or None, name=table.name.lower(),
                     catalog=table.catalog.lower() or None)


def replace_table(table: exp.Table, relation: str | exp.Expr) -> None:
    """Put a DuckDB relation's name, or a subquery (a view's), where the table was, under the
    name the query used for it (its alias, else the table's name) so `t.col` still resolves."""
    alias = table.alias or table.name
    if isinstance(relation, str):
        replacement: exp.Expr = exp.Table(
            this=exp.to_identifier(relation),
            alias=exp.TableAlias(this=exp.to_identifier(alias)))
    else:
        replacement = exp.Subquery(this=relation,
                                   alias=exp.TableAlias(this=exp.to_identifier(alias)))
    table.replace(replacement)


def _leftmost_select(tree: exp.Expr) -> exp.Select | None:
    node = tree
    while isinstance(node, (exp.SetOperation, exp.Subquery)):
        node = node.this if isinstance(node, exp.Subquery) else node.left
    return node if isinstance(node, exp.Select) else None


def name_output_columns(tree: exp.Expr) -> None:
    """Trino's output names: an unnamed expression is `_colN` (N its position); a column keeps
    its (lower-case unless quoted) name."""
    select = _leftmost_select(tree)
    if select is None:
        return
    named: list[exp.Expr] = []
    for position, projection in enumerate(select.expressions):
        if isinstance(projection, (exp.Alias, exp.Star)):
            named.append(projection)
        elif isinstance(projection, exp.Column):
            if isinstance(projection.this, exp.Star):
                named.append(projection)
            else:
                name = projection.name if projection.this.quoted else projection.name.lower()
                named.append(exp.alias_(projection, name, quoted=True))
        else:
            named.append(exp.alias_(projection, f"_col{position}", quoted=True))
    select.set("expressions", named)


_DATE_UNITS = ("DAY", "WEEK", "MONTH", "QUARTER", "YEAR")


def _is_date(node: exp.Expr, date_columns: set[str]) -> bool:
    if isinstance(node, exp.Cast):
        return node.to.this == exp.DataType.Type.DATE
    if isinstance(node, exp.Column):
        return node.name.lower() in date_columns
    return False


def keep_dates_dates(tree: exp.Expr, date_columns: set[str]) -> None:
    """Trino's `date_add('day', n, d)` of a date is a date; DuckDB's `d + INTERVAL n DAY` is a
    timestamp. sqlglot does not know the operand's type, so a date operand (a cast to date, a
    date literal, or a column named like one of the query's date columns) gets its result cast
    back to a date."""
    for node in list(tree.find_all(exp.DateAdd, exp.DateSub)):
        unit = node.args.get("unit")
        unit_name = (unit.name if unit is not None else "DAY").upper()
        if unit_name in _DATE_UNITS and _is_date(node.this, date_columns):
            node.replace(exp.Cast(this=node.copy(), to=exp.DataType.build("DATE")))


def to_duckdb(tree: exp.Expr) -> str:
    """The query in DuckDB's dialect; `NOT_SUPPORTED` naming what DuckDB cannot express."""
    try:
        return tree.sql(dialect=WRITE, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as error:
        raise QueryFailure("NOT_SUPPORTED", f"{error} (the local Athena runs queries on "
                           "DuckDB; rewrite the query without it)") from None


def transpile(sql: str) -> str:
    """One read-only Trino query in DuckDB's dialect, its tables left as they are named."""
    tree = parse_query(sql)
    name_output_columns(tree)
    return to_duckdb(tree)


def presto_view_sql(view_original_text: str, view: str) -> str:
    """The Trino SQL of a view Athena stored (`/* Presto View: <base64 JSON> */`)."""
    text = (view_original_text or "").strip()
    if not (text.startswith(_PRESTO_VIEW_PREFIX) and text.endswith(_PRESTO_VIEW_SUFFIX)):
        raise QueryFailure("HIVE_VIEW_TRANSLATION_ERROR", f"view {view} is not a Presto view "
                           "(its ViewOriginalText is not '/* Presto View: <base64> */')")
    encoded = text[len(_PRESTO_VIEW_PREFIX):-len(_PRESTO_VIEW_SUFFIX)]
    try:
        definition = json.loads(base64.b64decode(encoded, validate=True))
        sql = definition["originalSql"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise QueryFailure("HIVE_VIEW_TRANSLATION_ERROR", f"view {view}: its Presto view text "
                           "does not decode to JSON with an originalSql") from None
    if not isinstance(sql, str):
        raise QueryFailure("HIVE_VIEW_TRANSLATION_ERROR", f"view {view}: originalSql is not "
                           "text")
    return sql


def presto_view_text(original_sql: str, catalog: str, schema: str,
                     columns: list[dict[str, str]], owner: str = "edl") -> str:
    """What Athena stores as a view's `ViewOriginalText` (the inverse of `presto_view_sql`)."""
    definition = {"originalSql": original_sql, "catalog": catalog, "schema": schema,
                  "columns": columns, "owner": owner, "runAsInvoker": False}
    encoded = base64.b64encode(json.dumps(definition).encode()).decode()
    return f"{_PRESTO_VIEW_PREFIX}{encoded}{_PRESTO_VIEW_SUFFIX}"
