"""SQL over the lake on the real local cloud, under IAM enforcement, as users run it.

The datasets are ingested for real (the commit step registers them in Glue); every query goes
through the Athena API of the local endpoint with the credentials the broker vends its user.
The corpus of Athena-dialect queries (`tests/functional/athena_corpus.yaml`, over the datasets
`trials` and `sites` of `tests/functional/athena_helpers.py`) runs through `edl-api query`, and
a sample of it through the AWS CLI and PyAthena, with a
`credential_process` profile as a user would set one up. The sensitive `q_secret` is refused
to bob until his grant, then read as of each of its updates, which matches `lake.read`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from edl import naming
from edl.utils import lake
from tests.e2e import helpers
from tests.e2e.helpers import BIN, PREFIX, client, edl_api, ingest_in_process, ok, run_tool
from tests.functional.athena_helpers import SITES, UPDATES

CORPUS = yaml.safe_load((Path(__file__).parents[1] / "functional" / "athena_corpus.yaml")
                        .read_text(encoding="utf-8"))
# A query runs with the credentials vended for the datasets it reads; the few corpus queries that
# read none (VALUES, casts of literals) are run through boto3, PyAthena and the AWS CLI in
# tests/functional/test_local_athena.py, and `edl-api query` refuses them (see the last test).
NO_DATASET = {"try_cast", "integer division and modulo", "values"}
SECRET = "q_secret"
SECRET_UPDATES = ["id,site,dose,op\n1,Lyon,1.50,I\n2,Zürich,2.25,I\n3,Nice,3.00,I\n",
                  "id,site,dose,op\n2,Zürich,9.75,U\n3,,,D\n4,Tōkyō,4.00,I\n"]


def refused(done: subprocess.CompletedProcess, *words: str) -> str:
    """Refused with a message, never a traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    return helpers.refused(done, *words)


def _put_parquet(s3, bucket: str, key: str, table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
    return f"s3://{bucket}/{key}"


@pytest.fixture(scope="module")
def sql_lake(_session_local_cloud, spark):
    """trials (a snapshot and two deltas) and sites, internal; q_secret, sensitive, alice's."""
    cloud = _session_local_cloud
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDL_HOME", str(cloud.home))
        for command in (("deploy-core",),
                        ("deploy-dataset", "trials", "--tier", "internal", "--owner", "alice",
                         "--key", "id", "--op-column", "op", "--delete-marker", "D"),
                        ("deploy-dataset", "sites", "--tier", "internal", "--owner", "alice"),
                        ("deploy-dataset", SECRET, "--tier", "sensitive", "--owner", "alice",
                         "--key", "id", "--op-column", "op", "--delete-marker", "D")):
            ok(run_tool("edl", *command))
        s3 = client(cloud, "s3")
        internal = naming.drop_bucket(PREFIX, "local", "internal", "us-east-1")
        for update_id, _seq, kind, schema, rows in UPDATES:
            table = pa.Table.from_pylist([dict(zip([n for n, _ in schema], r, strict=True)) for r in rows],
                                         schema=pa.schema(schema))
            source = _put_parquet(s3, internal, f"trials/sql/{update_id}.parquet", table)
            assert ingest_in_process(spark, "trials", source, "--kind", kind) == 0
        source = _put_parquet(s3, internal, "sites/sql/sites.parquet", SITES)
        assert ingest_in_process(spark, "sites", source, "--kind", "snapshot") == 0
        sensitive = naming.drop_bucket(PREFIX, "local", "sensitive", "us-east-1")
        for n, body in enumerate(SECRET_UPDATES):
            key = f"{SECRET}/sql/u{n}.csv"
            s3.put_object(Bucket=sensitive, Key=key, Body=body.encode())
            assert ingest_in_process(spark, SECRET, f"s3://{sensitive}/{key}", "--kind",
                                     "snapshot" if n == 0 else "delta") == 0
        yield cloud


def _same(got, want: str | None) -> bool:
    """A value of `edl-api query --format json` against the string Athena gives for it."""
    if want is None or got is None:
        return got is want
    if isinstance(got, bool):
        return want == ("true" if got else "false")
    if isinstance(got, int):
        return got == int(want)
    if isinstance(got, float):
        return got == float(want)
    if got == want:
        return True
    try:   # timestamps: Athena writes milliseconds, JSON what the value holds
        return dt.datetime.fromisoformat(got) == dt.datetime.fromisoformat(want)
    except ValueError:
        return False


@pytest.mark.parametrize("case", [c for c in CORPUS if c["name"] not in NO_DATASET],
                         ids=[c["name"] for c in CORPUS if c["name"] not in NO_DATASET])
def test_the_corpus_gives_athenas_answers_through_edl_api_query(sql_lake, local_cloud, case,
                                                               capsys):
    """`edl-api query` itself, run in this process (a process each would take 37 starts)."""
    from edl_api.edl_api import run

    capsys.readouterr()
    code = run(["query", case["sql"], "--format", "json", "--profile", "bob",
                "--instance", "local"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = [list(row.values()) for row in json.loads(out)]
    assert len(got) == len(case["rows"]), (got, case["rows"])
    for row, want in zip(got, case["rows"], strict=True):
        assert len(row) == len(want) and all(_same(g, w) for g, w in zip(row, want,
                                                                            strict=True)), \
            (row, want)


def test_the_aws_cli_and_pyathena_give_the_same_answers_through_a_broker_profile(
        sql_lake, local_cloud, tmp_path):
    config = tmp_path / "aws-config"
    ok(edl_api("profile", "trials", "--level", "read", "--config-file", str(config),
               user="bob"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"))
    endpoint = local_cloud.status.endpoint_url
    case = next(c for c in CORPUS if c["name"] == "group by")

    def aws(*args: str) -> dict:
        done = subprocess.run([str(BIN / "aws"), *args, "--profile", "edl-trials-read",
                               "--endpoint-url", endpoint, "--output", "json"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    query_id = aws("athena", "start-query-execution", "--work-group", "edl-internal",
                   "--query-execution-context", "Database=edl_local_internal",
                   "--query-string", case["sql"])["QueryExecutionId"]
    for _ in range(600):
        state = aws("athena", "get-query-execution", "--query-execution-id",
                    query_id)["QueryExecution"]["Status"]["State"]
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
    assert state == "SUCCEEDED"
    rows = aws("athena", "get-query-results", "--query-execution-id", query_id)
    values = [[d.get("VarCharValue") for d in r["Data"]] for r in rows["ResultSet"]["Rows"]]
    assert values[1:] == case["rows"]

    from pyathena import connect

    os.environ["AWS_CONFIG_FILE"] = str(config)   # PyAthena's boto3 session reads the profile
    try:
        cursor = connect(work_group="edl-internal", schema_name="edl_local_internal",
                         region_name="us-east-1", endpoint_url=endpoint,
                         profile_name="edl-trials-read", poll_interval=0.05).cursor()
        cursor.execute(case["sql"])
        assert [[str(v) for v in row] for row in cursor.fetchall()] == case["rows"]
    finally:
        os.environ.pop("AWS_CONFIG_FILE", None)


def test_bob_is_refused_until_his_grant_then_reads_each_update_as_lake_read_does(
        sql_lake, local_cloud, spark, tmp_path):
    sql = f"SELECT id, site, dose FROM {SECRET}"
    refused(edl_api("query", sql, user="bob"), "no read grant", "edl-api grant request")
    audit = json.loads(ok(edl_api("audit", "--dataset", SECRET, "--json", user="alice")).stdout)
    assert any(e["action"] == "refuse" and e["actor"].endswith("user/bob")
               for e in audit["events"])

    grant = json.loads(ok(edl_api("grant", "request", SECRET, "--level", "read", "--for", "1d",
                                  "--justification", "SQL check", "--json",
                                  user="bob")).stdout)["grant_id"]
    ok(edl_api("grant", "approve", grant, user="alice"))
    try:
        shown = ok(edl_api("query", f"{sql} ORDER BY id", user="bob"))
        assert "Tōkyō" in shown.stdout and "3 rows" in shown.stderr
        for update in lake.list_updates(SECRET, instance="local", profile="bob"):
            queried = lake.query(sql, as_of={SECRET: update.update_id}, instance="local",
                                 profile="bob")
            read = lake.read(spark, SECRET, as_of=update.update_id, instance="local",
                             profile="bob").select("id", "site", "dose")
            assert sorted(tuple(r.values()) for r in queried.to_pylist()) == \
                sorted(tuple(r) for r in read.collect())

        out = tmp_path / "secret.parquet"
        ok(edl_api("query", sql, "--format", "parquet", "--out", str(out), user="bob"))
        assert pq.read_table(out).num_rows == 3
        as_csv = ok(edl_api("query", f"{sql} ORDER BY id", "--format", "csv", user="bob"))
        assert as_csv.stdout.splitlines()[0] == '"id","site","dose"'
        as_json = json.loads(ok(edl_api("query", f"{sql} ORDER BY id", "--format", "json",
                                        user="bob")).stdout)
        assert as_json[0] == {"id": 1, "site": "Lyon", "dose": 1.5}
    finally:
        ok(edl_api("grant", "revoke", grant, user="alice"))


@pytest.mark.parametrize("args, words", [
    (["DROP TABLE trials"], ["DROP is refused", "read-only"]),
    (["SELECT *\nFROM trials\nWHERE (id ="], ["syntax error at line 3"]),
    (["SELECT * FROM no_such_dataset"], ["'no_such_dataset' does not exist"]),
    (["SELECT 1 AS one"], ["reads no dataset"]),
    (["SELECT count(*) FROM trials", "--as-of", "trials=0000000099"], ["no update 0000000099"]),
    (["SELECT t.id FROM trials t CROSS JOIN UNNEST(sequence(1, 400)) AS s(n)"],
     ["2000 rows", "--out"]),
    (["SELECT count(*) FROM trials CROSS JOIN UNNEST(sequence(1, 100000)) AS a(x) "
      "CROSS JOIN UNNEST(sequence(1, 100000)) AS b(y)", "--timeout", "1"],
     ["timeout of 1 s", "CANCELLED"]),
], ids=["ddl", "syntax", "unknown dataset", "no dataset", "unknown update", "too large",
        "timeout"])
def test_bad_queries_are_clear_errors_and_change_nothing(sql_lake, local_cloud, args, words):
    before = lake.list_updates("trials", instance="local", profile="bob")
    refused(edl_api("query", *args, user="bob"), *words)
    assert lake.list_updates("trials", instance="local", profile="bob") == before
