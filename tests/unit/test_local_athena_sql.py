"""The local Athena's SQL handling (`edl.local.athena.sql`), its result strings and CSV
(`results`) and Glue's type names (`tables.arrow_type`): no network, no emulator."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from edl.local.athena import sql
from edl.local.athena.results import (
    ResultSet,
    column_info,
    decode_token,
    encode_token,
    format_value,
    java_double,
)
from edl.local.athena.tables import arrow_type
from edl.local.state.recorder import is_write


def failure(text: str) -> str:
    with pytest.raises(sql.QueryFailure) as raised:
        sql.transpile(text)
    return raised.value.reason


# -- transpiling -------------------------------------------------------------------------------

@pytest.mark.parametrize(("trino", "duckdb"), [
    ("SELECT approx_distinct(site) AS n FROM t", "SELECT APPROX_COUNT_DISTINCT(site) AS n FROM t"),
    ("SELECT approx_percentile(x, 0.5) AS m FROM t", "SELECT APPROX_QUANTILE(x, 0.5) AS m FROM t"),
    ("SELECT cardinality(tags) AS n FROM t", "SELECT ARRAY_LENGTH(tags) AS n FROM t"),
    ("SELECT date_format(ts, '%Y-%m-%d %H:%i') AS f FROM t",
     "SELECT STRFTIME(ts, '%Y-%m-%d %H:%M') AS f FROM t"),
    ("SELECT count(*), max(x) FROM t", 'SELECT COUNT(*) AS "_col0", MAX(x) AS "_col1" FROM t'),
    ("SELECT Site, t.ID FROM t", 'SELECT Site AS "site", t.ID AS "id" FROM t'),
])
def test_trino_becomes_duckdb_with_trinos_output_names(trino, duckdb):
    assert sql.transpile(trino) == duckdb


def test_a_date_plus_days_stays_a_date():
    tree = sql.parse_query("SELECT date_add('day', 30, enrolled) AS later, "
                           "date_add('hour', 1, measured_at) AS h FROM t")
    sql.keep_dates_dates(tree, {"enrolled"})
    assert sql.to_duckdb(tree) == ("SELECT CAST(enrolled + INTERVAL 30 DAY AS DATE) AS later, "
                                   "measured_at + INTERVAL 1 HOUR AS h FROM t")


def test_tables_are_found_and_replaced_but_not_ctes():
    text = "WITH c AS (SELECT * FROM db.a) SELECT * FROM c JOIN b AS x ON c.id = x.id"
    tree = sql.parse_query(text)
    found = {sql.table_name(t): t for t in sql.table_references(tree, text)}
    assert set(found) == {sql.TableName("db", "a"), sql.TableName(None, "b")}
    assert sql.where(found[sql.TableName(None, "b")], text) == f"line 1:{text.index(' b ') + 2}: "
    sql.replace_table(found[sql.TableName("db", "a")], "__edl_table_0")
    sql.replace_table(found[sql.TableName(None, "b")], sql.parse_query("SELECT 1 AS id"))
    assert sql.to_duckdb(tree) == ("WITH c AS (SELECT * FROM __edl_table_0 AS a) SELECT * FROM c "
                                   "JOIN (SELECT 1 AS id) AS x ON c.id = x.id")


def test_a_table_function_is_refused():
    text = "SELECT * FROM read_csv('/etc/passwd')"
    with pytest.raises(sql.QueryFailure) as raised:
        sql.table_references(sql.parse_query(text), text)
    assert raised.value.error_type == "NOT_SUPPORTED"
    assert "table functions" in raised.value.message


def test_what_duckdb_cannot_express_is_named():
    reason = failure("SELECT reduce(a, 0, (s, x) -> s + x, s -> s) FROM t")
    assert reason.startswith("NOT_SUPPORTED: ")
    assert "'Reduce'" in reason


# -- read-only ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "statement"), [
    ("CREATE TABLE x AS SELECT 1", "CREATE"),
    ("insert into t values (1)", "INSERT"),
    ("DROP TABLE t", "DROP"),
    ("  DELETE FROM t WHERE id = 1", "DELETE"),
    ("MSCK REPAIR TABLE t", "MSCK"),
    ("ALTER TABLE t ADD COLUMNS (x int)", "ALTER"),
    ("UNLOAD (SELECT 1) TO 's3://b/' WITH (format = 'PARQUET')", "UNLOAD"),
    ("/* hi */ MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE"),
    ("WITH s AS (SELECT 1) INSERT INTO t SELECT * FROM s", "INSERT"),
])
def test_ddl_and_writes_are_refused_naming_the_statement(text, statement):
    reason = failure(text)
    assert reason.startswith("NOT_SUPPORTED: ")
    assert f"{statement} statements are refused" in reason


@pytest.mark.parametrize("text", ["SHOW TABLES", "DESCRIBE t", "EXPLAIN SELECT 1"])
def test_statements_the_local_athena_does_not_run_are_named(text):
    assert f"{text.split()[0]} is not supported" in failure(text)


def test_only_one_statement_runs():
    assert "Only one sql statement is allowed" in failure("SELECT 1; SELECT 2")


@pytest.mark.parametrize("text", ["SELECT 1", "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
                                  "VALUES (1, 'a')", "SELECT 1 UNION ALL SELECT 2",
                                  "(SELECT 1)", "SELECT 1;"])
def test_queries_are_accepted(text):
    assert sql.transpile(text)


# -- syntax errors -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "position"), [
    ("SELECT x FROM tbl WHERE", "line 1:19: "),
    ("SELECT 1 FROM\n  t WHERE (", "line 2:11: "),
    ("SELECT a,\n  count(*\nFROM t", "line 3:1: "),
    ("select from where", "line 1:13: "),
])
def test_a_syntax_error_names_line_and_column(text, position):
    reason = failure(text)
    assert reason.startswith(f"SYNTAX_ERROR: {position}")
    assert "sqlglot" not in reason and "<Token" not in reason


def test_an_empty_query_is_a_syntax_error():
    assert failure("   ").startswith("SYNTAX_ERROR: line 1:1:")


# -- views -------------------------------------------------------------------------------------

def test_a_presto_view_round_trips():
    text = sql.presto_view_text("SELECT 1 AS x", "awsdatacatalog", "db",
                                [{"name": "x", "type": "integer"}])
    assert text.startswith("/* Presto View: ") and text.endswith(" */")
    assert sql.presto_view_sql(text, "db.v") == "SELECT 1 AS x"


def test_a_view_that_is_not_a_presto_view_is_refused():
    with pytest.raises(sql.QueryFailure) as raised:
        sql.presto_view_sql("SELECT 1", "db.v")
    assert "db.v is not a Presto view" in raised.value.message
    with pytest.raises(sql.QueryFailure):
        sql.presto_view_sql("/* Presto View: not-base64! */", "db.v")


# -- Athena's strings --------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [
    (2.5, "2.5"), (100.0, "100.0"), (1e7, "1.0E7"), (12345678.9, "1.23456789E7"),
    (0.001, "0.001"), (0.0001234, "1.234E-4"), (-2.0, "-2.0"), (float("nan"), "NaN"),
    (float("inf"), "Infinity"), (0.0, "0.0"),
])
def test_doubles_are_written_as_java_does(value, text):
    assert java_double(value) == text


@pytest.mark.parametrize(("value", "arrow", "text"), [
    (None, pa.string(), None),
    (True, pa.bool_(), "true"),
    (Decimal("8"), pa.decimal128(10, 2), "8.00"),
    (dt.date(2024, 2, 29), pa.date32(), "2024-02-29"),
    (dt.datetime(2024, 2, 1, 12, 0, 0, 250123), pa.timestamp("us"), "2024-02-01 12:00:00.250"),
    (["a", None], pa.list_(pa.string()), "[a, null]"),
    ({"arm": "A", "visits": None}, pa.struct([("arm", pa.string()), ("visits", pa.int32())]),
     "{arm=A, visits=null}"),
    ([("k", 1)], pa.map_(pa.string(), pa.int64()), "{k=1}"),
    (b"hi", pa.binary(), "68 69"),
    ("Zürich", pa.string(), "Zürich"),
])
def test_values_are_written_as_athena_writes_them(value, arrow, text):
    assert format_value(value, arrow) == text


def test_column_info_uses_athenas_type_names():
    schema = pa.schema([("a", pa.string()), ("b", pa.int64()), ("c", pa.int32()),
                        ("d", pa.decimal128(12, 3)), ("e", pa.timestamp("us")),
                        ("f", pa.list_(pa.int64())), ("g", pa.struct([("x", pa.int8())])),
                        ("h", pa.map_(pa.string(), pa.string())), ("i", pa.date32())])
    info = column_info(schema)
    assert [c["Type"] for c in info] == ["varchar", "bigint", "integer", "decimal", "timestamp",
                                        "array", "row", "map", "date"]
    assert (info[3]["Precision"], info[3]["Scale"]) == (12, 3)


def test_pages_count_the_header_and_the_csv_quotes_every_value():
    result = ResultSet(pa.table({"n": [1, 2, 3], "s": ['a"b', None, ""]}))
    rows, after = result.page(0, 2)
    assert rows == [{"Data": [{"VarCharValue": "n"}, {"VarCharValue": "s"}]},
                    {"Data": [{"VarCharValue": "1"}, {"VarCharValue": 'a"b'}]}]
    assert after == 2
    rows, after = result.page(2, 10)
    assert rows == [{"Data": [{"VarCharValue": "2"}, {}]},
                    {"Data": [{"VarCharValue": "3"}, {"VarCharValue": ""}]}]
    assert after is None
    assert result.csv_bytes() == b'"n","s"\n"1","a""b"\n"2",\n"3",""\n'


def test_a_next_token_belongs_to_its_query():
    token = encode_token("q1", 7)
    assert decode_token(token, "q1") == 7
    with pytest.raises(ValueError):
        decode_token(token, "q2")
    with pytest.raises(ValueError):
        decode_token("garbage", "q1")


@pytest.mark.parametrize(("hive", "arrow"), [
    ("bigint", pa.int64()), ("int", pa.int32()), ("string", pa.string()),
    ("decimal(10,2)", pa.decimal128(10, 2)), ("decimal(7)", pa.decimal128(7, 0)),
    ("varchar(20)", pa.string()), ("timestamp", pa.timestamp("us")),
    ("array<struct<a:int,b:map<string,double>>>",
     pa.list_(pa.struct([("a", pa.int32()), ("b", pa.map_(pa.string(), pa.float64()))]))),
])
def test_glue_types_are_read_as_arrow_types(hive, arrow):
    assert arrow_type(hive) == arrow


def test_an_unknown_glue_type_fails_the_query():
    with pytest.raises(sql.QueryFailure) as raised:
        arrow_type("uniontype<int,string>")
    assert raised.value.error_type == "HIVE_INVALID_METADATA"


# -- not journalled ----------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "journalled"), [
    ("AmazonAthena.StartQueryExecution", False), ("AmazonAthena.StopQueryExecution", False),
    ("AmazonAthena.CreateWorkGroup", True), ("AmazonAthena.GetQueryResults", False),
])
def test_query_calls_are_not_journalled_but_workgroups_are(target, journalled):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_X_AMZ_TARGET": target,
               "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/"
                                     "athena/aws4_request, SignedHeaders=host, Signature=x"}
    assert is_write(environ, b"{}") is journalled
