"""Benchmark 8: pipelines on the local cloud (issue 11).

1. `edl run-pipeline --wait` on a warm runtime, a pipeline aggregating about 3 M rows (8 parquet
   files, one snapshot of the internal dataset `bench_pipe_in`) into a small output: at most
   1.5x the same transformation written by hand - `lake.read`, the same group-by and a plain
   parquet write to local disk - in a warm Spark of this process (local[2], as the runtime's).
   The command is timed as a user runs it (a subprocess, queueing and following the run); the
   hand-written job inside this process, imports and Spark start-up done.
2. `lake.read` of a dataset with a snapshot and 20 deltas, after `edl compact`: at most 0.3x the
   same read before it (both read to the end: a count and a sum over every row), in this
   process's Spark.

Each side is measured `rounds` times, alternating, after one untimed warm-up each; the medians
are compared.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench._common import EDL, LOCAL, BenchError, Line, LocalCloud, log, run

GROUP = "pipelines"
SOURCE, OUTPUT, DELTAS_DATASET = "bench_pipe_in", "bench_pipe_out", "bench_pipe_deltas"
PIPELINE = "bench_by_site"
FILES, ROWS_PER_FILE = 8, 400_000
DELTAS, SNAPSHOT_ROWS, DELTA_ROWS = 20, 400_000, 20_000
RUN_RATIO, COMPACT_RATIO = 1.5, 0.3
CODE = """\
from pyspark.sql import functions as F


def run(spark, inputs, params):
    return {"by_site": transform(inputs["visits"])}


def transform(visits):
    return visits.groupBy("site").agg(F.count("*").alias("n"), F.sum("amount").alias("total"),
                                      F.avg("amount").alias("mean"))
"""


def _parquet(rows: range, *, op: str | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sites = [f"site_{i:02d}" for i in range(40)]
    columns: dict[str, Any] = {
        "id": pa.array(rows, pa.int64()),
        "site": pa.array([sites[i * 7919 % 40] for i in rows]),
        "amount": pa.array([(i * 0.618) % 1 for i in rows], pa.float64())}
    if op is not None:
        columns["op"] = pa.array([op] * len(rows))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


def _ingest(cloud: LocalCloud, dataset: str, key: str, body_parts: list[bytes], kind: str) -> None:
    import boto3

    from edl import naming
    from edl.config import get_config

    drop = naming.drop_bucket(get_config().bucket_prefix, LOCAL, "internal",
                              cloud.instance.default_region)
    s3 = boto3.client("s3", region_name=cloud.instance.default_region,
                      endpoint_url=cloud.endpoint, **cloud.role_credentials())
    for n, body in enumerate(body_parts):
        s3.put_object(Bucket=drop, Key=f"{dataset}/{key}/part{n}.parquet", Body=body)
    run([str(Path(EDL).with_name("edl-api")), "ingest", dataset, "--source",
         f"s3://{drop}/{dataset}/{key}/", "--kind", kind, "--wait", "--profile", "alice",
         "--instance", LOCAL], cloud.env(), timeout=900)


def _spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("edl-bench-pipelines")
             .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    details: dict[str, Any] = {"rows": FILES * ROWS_PER_FILE, "deltas": DELTAS}
    work = Path(tempfile.mkdtemp(prefix="edl-bench-pipelines-"))
    with LocalCloud(GROUP) as cloud:
        details["start_s"] = cloud.start(spark=True)
        env = cloud.env()
        run([EDL, "deploy-core", "--instance", LOCAL], env)
        for dataset, extra in ((SOURCE, ()), (OUTPUT, ()),
                               (DELTAS_DATASET, ("--key", "id", "--op-column", "op",
                                                 "--delete-marker", "D"))):
            run([EDL, "deploy-dataset", dataset, "--tier", "internal", "--owner", "alice",
                 *extra, "--instance", LOCAL], env)
        started = time.perf_counter()
        _ingest(cloud, SOURCE, "big", [_parquet(range(n * ROWS_PER_FILE, (n + 1) * ROWS_PER_FILE))
                                       for n in range(FILES)], "snapshot")
        _ingest(cloud, DELTAS_DATASET, "base", [_parquet(range(SNAPSHOT_ROWS))], "snapshot")
        for n in range(DELTAS):   # each delta rewrites a slice of the keys and adds new ones
            first = n * DELTA_ROWS // 2
            _ingest(cloud, DELTAS_DATASET, f"d{n:02d}",
                    [_parquet(range(first, first + DELTA_ROWS), op="U")], "delta")
        details["load_s"] = time.perf_counter() - started
        log(f"loaded {FILES * ROWS_PER_FILE:,} rows and a snapshot with {DELTAS} deltas in "
            f"{details['load_s']:.1f} s")

        folder = work / "pipeline"
        folder.mkdir()
        (folder / "pipeline.py").write_text(CODE)
        (folder / "pipeline_config.yaml").write_text(textwrap.dedent(f"""\
            name: {PIPELINE}
            kind: pyspark
            inputs:
              visits: {{dataset: {SOURCE}}}
            outputs:
              by_site: {{dataset: {OUTPUT}, kind: snapshot}}
            trigger: manual
            """))
        run([EDL, "deploy-pipeline", str(folder), "--instance", LOCAL], env)

        def run_pipeline() -> float:
            return run([EDL, "run-pipeline", PIPELINE, "--wait", "--instance", LOCAL], env,
                       timeout=900)[0]

        from pyspark.sql import functions as F

        from edl import naming
        from edl.utils import lake
        from edl.utils.context import LakeContext

        sys.path.insert(0, str(folder))
        from pipeline import transform  # type: ignore[import-not-found]  # the bench's pipeline

        spark = _spark()
        ctx = LakeContext.for_instance(LOCAL, role_arn=naming.role_arn(
            cloud.instance.account_id, naming.ingest_job_role(LOCAL)))

        def by_hand() -> float:
            target = work / "by_hand"
            shutil.rmtree(target, ignore_errors=True)
            started = time.perf_counter()
            transform(lake.read(spark, SOURCE, context=ctx)).write.parquet(str(target))
            return time.perf_counter() - started

        def read_all(as_of: str | None = None) -> float:
            started = time.perf_counter()
            lake.read(spark, DELTAS_DATASET, context=ctx, as_of=as_of).agg(
                F.count("*"), F.sum("amount")).collect()
            return time.perf_counter() - started

        run_pipeline()
        by_hand()
        runs: dict[str, list[float]] = {"pipeline": [], "by_hand": []}
        for n in range(rounds):
            sides = [("pipeline", run_pipeline), ("by_hand", by_hand)]
            for side, call in (sides if n % 2 == 0 else sides[::-1]):
                runs[side].append(call())
            log(f"round {n + 1}/{rounds}: run-pipeline {runs['pipeline'][-1]:.2f} s, by hand "
                f"{runs['by_hand'][-1]:.2f} s")

        updates = lake.list_updates(DELTAS_DATASET, context=ctx)
        newest = updates[-1].update_id
        read_all(newest)
        before = [read_all(newest) for _ in range(rounds)]
        started = time.perf_counter()
        run([EDL, "compact", DELTAS_DATASET, "--instance", LOCAL], env, timeout=900)
        details["compact_s"] = time.perf_counter() - started
        compacted = lake.list_updates(DELTAS_DATASET, context=ctx)[-1]
        if compacted.kind != "snapshot" or compacted.lineage.get("pipeline") != "compact":
            raise BenchError(f"edl compact wrote no compacted snapshot ({compacted})")
        read_all()
        after = [read_all() for _ in range(rounds)]
        log(f"lake.read with {DELTAS} deltas {statistics.median(before):.2f} s, after compact "
            f"{statistics.median(after):.2f} s (compact took {details['compact_s']:.1f} s)")
        spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    med = {side: statistics.median(values) for side, values in runs.items()}
    details["runs_s"] = {**runs, "read_before": before, "read_after": after}
    return [
        Line(GROUP, f"edl run-pipeline --wait: a group-by over {FILES * ROWS_PER_FILE:,} rows on "
             "a warm runtime", med["pipeline"], RUN_RATIO, baseline=med["by_hand"],
             baseline_name="the same transformation by hand (lake.read, parquet write)",
             runs={"pipeline_s": runs["pipeline"], "by_hand_s": runs["by_hand"]}),
        Line(GROUP, f"lake.read after edl compact of a dataset with {DELTAS} deltas",
             statistics.median(after), COMPACT_RATIO, baseline=statistics.median(before),
             baseline_name="the same read before compaction",
             runs={"after_s": after, "before_s": before}),
    ], details


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["pipelines", *sys.argv[1:]]))
