"""Benchmark 7: SQL over the lake on the local cloud (issue 10).

1. A count and group-by over about 3 M rows in 8 parquet files (one snapshot update of the
   internal dataset `bench_query`, ingested through the job runner): `edl-api query` as the demo
   user bob (a subprocess, as a user runs it: the broker's credentials, the Athena API of the
   local endpoint, the result read from its object) takes at most 1.5x the floor - DuckDB in
   this one process reading the same 8 parts from the same endpoint through pyarrow, with the
   same credentials the broker vends bob.
2. A one-row query through `edl-api query` on the warm runtime takes at most 2x an
   `edl-api datasets` call (both subprocesses as bob) in the same run.

Each side is measured `rounds` times, alternating, after one untimed warm-up each; the medians
are compared.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench._common import BIN, EDL, LOCAL, BenchError, Line, LocalCloud, log, run

GROUP = "query"
DATASET = "bench_query"
USER, OWNER = "bob", "alice"
FILES = 8
ROWS_PER_FILE = 400_000
SCAN_RATIO, ONE_ROW_RATIO = 1.5, 2.0
EDL_API = BIN / "edl-api"
GROUP_BY = (f"SELECT site, count(*) AS n, sum(amount) AS total FROM {DATASET} "
            "GROUP BY site ORDER BY site")
ONE_ROW = f"SELECT count(*) AS n FROM {DATASET} WHERE id = 7"


def _load(cloud: LocalCloud) -> str:
    """8 parquet files in the internal drop bucket, ingested as one snapshot; → its update id."""
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from edl import naming
    from edl.config import get_config

    instance = cloud.instance
    drop = naming.drop_bucket(get_config().bucket_prefix, LOCAL, "internal",
                              instance.default_region)
    s3 = boto3.client("s3", region_name=instance.default_region, endpoint_url=cloud.endpoint,
                      **cloud.role_credentials())
    sites = [f"site_{i:02d}" for i in range(40)]
    for n in range(FILES):
        ids = range(n * ROWS_PER_FILE, (n + 1) * ROWS_PER_FILE)
        table = pa.table({"id": pa.array(ids, pa.int64()),
                          "site": pa.array([sites[i * 7919 % 40] for i in ids]),
                          "amount": pa.array([(i * 0.618) % 1 for i in ids], pa.float64())})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        s3.put_object(Bucket=drop, Key=f"{DATASET}/bench/part{n}.parquet",
                      Body=sink.getvalue().to_pybytes())
    run([EDL_API, "ingest", DATASET, "--source", f"s3://{drop}/{DATASET}/bench/", "--kind",
         "snapshot", "--wait", "--profile", OWNER, "--instance", LOCAL], cloud.env(),
        timeout=900)
    from edl.utils import lake

    [update] = lake.list_updates(DATASET, instance=LOCAL, profile=USER, status="complete")
    if update.rows != FILES * ROWS_PER_FILE:
        raise BenchError(f"{DATASET} holds {update.rows} rows, expected {FILES * ROWS_PER_FILE}")
    return update.update_id


def _floor(cloud: LocalCloud, update_id: str):
    """DuckDB over the update's parts through pyarrow, with the credentials bob is vended."""
    import duckdb
    import pyarrow.dataset as pads

    from edl.utils.context import LakeContext

    ctx = LakeContext.for_reader(LOCAL, USER)
    record = ctx.metadata.get_dataset(DATASET)
    update = ctx.updates.get_update(DATASET, update_id)
    fs = ctx.data_access(record).filesystem()
    paths = [f"{update.bucket}/{key}" for key in update.part_keys()]

    def query() -> int:
        parts = pads.dataset(paths, filesystem=fs, format="parquet")
        con = duckdb.connect()
        con.register("parts", parts)
        rows = con.execute("SELECT site, count(*) AS n, sum(amount) AS total FROM parts "
                           "GROUP BY site ORDER BY site").fetchall()
        con.close()
        return sum(r[1] for r in rows)

    return query


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    details: dict[str, Any] = {"rows": FILES * ROWS_PER_FILE, "files": FILES}
    with LocalCloud(GROUP) as cloud:
        details["start_s"] = cloud.start(spark=True)
        env = cloud.env()
        run([EDL, "deploy-core", "--instance", LOCAL], env)
        run([EDL, "deploy-dataset", DATASET, "--tier", "internal", "--owner", OWNER,
             "--instance", LOCAL], env)
        started = time.perf_counter()
        update_id = _load(cloud)
        details["load_s"] = time.perf_counter() - started
        log(f"ingested {FILES} files, {FILES * ROWS_PER_FILE} rows in {details['load_s']:.1f} s")
        floor = _floor(cloud, update_id)

        def edl_query(sql: str) -> float:
            return run([EDL_API, "query", sql, "--format", "csv", "--profile", USER,
                        "--instance", LOCAL], env)[0]

        def datasets() -> float:
            return run([EDL_API, "datasets", "--profile", USER, "--instance", LOCAL], env)[0]

        def timed(call) -> float:
            started = time.perf_counter()
            total = call()
            if total != FILES * ROWS_PER_FILE:
                raise BenchError(f"the floor counted {total} rows")
            return time.perf_counter() - started

        floor_count = floor()           # warm-ups, untimed
        if floor_count != FILES * ROWS_PER_FILE:
            raise BenchError(f"the floor counted {floor_count} rows")
        edl_query(GROUP_BY)
        edl_query(ONE_ROW)
        datasets()
        runs: dict[str, list[float]] = {"query": [], "floor": [], "one_row": [], "datasets": []}
        for n in range(rounds):
            for side, call in ((("query", lambda: edl_query(GROUP_BY)),
                                ("floor", lambda: timed(floor))) if n % 2 == 0 else
                               (("floor", lambda: timed(floor)),
                                ("query", lambda: edl_query(GROUP_BY)))):
                runs[side].append(call())
            for side, call in ((("one_row", lambda: edl_query(ONE_ROW)),
                                ("datasets", datasets)) if n % 2 == 0 else
                               (("datasets", datasets),
                                ("one_row", lambda: edl_query(ONE_ROW)))):
                runs[side].append(call())
            log(f"round {n + 1}/{rounds}: query {runs['query'][-1]:.2f} s, floor "
                f"{runs['floor'][-1]:.2f} s; one-row query {runs['one_row'][-1]:.2f} s, "
                f"datasets {runs['datasets'][-1]:.2f} s")
    med = {side: statistics.median(values) for side, values in runs.items()}
    details["runs_s"] = runs
    return [
        Line(GROUP, f"edl-api query: count + group-by over {FILES * ROWS_PER_FILE:,} rows in "
             f"{FILES} parquet files", med["query"], SCAN_RATIO, baseline=med["floor"],
             baseline_name="DuckDB over the same files through pyarrow, one process",
             runs={"query_s": runs["query"], "floor_s": runs["floor"]}),
        Line(GROUP, "edl-api query: a one-row query on a warm runtime", med["one_row"],
             ONE_ROW_RATIO, baseline=med["datasets"], baseline_name="edl-api datasets",
             runs={"one_row_s": runs["one_row"], "datasets_s": runs["datasets"]}),
    ], details


if __name__ == "__main__":
    import sys

    from bench.__main__ import main

    sys.exit(main(["query", *sys.argv[1:]]))
