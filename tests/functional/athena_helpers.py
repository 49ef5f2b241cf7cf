"""A small lake for the local Athena's tests, laid out as `edl.utils.catalog` registers datasets.

`build_lake(url)` makes, through the AWS API with moto's admin keys (before enforcement):

- bucket `sanofi-datalake-local-internal-us-east-1` with dataset `trials`: three complete
  updates (a snapshot, a delta that deletes and updates, a delta whose schema grew), parquet
  parts under `trials/data/<update>/`, and `sites` (one unpartitioned part);
- Glue database `edl_local_internal_updates`: the physical table `trials` (partition keys
  `commit_seq` bigint, `update_id`, `kind`; one partition per update with its own columns) and
  `sites`; database `edl_local_internal`: the views `trials` (newest snapshot with later deltas
  applied by key, the delete marker removing a key) and `sites`, stored as Athena stores Presto
  views;
- a bucket `vault` with a table `edl_local_internal_updates.vault` that only the admin reads;
- workgroup `edl-internal` (results in `s3://edl-athena-results/internal/`, enforced);
- users: `reader` (Athena on the workgroup, Glue, S3 on the data bucket and the results),
  `no_athena` (Glue and S3, no Athena), `no_glue` (Athena and S3, no Glue); and a session of
  the role `lake-reader` (the reader's rights), as the broker vends them (`session`).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from decimal import Decimal

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from edl.local.athena.sql import presto_view_text

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "sanofi-datalake-local-internal-us-east-1"
RESULTS = "edl-athena-results"
WORK_GROUP = "edl-internal"
VIEWS_DB = "edl_local_internal"
UPDATES_DB = "edl_local_internal_updates"
_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary":
                  "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
DETAIL = pa.struct([("arm", pa.string()), ("visits", pa.int32())])
BASE = [("id", pa.int64()), ("site", pa.string()), ("enrolled", pa.date32()),
        ("measured_at", pa.timestamp("us")), ("dose", pa.decimal128(10, 2)),
        ("score", pa.float64()), ("tags", pa.list_(pa.string())), ("detail", DETAIL)]
GLUE_TYPES = {"id": "bigint", "site": "string", "enrolled": "date", "measured_at": "timestamp",
              "dose": "decimal(10,2)", "score": "double", "tags": "array<string>",
              "detail": "struct<arm:string,visits:int>", "op": "string", "note": "string"}


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


UPDATES = [
    # (update id, commit_seq, kind, schema, rows)
    ("0000000001", 1, "snapshot", BASE, [
        (1, "Paris", _d("2024-01-15"), _ts("2024-01-15 08:30:00"), Decimal("12.50"), 1.5,
         ["a", "b"], {"arm": "A", "visits": 3}),
        (2, "Zürich", _d("2024-02-01"), _ts("2024-02-01 12:00:00.250"), Decimal("7.25"), None,
         [], {"arm": "B", "visits": None}),
        (3, "São Paulo", _d("2024-02-29"), None, None, 2.25, None, None),
        (4, "Paris", _d("2024-03-10"), _ts("2024-03-10 23:59:59"), Decimal("100.00"), -0.5,
         ["c"], {"arm": "A", "visits": 1}),
    ]),
    ("0000000002", 2, "delta", [*BASE, ("op", pa.string())], [
        (3, "São Paulo", _d("2024-02-29"), None, None, 2.25, None, None, "D"),
        (2, "Zürich", _d("2024-02-01"), _ts("2024-02-01 12:00:00.250"), Decimal("8.00"), 3.0,
         ["b"], {"arm": "B", "visits": 2}, "U"),
        (5, "Tōkyō", _d("2024-04-01"), _ts("2024-04-01 09:15:00"), Decimal("0.05"), 4.0,
         ["a", "c"], {"arm": "C", "visits": 5}, "I"),
    ]),
    ("0000000003", 3, "delta", [*BASE, ("op", pa.string()), ("note", pa.string())], [
        (6, "Lyon", _d("2024-05-05"), _ts("2024-05-05 10:00:00"), Decimal("3.33"), 1.0,
         ["d"], {"arm": "A", "visits": 0}, "I", "日本語 \"quoted\", note"),
        (1, "Paris", _d("2024-01-15"), _ts("2024-01-15 08:30:00"), Decimal("12.50"), 9.0,
         ["a", "b"], {"arm": "A", "visits": 4}, "U", None),
    ]),
]
SITES = pa.table({"site": ["Paris", "Zürich", "Tōkyō", "Lyon", "Boston"],
                  "country": ["FR", "CH", "JP", "FR", "US"],
                  "opened": pa.array([2001, 1999, 2010, 2015, None], pa.int32())})

# What `edl.utils.catalog.dataset_sql` writes, in spirit: the newest snapshot, later deltas by key.
TRIALS_VIEW_SQL = f"""
WITH updates AS (
    SELECT * FROM {UPDATES_DB}.trials
), base AS (
    SELECT max(commit_seq) AS seq FROM updates WHERE kind = 'snapshot'
), ranked AS (
    SELECT u.*, row_number() OVER (PARTITION BY u.id ORDER BY u.commit_seq DESC) AS rn
    FROM updates u CROSS JOIN base b
    WHERE u.commit_seq >= b.seq
)
SELECT id, site, enrolled, measured_at, dose, score, tags, detail, note
FROM ranked
WHERE rn = 1 AND (op IS NULL OR op <> 'D')
"""


@dataclass(frozen=True)
class AthenaLake:
    url: str
    keys: dict[str, dict[str, str]]   # user -> {"AccessKeyId", "SecretAccessKey"}

    def client(self, service: str, user: str | None = None):
        if user is None:
            creds = {"aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        else:
            creds = {"aws_access_key_id": self.keys[user]["AccessKeyId"],
                     "aws_secret_access_key": self.keys[user]["SecretAccessKey"],
                     "aws_session_token": self.keys[user].get("SessionToken")}
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **creds)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _columns(names: list[str]) -> list[dict[str, str]]:
    return [{"Name": n, "Type": GLUE_TYPES[n]} for n in names]


def _view(glue, database: str, name: str, sql: str, columns: list[str]) -> None:
    glue.create_table(DatabaseName=database, TableInput={
        "Name": name, "TableType": "VIRTUAL_VIEW",
        "Parameters": {"presto_view": "true", "comment": "Presto View"},
        "ViewOriginalText": presto_view_text(
            sql, "awsdatacatalog", database,
            [{"name": c, "type": "varchar"} for c in columns]),
        "ViewExpandedText": "/* Presto View */",
        "StorageDescriptor": {"Columns": [{"Name": c, "Type": "string"} for c in columns]},
    })


def build_lake(url: str) -> dict[str, dict[str, str]]:
    """The lake above; returns the users' keys."""
    admin = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "admin",
             "aws_secret_access_key": "admin"}
    s3, glue = boto3.client("s3", **admin), boto3.client("glue", **admin)
    for bucket in (BUCKET, RESULTS, "vault"):
        s3.create_bucket(Bucket=bucket)
    glue.create_database(DatabaseInput={"Name": VIEWS_DB})
    glue.create_database(DatabaseInput={"Name": UPDATES_DB})
    all_columns = list(GLUE_TYPES)
    glue.create_table(DatabaseName=UPDATES_DB, TableInput={
        "Name": "trials", "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet"},
        "PartitionKeys": [{"Name": "commit_seq", "Type": "bigint"},
                          {"Name": "update_id", "Type": "string"},
                          {"Name": "kind", "Type": "string"}],
        "StorageDescriptor": {**_PARQUET, "Columns": _columns(all_columns),
                              "Location": f"s3://{BUCKET}/trials/data/"}})
    for update_id, seq, kind, schema, rows in UPDATES:
        table = pa.Table.from_pylist([dict(zip([n for n, _ in schema], r, strict=True))
                                      for r in rows], schema=pa.schema(schema))
        # two parts for the first update, so a dataset spans several files
        halves = [table.slice(0, 2), table.slice(2)] if seq == 1 else [table]
        for number, part in enumerate(halves):
            s3.put_object(Bucket=BUCKET, Key=f"trials/data/{update_id}/part-{number:05d}.parquet",
                          Body=_parquet(part))
        s3.put_object(Bucket=BUCKET, Key=f"trials/data/{update_id}/_SUCCESS", Body=b"")
        glue.create_partition(DatabaseName=UPDATES_DB, TableName="trials", PartitionInput={
            "Values": [str(seq), update_id, kind],
            "StorageDescriptor": {**_PARQUET, "Columns": _columns([n for n, _ in schema]),
                                  "Location": f"s3://{BUCKET}/trials/data/{update_id}/"}})
    s3.put_object(Bucket=BUCKET, Key="sites/data/0000000001/part-00000.parquet",
                  Body=_parquet(SITES))
    glue.create_table(DatabaseName=UPDATES_DB, TableInput={
        "Name": "sites", "TableType": "EXTERNAL_TABLE",
        "StorageDescriptor": {**_PARQUET, "Columns": [
            {"Name": "site", "Type": "string"}, {"Name": "country", "Type": "string"},
            {"Name": "opened", "Type": "int"}],
            "Location": f"s3://{BUCKET}/sites/data/0000000001/"}})
    s3.put_object(Bucket="vault", Key="data/part-00000.parquet",
                  Body=_parquet(pa.table({"secret": ["x"]})))
    glue.create_table(DatabaseName=UPDATES_DB, TableInput={
        "Name": "vault", "TableType": "EXTERNAL_TABLE",
        "StorageDescriptor": {**_PARQUET, "Columns": [{"Name": "secret", "Type": "string"}],
                              "Location": "s3://vault/data/"}})
    _view(glue, VIEWS_DB, "trials", TRIALS_VIEW_SQL,
          ["id", "site", "enrolled", "measured_at", "dose", "score", "tags", "detail", "note"])
    _view(glue, VIEWS_DB, "sites", f"SELECT site, country, opened FROM {UPDATES_DB}.sites",
          ["site", "country", "opened"])
    boto3.client("athena", **admin).create_work_group(
        Name=WORK_GROUP, Configuration={
            "ResultConfiguration": {"OutputLocation": f"s3://{RESULTS}/internal/"},
            "EnforceWorkGroupConfiguration": True,
            "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"}})
    return _users(boto3.client("iam", **admin))


def _users(iam) -> dict[str, dict[str, str]]:
    work_group = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{WORK_GROUP}"
    athena = {"Effect": "Allow", "Resource": work_group, "Action": [
        "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
        "athena:StopQueryExecution", "athena:ListQueryExecutions",
        "athena:BatchGetQueryExecution", "athena:GetWorkGroup"]}
    glue = {"Effect": "Allow", "Resource": "*", "Action": [
        "glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables",
        "glue:GetPartition", "glue:GetPartitions"]}
    s3 = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:PutObject"],
          "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*",
                       f"arn:aws:s3:::{RESULTS}", f"arn:aws:s3:::{RESULTS}/*"]}
    grants = {"reader": [athena, glue, s3], "no_athena": [glue, s3], "no_glue": [athena, s3]}
    keys = {}
    for user, statements in grants.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="lake", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    role = iam.create_role(RoleName="lake-reader", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/reader"}}]}))["Role"]
    iam.put_role_policy(RoleName="lake-reader", PolicyName="lake", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": grants["reader"]}))
    # moto checks no trust before enforcement: the admin stands in for the broker here
    sts = boto3.client("sts", endpoint_url=iam.meta.endpoint_url, region_name=REGION,
                       aws_access_key_id="admin", aws_secret_access_key="admin")
    keys["session"] = sts.assume_role(RoleArn=role["Arn"],
                                      RoleSessionName="bob")["Credentials"]
    return keys
