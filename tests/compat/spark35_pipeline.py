"""A pipeline run through the wrapper under pyspark 3.5, in the venv of `spark35_venv`.

    .venv-spark35/bin/python -m tests.compat.spark35_pipeline WORKDIR

Run by `test_spark35.py` (from the repo root): it starts moto's threaded server on 127.0.0.1
(Spark's Python workers are other processes, so they reach it over HTTP), makes a small lake - a
dataset with a snapshot and a delta ingested by the ingest job, holding dates, timestamps (UTC
and wall-clock), decimals, nulls, a list, a struct, a map and non-ASCII text - and runs a pipeline
written here through `PipelineRun`. It then reads the output back with `lake.read`, runs the
pipeline again through the Glue job's entry script, runs the Spark-filesystem path (the cloud's)
with local files standing in for `s3://`, and tampers with parts to see reads refuse them. What it saw goes to stdout as one JSON line, which the test
checks; anything unexpected is an exception and a non-zero exit.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

INSTANCE, REGION, TIER = "local", "us-east-1", "sensitive"
INPUT, OUTPUT = "visits", "visits_enriched"
UTC = datetime.UTC
LOCAL_ZONE = "America/New_York"


def visit_table(rows: list[dict[str, Any]], with_op: bool = False):
    import pyarrow as pa

    fields = [
        ("id", pa.int64()), ("site", pa.string()), ("visit_date", pa.date32()),
        ("seen_at", pa.timestamp("us", tz="UTC")), ("wall_clock", pa.timestamp("us")),
        ("cost", pa.decimal128(10, 2)), ("note", pa.string()), ("tags", pa.list_(pa.string())),
        ("address", pa.struct([("city", pa.string()), ("zip", pa.string())])),
        ("scores", pa.map_(pa.string(), pa.int64())),
    ]
    if with_op:
        fields.append(("op", pa.string()))
    schema = pa.schema(fields)
    return pa.Table.from_pylist(rows, schema=schema)


def row(id_: int, site: str, day: int, cost: str, note: str | None, **extra) -> dict[str, Any]:
    return {"id": id_, "site": site, "visit_date": datetime.date(2026, 1, day),
            "seen_at": datetime.datetime(2026, 1, day, 8, 30, 15, 123456, tzinfo=UTC),
            "wall_clock": datetime.datetime(2026, 1, day, 23, 45),
            "cost": Decimal(cost), "note": note, "tags": [site.lower(), "t€"],
            "address": {"city": site, "zip": None if id_ % 2 else f"{id_:05d}"},
            "scores": [("a", id_), ("b", None)], **extra}


SNAPSHOT = [row(1, "Lyon", 5, "12.50", "première"), row(2, "Lyon", 6, "7.25", None),
            row(3, "Zürich", 7, "100.00", "ok")]
DELTA = [row(2, "Lyon", 6, "8.75", "corrigé", op="U"), row(3, "Zürich", 7, "0", None, op="D"),
         row(4, "東京", 9, "3.10", "新", op="I")]

PIPELINE = """\
    from pyspark.sql import functions as F

    def run(spark, inputs, params):
        visits = inputs["visits"]
        return {"enriched": visits.withColumn("cost_with_tax", F.col("cost") * F.lit(1.2))
                .withColumn("seen_day", F.to_date("seen_at"))}
    """


def jsonable(value: Any) -> Any:
    """A value as the report carries it: dates and times as ISO text (aware ones in UTC),
    decimals as text, rows and maps as objects."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC).isoformat()
        return value.isoformat()
    if isinstance(value, datetime.date | Decimal):
        return str(value)
    if hasattr(value, "asDict"):
        return {k: jsonable(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def rows_of(frame) -> list[dict[str, Any]]:
    """The frame's rows by id. Spark's TimestampType comes back naive in local time: made aware
    first, so that the report says which instant it is."""
    from pyspark.sql.types import TimestampType

    instants = {f.name for f in frame.schema.fields if isinstance(f.dataType, TimestampType)}
    out = []
    for r in frame.collect():
        values = r.asDict()
        for name in instants:
            if values[name] is not None:
                values[name] = values[name].astimezone(UTC)
        out.append({k: jsonable(v) for k, v in values.items()})
    return sorted(out, key=lambda v: v["id"])


def start_local_cloud(work: Path) -> str:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    home = work / "edl-home"
    (home / "local").mkdir(parents=True, exist_ok=True)
    (home / "local" / "state.json").write_text(json.dumps({"endpoint_url": endpoint}))
    os.environ.update({"EDL_HOME": str(home), "EDL_INSTANCE": INSTANCE,
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION,
                       "AWS_CONFIG_FILE": str(work / "no-aws-config"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials")})
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    return endpoint


def start_spark():
    """Local Spark on the loopback, in a time zone that is not UTC (the JVM's and the Python
    workers'), so that a timestamp taken for a wall-clock reading, or the other way round,
    would show."""
    os.environ["TZ"] = LOCAL_ZONE
    time.tzset()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[2]").appName("edl-spark35")
            .config("spark.sql.shuffle.partitions", "2").config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1").getOrCreate())


def make_lake(endpoint: str, spark):
    import boto3
    import pyarrow.parquet as pq

    from edl.config import get_config
    from edl.core_resources.pipelines.ingest.__main__ import main as ingest
    from edl.naming import data_bucket, drop_bucket
    from edl.utils.context import LakeContext
    from edl.utils.metadata import DatasetRecord, DeltaConvention
    from tests.functional.ingest_helpers import create_metadata_tables

    session = boto3.Session(region_name=REGION)
    create_metadata_tables(session.client("dynamodb", endpoint_url=endpoint))
    s3 = session.client("s3", endpoint_url=endpoint)
    prefix = get_config().bucket_prefix
    data, drop = (data_bucket(prefix, INSTANCE, TIER, REGION),
                  drop_bucket(prefix, INSTANCE, TIER, REGION))
    for bucket in (data, drop):
        s3.create_bucket(Bucket=bucket)
    ctx = LakeContext.for_instance(INSTANCE)
    for name, delta in ((INPUT, DeltaConvention(("id",), "op", "D")),
                        (OUTPUT, DeltaConvention(("id",), None, None))):
        ctx.metadata.put_dataset(DatasetRecord(dataset=name, tier=TIER, owner="alice",
                                               home_region=REGION, delta=delta))
    for key, table, kind in (("snapshot.parquet", visit_table(SNAPSHOT), "snapshot"),
                             ("delta.parquet", visit_table(DELTA, with_op=True), "delta")):
        body = io.BytesIO()
        pq.write_table(table, body)
        s3.put_object(Bucket=drop, Key=key, Body=body.getvalue())
        code = ingest(["--instance", INSTANCE, "--dataset", INPUT, "--kind", kind,
                       "--source", f"s3://{drop}/{key}"], spark=spark, context=ctx)
        assert code == 0, f"ingesting {key} failed ({code})"
    return ctx, s3, data


def write_pipeline(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline_config.yaml").write_text(textwrap.dedent(f"""\
        name: enrich_visits
        kind: pyspark
        inputs:
          visits: {{dataset: {INPUT}}}
        outputs:
          enriched: {{dataset: {OUTPUT}, kind: snapshot}}
        trigger: manual
        checks:
          enriched: [{{rows_at_least: 1}}, {{not_null: [id, site]}}, {{unique: [id]}}]
        """))
    (folder / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    return folder


def keys(s3, bucket: str, prefix: str) -> list[str]:
    answer = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in answer.get("Contents", []))


def failure_of(action) -> str:
    """The message of what `action` raised ("" if it raised nothing)."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the report says what it was
        return f"{type(exc).__name__}: {exc}"
    return ""


def spark_filesystem_path(spark, ctx, s3, bucket: str, work: Path) -> dict[str, Any]:
    """The cloud's path (Spark's own parquet reader and writer) with local files standing in for
    `s3://`: the output's parts mirrored to disk, read as of its update with the checksums
    checked on the local cloud's objects; a write into a staging folder, and its parts."""
    from edl.utils import lake
    from edl.utils.lake_spark_fs import SparkFilesystemPath
    from edl.utils.lake_tasks import TaskPath
    from edl.utils.schemas import arrow_schema_of_spark

    mirror = work / "mirror"

    def url(b: str, k: str) -> str:
        return f"file://{mirror}/{b}/{k}"

    record = ctx.metadata.get_dataset(INPUT)
    access = ctx.data_access(record)
    path = SparkFilesystemPath(spark, access, fallback=TaskPath(spark, access), url=url)
    for key in keys(s3, bucket, f"{INPUT}/data/"):
        target = mirror / bucket / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    reader = lake._PartsReader(spark, ctx, record)
    reader.path = path
    plan = lake.plan_read(INPUT, ctx.updates.list_updates(INPUT))
    read = rows_of(lake._apply_deltas(reader, record, plan))

    frame = lake.read(spark, INPUT, context=ctx).repartition(3)
    prefix = f"_edl_staging/{INPUT}/spark-fs-test/data/"
    written = path.write(frame, bucket, prefix, arrow_schema_of_spark(frame.schema))
    listed = sorted(p.name for p in (mirror / bucket / prefix).iterdir())

    # a part of the delta put again: S3 then keeps another SHA-256, or none at all
    part = plan.deltas[0].part_keys()[0]
    s3.put_object(Bucket=bucket, Key=part, Body=b"changed", ChecksumAlgorithm="SHA256")
    by_stored = failure_of(lambda: lake._apply_deltas(reader, record, plan))
    s3.put_object(Bucket=bucket, Key=part, Body=b"changed", ChecksumAlgorithm="CRC32")
    by_hash = failure_of(lambda: lake._apply_deltas(reader, record, plan))
    return {"read": read, "written": [(w.key.removeprefix(prefix), w.rows) for w in written],
            "listed": listed, "tampered_stored_checksum": by_stored,
            "tampered_no_checksum": by_hash}


def run_as_glue(endpoint: str, s3, config) -> dict[str, Any]:
    """The Glue job's own entry script, run as Glue runs it: the package `edl deploy-pipeline`
    builds, fetched from S3 by the script (`AWS_ENDPOINT_URL` points boto3 at the local cloud),
    Glue's own arguments among the wrapper's; → its exit code and the wrapper's answer."""
    import contextlib

    from edl.cloudformation.components.pipeline import ENTRY_SCRIPT, pipeline_package

    artifacts = "edl-compat-artifacts"
    s3.create_bucket(Bucket=artifacts)
    s3.put_object(Bucket=artifacts, Key="package.zip", Body=pipeline_package(config).data)
    argv, sys.argv = sys.argv, ["main.py", "--JOB_ID", "j_1", "--package",
                                f"s3://{artifacts}/package.zip", "--instance", INSTANCE,
                                "--no-role", "--job-id", "glue-run", "--TempDir", "s3://t/"]
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(ENTRY_SCRIPT, "main.py", "exec"), {"__name__": "__main__"})
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
        os.environ.pop("AWS_ENDPOINT_URL")
    lines = out.getvalue().strip().splitlines()
    return {"exit": code, "answer": json.loads(lines[-1]) if lines else None}


def main(work: Path) -> dict[str, Any]:
    import pyspark

    from edl.core_resources.pipelines.wrapper.run import PipelineRun, RunRequest
    from edl.pipeline_config import load_pipeline
    from edl.utils import lake
    from edl.utils.lake_paths import parts_path

    endpoint = start_local_cloud(work)
    spark = start_spark()
    ctx, s3, bucket = make_lake(endpoint, spark)
    record = ctx.metadata.get_dataset(INPUT)
    report: dict[str, Any] = {
        "spark": pyspark.__version__,
        "session_time_zone": spark.conf.get("spark.sql.session.timeZone"),
        "path": parts_path(spark, ctx.data_access(record)).name,
        "input": rows_of(lake.read(spark, INPUT, context=ctx)),
        "input_as_of_1": rows_of(lake.read(spark, INPUT, as_of="1", context=ctx)),
    }
    config = load_pipeline(write_pipeline(work / "pipeline"))
    result = PipelineRun(spark, ctx, emit=lambda event: None).run(
        RunRequest(config, requested_by="alice"))
    output = result.outputs["enriched"]
    update = lake.get_update(OUTPUT, output.update_id, context=ctx)
    report.update({
        "update": {"status": update.status, "rows": update.rows, "kind": update.kind,
                   "source": update.source, "parts": update.part_count},
        "lineage": {"pipeline": update.lineage.get("pipeline"),
                    "inputs": update.lineage.get("inputs"),
                    "code_hash": len(update.lineage.get("code_hash", ""))},
        "events": [e["eventType"] for e in result.events],
        "output": rows_of(lake.read(spark, OUTPUT, context=ctx)),
        "output_types": {f.name: f.dataType.simpleString()
                         for f in lake.read(spark, OUTPUT, context=ctx).schema.fields},
        "staging_left": keys(s3, bucket, f"_edl_staging/{OUTPUT}/"),
    })
    glue = run_as_glue(endpoint, s3, config)
    if glue["answer"]:
        second = glue["answer"]["outputs"]["enriched"]["update_id"]
        glue["update"] = lake.get_update(OUTPUT, second, context=ctx).status
    report["glue_entry_script"] = glue
    report["spark_filesystem"] = spark_filesystem_path(spark, ctx, s3, bucket, work)
    tampered = update.part_keys()[0]
    s3.put_object(Bucket=bucket, Key=tampered, Body=b"changed after the commit")
    report["tampered_read"] = failure_of(
        lambda: lake.read(spark, OUTPUT, as_of=update.update_id, context=ctx).collect())
    spark.stop()
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    print(json.dumps(main(Path(sys.argv[1]))))
