"""The local cloud's Athena (`edl.local.athena`) through Athena's own API, as real clients use it.

The runtime's moto service (`MotoService`, with the local Athena in front of moto's Athena
backend) runs in this process on a free port with IAM enforced, over the lake of
`athena_helpers.build_lake`: queries go through boto3, PyAthena and the AWS CLI (its driver, in
this process) exactly as they would against Athena, and are answered from the parquet in S3, read
with the caller's own keys. moto's state and its enforcement switch are process-wide, so both are
reset at teardown.
"""

from __future__ import annotations

import csv
import io
import json
import time
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from edl.local.control_api import call_control_api
from edl.local.runtime import MotoService
from tests.functional.athena_helpers import (
    BUCKET,
    REGION,
    RESULTS,
    UPDATES_DB,
    VIEWS_DB,
    WORK_GROUP,
    AthenaLake,
    build_lake,
)
from tests.functional.deploy_helpers import free_port

CORPUS = yaml.safe_load((Path(__file__).parent / "athena_corpus.yaml").read_text())
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


@pytest.fixture(scope="module")
def athena_lake():
    service = MotoService(free_port())
    service.start()
    url = service.url
    try:
        call_control_api(url, "reset", service.secret, body=b"")  # none of another module's
        keys = build_lake(url)
        call_control_api(url, "reset-auth", service.secret, body=b"0", content_type="text/plain")
        yield AthenaLake(url, keys)
    finally:
        call_control_api(url, "reset-auth", service.secret, body=b"inf", content_type="text/plain")
        call_control_api(url, "reset", service.secret, body=b"")
        service.stop()


def start(lake: AthenaLake, sql: str, user: str = "reader", database: str = VIEWS_DB) -> str:
    return lake.client("athena", user).start_query_execution(
        QueryString=sql, WorkGroup=WORK_GROUP,
        QueryExecutionContext={"Database": database})["QueryExecutionId"]


def wait(lake: AthenaLake, query_id: str, user: str = "reader", timeout: float = 30) -> dict:
    athena = lake.client("athena", user)
    deadline = time.monotonic() + timeout
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] in TERMINAL or time.monotonic() > deadline:
            return execution
        time.sleep(0.02)


def run(lake: AthenaLake, sql: str, user: str = "reader", database: str = VIEWS_DB) -> dict:
    return wait(lake, start(lake, sql, user, database), user)


def all_rows(lake: AthenaLake, query_id: str, page: int = 1000) -> tuple[list, list]:
    """(ColumnInfo, every row after the header) read page by page."""
    athena = lake.client("athena", "reader")
    rows, token, info = [], None, None
    while True:
        args = {"QueryExecutionId": query_id, "MaxResults": page}
        if token:
            args["NextToken"] = token
        answer = athena.get_query_results(**args)
        info = info or answer["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
        rows += [[d.get("VarCharValue") for d in r["Data"]] for r in answer["ResultSet"]["Rows"]]
        token = answer.get("NextToken")
        if not token:
            return info, rows[1:]


def reason(execution: dict) -> str:
    return execution["Status"].get("StateChangeReason", "")


# -- the corpus -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_corpus_query_gives_athenas_answer(athena_lake, case):
    execution = run(athena_lake, case["sql"])
    assert execution["Status"]["State"] == "SUCCEEDED", reason(execution)
    info, rows = all_rows(athena_lake, execution["QueryExecutionId"])
    assert rows == case["rows"]
    if "columns" in case:
        assert [[c["Name"], c["Type"]] for c in info] == case["columns"]


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 30


# -- results, statistics, paging --------------------------------------------------------------

def test_result_csv_and_metadata_land_in_the_workgroups_output_location(athena_lake):
    execution = run(athena_lake, "SELECT id, note, dose FROM trials WHERE id IN (1, 6) "
                                 "ORDER BY id")
    query_id = execution["QueryExecutionId"]
    location = execution["ResultConfiguration"]["OutputLocation"]
    assert location == f"s3://{RESULTS}/internal/{query_id}.csv"
    s3 = athena_lake.client("s3", "reader")
    body = s3.get_object(Bucket=RESULTS, Key=f"internal/{query_id}.csv")["Body"].read()
    assert body.decode("utf-8") == ('"id","note","dose"\n'
                                    '"1",,"12.50"\n'
                                    '"6","日本語 ""quoted"", note","3.33"\n')
    metadata = json.loads(s3.get_object(Bucket=RESULTS,
                                        Key=f"internal/{query_id}.csv.metadata")["Body"].read())
    assert [c["Type"] for c in metadata["ColumnInfo"]] == ["bigint", "varchar", "decimal"]


def test_statistics_count_the_bytes_of_the_partitions_read(athena_lake):
    s3 = athena_lake.client("s3", "reader")
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(
        Bucket=BUCKET, Prefix="trials/data/")["Contents"] if o["Key"].endswith(".parquet")}
    first = sum(size for key, size in sizes.items() if "/0000000001/" in key)
    pruned = run(athena_lake, "SELECT count(*) FROM trials WHERE commit_seq <= 1",
                 database=UPDATES_DB)
    full = run(athena_lake, "SELECT count(*) FROM trials", database=UPDATES_DB)
    assert all_rows(athena_lake, pruned["QueryExecutionId"])[1] == [["4"]]
    assert pruned["Statistics"]["DataScannedInBytes"] == first
    assert full["Statistics"]["DataScannedInBytes"] == sum(sizes.values())
    assert full["Statistics"]["TotalExecutionTimeInMillis"] >= \
        full["Statistics"]["EngineExecutionTimeInMillis"]
    assert full["EngineVersion"]["EffectiveEngineVersion"] == "Athena engine version 3"


def test_results_are_paged_with_the_header_as_the_first_row(athena_lake):
    execution = run(athena_lake, "SELECT x FROM UNNEST(sequence(1, 25)) AS t(x) ORDER BY x")
    athena = athena_lake.client("athena", "reader")
    first = athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"],
                                     MaxResults=10)
    assert first["ResultSet"]["Rows"][0]["Data"] == [{"VarCharValue": "x"}]
    assert len(first["ResultSet"]["Rows"]) == 10 and "NextToken" in first
    _, rows = all_rows(athena_lake, execution["QueryExecutionId"], page=10)
    assert rows == [[str(n)] for n in range(1, 26)]
    with pytest.raises(ClientError) as error:
        athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"],
                                 MaxResults=1001)
    assert error.value.response["Error"]["Code"] == "InvalidRequestException"


def test_executions_are_listed_and_batch_described(athena_lake):
    query_id = start(athena_lake, "SELECT 1")
    wait(athena_lake, query_id)
    athena = athena_lake.client("athena", "reader")
    assert query_id in athena.list_query_executions(WorkGroup=WORK_GROUP)["QueryExecutionIds"]
    batch = athena.batch_get_query_execution(QueryExecutionIds=[query_id, "nope"])
    assert [e["QueryExecutionId"] for e in batch["QueryExecutions"]] == [query_id]
    assert batch["UnprocessedQueryExecutionIds"][0]["QueryExecutionId"] == "nope"
    group = athena.get_work_group(WorkGroup=WORK_GROUP)["WorkGroup"]
    assert group["Configuration"]["ResultConfiguration"]["OutputLocation"] == \
        f"s3://{RESULTS}/internal/"


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM missing", "TABLE_NOT_FOUND: line 1:15: Table "
                              "'awsdatacatalog.edl_local_internal.missing' does not exist"),
    ("SELECT * FROM nodb.trials", "SCHEMA_NOT_FOUND: line 1:20: Schema 'nodb' does not exist"),
    ("SELECT site,\n  count(*\nFROM trials", "SYNTAX_ERROR: line 3:1:"),
    ("DROP TABLE trials", "NOT_SUPPORTED: line 1:1: DROP statements are refused"),
    ("INSERT INTO trials SELECT * FROM trials", "INSERT statements are refused"),
    ("CREATE TABLE t2 AS SELECT * FROM trials", "CREATE statements are refused"),
    ("SELECT no_such_column FROM trials", "COLUMN_NOT_FOUND"),
    ("SELECT reduce(tags, 0, (s, x) -> s + 1, s -> s) FROM trials", "NOT_SUPPORTED: "
                                                                  "Argument 'finish'"),
])
def test_bad_queries_fail_with_athenas_kind_of_reason(athena_lake, sql, expected):
    execution = run(athena_lake, sql)
    assert execution["Status"]["State"] == "FAILED"
    assert expected in reason(execution)
    assert execution["Status"]["AthenaError"]["ErrorCategory"] == 2


def test_a_caller_without_glue_rights_is_refused_naming_the_table(athena_lake):
    execution = run(athena_lake, "SELECT count(*) FROM trials", user="no_glue")
    assert execution["Status"]["State"] == "FAILED"
    assert reason(execution).startswith("PERMISSION_DENIED: Insufficient permissions")
    assert "edl_local_internal.trials" in reason(execution)
    assert "glue:GetTable" in reason(execution)


def test_a_table_whose_data_the_caller_cannot_read_is_refused(athena_lake):
    execution = run(athena_lake, "SELECT * FROM vault", database=UPDATES_DB)
    assert execution["Status"]["State"] == "FAILED"
    assert "Access denied when reading table edl_local_internal_updates.vault" in \
        reason(execution)


def test_a_caller_without_athena_rights_gets_access_denied(athena_lake):
    with pytest.raises(ClientError) as error:
        start(athena_lake, "SELECT 1", user="no_athena")
    assert error.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "athena:StartQueryExecution" in error.value.response["Error"]["Message"]
    query_id = start(athena_lake, "SELECT 1")
    with pytest.raises(ClientError) as error:
        athena_lake.client("athena", "no_athena").get_query_execution(QueryExecutionId=query_id)
    assert error.value.response["Error"]["Code"] == "AccessDeniedException"


def test_a_role_session_queries_with_its_own_credentials(athena_lake):
    """Vended credentials (a role session with its token) sign the query, and the query's
    reads and its result object are made with them."""
    execution = run(athena_lake, "SELECT count(*) FROM trials", user="session")
    assert execution["Status"]["State"] == "SUCCEEDED", reason(execution)
    athena = athena_lake.client("athena", "session")
    rows = athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"])
    assert rows["ResultSet"]["Rows"][1]["Data"] == [{"VarCharValue": "5"}]
    session = athena_lake.keys["session"]
    forged = boto3.client("athena", endpoint_url=athena_lake.url, region_name=REGION,
                          aws_access_key_id=session["AccessKeyId"],
                          aws_secret_access_key=session["SecretAccessKey"],
                          aws_session_token="not-the-token")
    with pytest.raises(ClientError) as error:
        forged.get_query_execution(QueryExecutionId=execution["QueryExecutionId"])
    assert error.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_a_wrong_signature_is_refused(athena_lake):
    athena = boto3.client("athena", endpoint_url=athena_lake.url, region_name=REGION,
                          aws_access_key_id=athena_lake.keys["reader"]["AccessKeyId"],
                          aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as error:
        athena.list_query_executions(WorkGroup=WORK_GROUP)
    assert error.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_a_running_query_is_cancelled(athena_lake):
    query_id = start(athena_lake, """
        SELECT count(*) FROM UNNEST(sequence(1, 5000)) AS a(x)
        CROSS JOIN UNNEST(sequence(1, 5000)) AS b(y)
        CROSS JOIN UNNEST(sequence(1, 5000)) AS c(z)
        WHERE (x * y + z) % 7 = 3""")
    athena = athena_lake.client("athena", "reader")
    deadline = time.monotonic() + 10
    while athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"][
            "State"] == "QUEUED" and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    stopped_at = time.monotonic()
    athena.stop_query_execution(QueryExecutionId=query_id)
    execution = wait(athena_lake, query_id, timeout=10)
    assert execution["Status"]["State"] == "CANCELLED"
    assert time.monotonic() - stopped_at < 5
    with pytest.raises(ClientError) as error:
        athena.get_query_results(QueryExecutionId=query_id)
    assert "Final query state: CANCELLED" in error.value.response["Error"]["Message"]


# -- real clients ------------------------------------------------------------------------------

def test_pyathena_reads_typed_rows(athena_lake):
    from pyathena import connect

    key = athena_lake.keys["reader"]
    connection = connect(work_group=WORK_GROUP, schema_name=VIEWS_DB, region_name=REGION,
                         endpoint_url=athena_lake.url, poll_interval=0.05,
                         aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"])
    cursor = connection.cursor()
    cursor.execute("SELECT id, site, enrolled, dose, score, note FROM trials WHERE id IN (2, 6) "
                   "ORDER BY id")
    assert [d[0:2] for d in cursor.description] == [
        ("id", "bigint"), ("site", "varchar"), ("enrolled", "date"), ("dose", "decimal"),
        ("score", "double"), ("note", "varchar")]
    import datetime as dt

    assert cursor.fetchall() == [
        (2, "Zürich", dt.date(2024, 2, 1), Decimal("8.00"), 3.0, None),
        (6, "Lyon", dt.date(2024, 5, 5), Decimal("3.33"), 1.0, '日本語 "quoted", note')]
    assert cursor.data_scanned_in_bytes > 0
    cursor.execute("SELECT x FROM UNNEST(sequence(1, 2500)) AS t(x)")  # three pages
    assert sorted(row[0] for row in cursor.fetchall()) == list(range(1, 2501))


def test_the_aws_cli_runs_a_query(athena_lake, monkeypatch, capsys):
    from awscli.clidriver import create_clidriver

    key = athena_lake.keys["reader"]
    for name, value in (("AWS_ACCESS_KEY_ID", key["AccessKeyId"]),
                        ("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"]),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def aws(*args: str) -> dict:
        assert create_clidriver().main([*args, "--endpoint-url", athena_lake.url,
                                        "--output", "json"]) == 0
        return json.loads(capsys.readouterr().out)

    query_id = aws("athena", "start-query-execution", "--work-group", WORK_GROUP,
                   "--query-execution-context", f"Database={VIEWS_DB}",
                   "--query-string", "SELECT site, count(*) FROM trials GROUP BY site "
                                     "ORDER BY site")["QueryExecutionId"]
    wait(athena_lake, query_id)
    answer = aws("athena", "get-query-results", "--query-execution-id", query_id)
    rows = [[d.get("VarCharValue") for d in r["Data"]] for r in answer["ResultSet"]["Rows"]]
    assert rows == [["site", "_col1"], ["Lyon", "1"], ["Paris", "2"], ["Tōkyō", "1"],
                    ["Zürich", "1"]]
    state = aws("athena", "get-query-execution", "--query-execution-id", query_id)
    assert state["QueryExecution"]["Status"]["State"] == "SUCCEEDED"


def test_the_result_csv_parses_back_to_the_api_rows(athena_lake):
    execution = run(athena_lake, "SELECT id, site, tags, detail FROM trials ORDER BY id")
    query_id = execution["QueryExecutionId"]
    body = athena_lake.client("s3", "reader").get_object(
        Bucket=RESULTS, Key=f"internal/{query_id}.csv")["Body"].read().decode()
    parsed = list(csv.reader(io.StringIO(body)))
    _, rows = all_rows(athena_lake, query_id)
    assert parsed[1:] == rows
