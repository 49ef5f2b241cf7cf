"""Benchmark 7: SQL over the lake on the local cloud (issue 10).

1. A count and group-by over about 3 M rows in 8 parquet files (one snapshot update of the
   internal dataset `bench_query`, ingested through the job runner): `edl-api query` as the demo
   user bob (a subprocess, as a user runs it: the broker's credentials, the Athena API of the
   local endpoint, the result read from its page) takes at most 1.5x the floor - DuckDB in one
   process reading the same 8 parts from the same endpoint through pyarrow, with the same
   credentials the broker vends bob. The floor is run as the query is, as a user runs it: a
   Python process (`bench/query_floor.py`, start-up and imports included), like every command
   the bench times. The same DuckDB read timed inside this process, imports and connection
   made, is printed for information.
2. A one-row query through `edl-api query` on the warm runtime takes at most 2x an
   `edl-api datasets` call (both subprocesses as bob) in the same run.

Each side is measured `rounds` times, alternating, after one untimed warm-up each; the medians
are compared.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
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
FLOOR_SQL = "SELECT site, count(*) AS n, sum(amount) AS total FROM parts GROUP BY site ORDER BY site"
FLOOR_SCRIPT = Path(__file__).resolve().parent / "query_floor.py"


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
    """DuckDB over the update's parts through pyarrow, with the credentials bob is vended: the
    query in this process, and the job for `bench/query_floor.py`."""
    import duckdb
    import pyarrow.dataset as pads

    from edl.utils.context import LakeContext

    ctx = LakeContext.for_reader(LOCAL, USER)
    record = ctx.metadata.get_dataset(DATASET)
    update = ctx.updates.get_update(DATASET, update_id)
    access = ctx.data_access(record)
    fs = access.filesystem()
    paths = [f"{update.bucket}/{key}" for key in update.part_keys()]
    job = {"endpoint": cloud.endpoint, "region": access.region, "paths": paths,
           "access_key": access.access_key, "secret_key": access.secret_key,
           "session_token": access.session_token, "sql": FLOOR_SQL}

    def query() -> int:
        parts = pads.dataset(paths, filesystem=fs, format="parquet")
        con = duckdb.connect()
        con.register("parts", parts)
        rows = con.execute(FLOOR_SQL).fetchall()
        con.close()
        return sum(r[1] for r in rows)

    return query, job


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
        floor, job = _floor(cloud, update_id)

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

        def floor_process() -> int:
            done = subprocess.run([str(BIN / "python"), str(FLOOR_SCRIPT)], input=json.dumps(job),
                                  capture_output=True, text=True, env=env, timeout=600)
            if done.returncode != 0:
                raise BenchError(f"the floor script exited {done.returncode}: {done.stderr[-800:]}")
            return int(done.stdout.strip())

        for call in (floor, floor_process):   # warm-ups, untimed
            if call() != FILES * ROWS_PER_FILE:
                raise BenchError("the floor did not count every row")
        edl_query(GROUP_BY)
        edl_query(ONE_ROW)
        datasets()
        runs: dict[str, list[float]] = {"query": [], "floor": [], "in_process": [],
                                        "one_row": [], "datasets": []}
        for n in range(rounds):
            sides = [("query", lambda: edl_query(GROUP_BY)),
                     ("floor", lambda: timed(floor_process)),
                     ("in_process", lambda: timed(floor))]
            for side, call in (sides if n % 2 == 0 else sides[::-1]):
                runs[side].append(call())
            for side, call in ((("one_row", lambda: edl_query(ONE_ROW)),
                                ("datasets", datasets)) if n % 2 == 0 else
                               (("datasets", datasets),
                                ("one_row", lambda: edl_query(ONE_ROW)))):
                runs[side].append(call())
            log(f"round {n + 1}/{rounds}: query {runs['query'][-1]:.2f} s, floor "
                f"{runs['floor'][-1]:.2f} s (in this process {runs['in_process'][-1]:.2f} s); "
                f"one-row query {runs['one_row'][-1]:.2f} s, datasets "
                f"{runs['datasets'][-1]:.2f} s")
    med = {side: statistics.median(values) for side, values in runs.items()}
    details["runs_s"] = runs
    return [
        Line(GROUP, f"edl-api query: count + group-by over {FILES * ROWS_PER_FILE:,} rows in "
             f"{FILES} parquet files", med["query"], SCAN_RATIO, baseline=med["floor"],
             baseline_name="DuckDB over the same files through pyarrow, one Python process",
             runs={"query_s": runs["query"], "floor_s": runs["floor"]}),
        Line(GROUP, "edl-api query: the same, against the floor's read timed inside the bench "
             "(imports done, no Python start)", med["query"], None,
             baseline=med["in_process"], baseline_name="the same DuckDB read in this process",
             runs={"in_process_s": runs["in_process"]}),
        Line(GROUP, "edl-api query: a one-row query on a warm runtime", med["one_row"],
             ONE_ROW_RATIO, baseline=med["datasets"], baseline_name="edl-api datasets",
             runs={"one_row_s": runs["one_row"], "datasets_s": runs["datasets"]}),
    ], details


if __name__ == "__main__":
    import sys

    from bench.__main__ import main

    sys.exit(main(["query", *sys.argv[1:]]))
