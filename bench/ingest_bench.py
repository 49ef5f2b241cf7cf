"""Speed and scale of the ingest job and of `lake.read` (issue 3), each against a baseline measured
in the same run. `run()` returns one dict per measurement:
{"name", "value", "baseline", "ratio", "target", "passed", "unit"}.

    .venv/bin/python -m bench.ingest_bench          # prints the lines, exit 1 if a target is missed

1. Conversion stage (raw already in place, local files → parquet): the job's streaming converter
   (`convert.convert_file`) vs plain `pyarrow.csv.read_csv` + `pyarrow.parquet.write_table`, on
   4 generated CSV files of 50 MB each, each side in a fresh process, best of two.
   Target: ≥ 0.7× pyarrow's MB/s.
2. End to end on the local cloud (drop bucket → complete update): the ingest job (in-process, on a
   warm Spark session as the local job runner has one, acting as the ingest job role) vs a plain
   pyarrow script that reads the same CSVs from the same endpoint with the same credentials and
   writes parquet back to the data bucket. Best of 2 each. Target: ≤ 1.5× pyarrow's time. The job
   does more: it copies every source file to raw/ (server-side: CopyObject), records checksums
   (computed while converting, so each CSV is read once), schema and rows, writes the manifest,
   commits the update and registers it in the Glue catalog.
3. Peak memory of the job (`python -m edl.core_resources.pipelines.ingest` as a process, one big
   CSV of 16 MB and then 128 MB): the peak of the summed RSS of the job's whole process tree —
   Python driver, Spark's JVM and its Python workers — sampled every 50 ms from /proc.
   Target: grows < 20% for 8× the input.
4. `lake.read` with deltas: updates written directly (parquet parts and records, no job), then the
   read forced in full (`write.format("noop")`). Rows/s for 1×, 2×, 4× the rows with 20 deltas,
   and for 5, 10, 20 deltas with the same rows. Targets: rows/s at 4× ≥ 0.8× rows/s at 1× (time
   linear in rows), and the time with 20 deltas ≤ 4× the time with 5: each update is at least one
   part and each part one Spark task, so time may grow with the number of parts, never with its
   square (16×).

Groups 2–4 run on a local cloud of the bench's own (temporary EDL home, free port, stopped at the
end whatever happens); the user's local cloud is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EDL = Path(sys.executable).with_name("edl")
REGION = "us-east-1"
TIER = "internal"
MB = 1_000_000


def result(name: str, value: float, baseline: float, target: str, unit: str,
           ok) -> dict:
    ratio = value / baseline if baseline else float("inf")
    return {"name": name, "value": round(value, 3), "baseline": round(baseline, 3),
            "ratio": round(ratio, 3), "target": target, "passed": bool(ok(ratio)), "unit": unit}


def say(message: str) -> None:
    print(f"  {message}", flush=True)


# -- 1. conversion stage ---------------------------------------------------------------------

_CONVERT = r"""
import json, sys, time
import pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
mode, out, *sources = sys.argv[1:]
start = time.perf_counter()
rows = 0
for i, src in enumerate(sources):
    target = f"{out}/{i}.parquet"
    if mode == "edl":
        from edl.core_resources.pipelines.ingest.convert import convert_file
        rows += convert_file("csv", "bench.csv", lambda: open(src, "rb"),
                             lambda: open(target, "wb")).rows
    else:
        table = pacsv.read_csv(src)
        pq.write_table(table, target, compression="snappy")
        rows += table.num_rows
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows,
                  "peak": pa.default_memory_pool().max_memory()}))
"""


def csv_text(megabytes: float, start_id: int = 0) -> bytes:
    """A CSV of about `megabytes` MB: ints, a string, a double, a quoted field with a comma."""
    row = '%d,site-%d,%d.5,"Smith, J.",some free text for row %d\n'
    chunks = [b"id,site,score,investigator,comment\n"]
    size, i = 0, start_id
    while size < megabytes * MB:
        chunk = "".join(row % (n, n % 97, n, n) for n in range(i, i + 50_000)).encode()
        chunks.append(chunk)
        size += len(chunk)
        i += 50_000
    return b"".join(chunks)


def conversion_stage(files: int = 4, megabytes: int = 50) -> list[dict]:
    say(f"1. conversion stage: {files} CSV files of {megabytes} MB")
    with tempfile.TemporaryDirectory(prefix="edl-bench-convert-") as tmp:
        sources = []
        for i in range(files):
            path = Path(tmp) / f"part{i}.csv"
            path.write_bytes(csv_text(megabytes, i * 10_000_000))
            sources.append(str(path))
        size = sum(Path(s).stat().st_size for s in sources) / MB
        runs = {}
        for mode in ("edl", "plain", "edl", "plain"):   # interleaved, best of two
            out = Path(tmp) / mode
            out.mkdir(exist_ok=True)
            done = subprocess.run([sys.executable, "-c", _CONVERT, mode, str(out), *sources],
                                  capture_output=True, text=True, check=True, cwd=REPO)
            r = json.loads(done.stdout)
            if mode not in runs or r["seconds"] < runs[mode]["seconds"]:
                runs[mode] = r
    assert runs["edl"]["rows"] == runs["plain"]["rows"]
    edl, plain = size / runs["edl"]["seconds"], size / runs["plain"]["seconds"]
    say(f"   {size:.0f} MB, {runs['edl']['rows']} rows: edl {edl:.1f} MB/s "
        f"(peak Arrow {runs['edl']['peak'] / MB:.0f} MB), pyarrow {plain:.1f} MB/s "
        f"(peak Arrow {runs['plain']['peak'] / MB:.0f} MB)")
    return [result("conversion stage throughput vs pyarrow read_csv+write_table", edl, plain,
                   ">= 0.7x", "MB/s", lambda r: r >= 0.7)]


# -- the local cloud -------------------------------------------------------------------------

def _free_port() -> int:
    """A free port N on 127.0.0.1 whose N + 1 is free too (the runtime's REST API takes it)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free neighbouring ports on 127.0.0.1")


@contextlib.contextmanager
def own_local_cloud():
    """A fresh local cloud in a temporary EDL home; always stopped, home removed."""
    from edl.config import get_config
    from edl.local import control

    home = tempfile.mkdtemp(prefix="edl-bench-ingest-")
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(EDL_HOME=home, AWS_CONFIG_FILE=os.devnull,
                      AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                      EDL_LOCAL_SPARK_WARMUP="0",     # no runtime JVM competing for the cores
                      PYSPARK_PYTHON=sys.executable, EDL_INSTANCE="local")
    try:
        instance = get_config().instance("local")
        state = control.start(instance, port=_free_port())
        if not state.running:
            raise RuntimeError(f"the local cloud did not start; see {home}/local/runtime.log")
        yield instance
    finally:
        try:
            control.stop()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            shutil.rmtree(home, ignore_errors=True)


class Lake:
    """The bench's view of its local cloud: deployed core, datasets, and the ingest role."""

    def __init__(self, instance) -> None:
        from edl import naming
        from edl.aws import AwsSessions
        from edl.config import get_config
        from edl.utils.context import LakeContext
        from edl.utils.metadata import MetadataStore

        done = subprocess.run([str(EDL), "deploy-core", "--instance", "local"],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode:
            raise RuntimeError(f"deploy-core failed:\n{done.stderr[-2000:]}")
        prefix = get_config().bucket_prefix
        self.drop = naming.drop_bucket(prefix, "local", TIER, REGION)
        self.data = naming.data_bucket(prefix, "local", TIER, REGION)
        sessions = AwsSessions(instance)
        self.deployer_s3 = sessions.deploy_client("s3")
        self.metadata = MetadataStore(sessions.deploy_resource("dynamodb"), "local")
        self.role_arn = naming.role_arn(instance.account_id, naming.ingest_job_role("local"))
        self.context = LakeContext.for_instance("local", role_arn=self.role_arn)
        self.access = self.context.s3_access(REGION)

    def dataset(self, name: str) -> str:
        from edl.utils.metadata import DatasetRecord, DeltaConvention

        self.metadata.put_dataset(DatasetRecord(
            dataset=name, tier=TIER, owner="bench", home_region=REGION, description="bench",
            delta=DeltaConvention(("id",), "op", "D")))
        return name

    def drop_file(self, key: str, body: bytes) -> str:
        self.deployer_s3.put_object(Bucket=self.drop, Key=key, Body=body)
        return f"s3://{self.drop}/{key}"


def build_spark():
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[2]").appName("edl-bench-ingest")
            .config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.ui.showConsoleProgress", "false").getOrCreate())


# -- 2. end to end ---------------------------------------------------------------------------

def end_to_end(lake: Lake, spark, files: int = 4, megabytes: int = 10) -> list[dict]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from edl.core_resources.pipelines.ingest.job import IngestJob, IngestRequest

    say(f"2. end to end on the local cloud: {files} CSV files of {megabytes} MB in the drop bucket")
    dataset = lake.dataset("bench_e2e")
    keys = []
    for i in range(files):
        keys.append(f"e2e/part{i}.csv")
        lake.drop_file(keys[-1], csv_text(megabytes, i * 10_000_000))
    job = IngestJob(spark, lake.context)
    # Warm-up, untimed: the local job runner keeps a warm Spark and Python workers.
    job.run(IngestRequest(dataset=dataset, source=lake.drop_file("warm/w.csv", csv_text(0.1))))
    fs = lake.access.filesystem()

    def plain(round_: int) -> int:
        rows = 0
        for i, key in enumerate(keys):
            with fs.open_input_stream(f"{lake.drop}/{key}") as stream:
                table = pacsv.read_csv(stream)
            pq.write_table(table, f"{lake.data}/plain/{round_}/part{i}.parquet", filesystem=fs,
                           compression="snappy")
            rows += table.num_rows
        return rows

    times = {"edl": [], "plain": []}
    for round_ in range(2):
        started = time.perf_counter()
        record = job.run(IngestRequest(dataset=dataset, source=f"s3://{lake.drop}/e2e/"))
        times["edl"].append(time.perf_counter() - started)
        started = time.perf_counter()
        rows = plain(round_)
        times["plain"].append(time.perf_counter() - started)
        assert record.status == "complete" and record.rows == rows, (record.rows, rows)
    edl, base = min(times["edl"]), min(times["plain"])
    say(f"   {rows} rows: ingest job {edl:.2f} s, pyarrow script {base:.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times['edl'])} / "
        f"{', '.join(f'{t:.2f}' for t in times['plain'])})")
    return [result("end to end drop bucket -> complete update vs pyarrow S3 script", edl, base,
                   "<= 1.5x", "s", lambda r: r <= 1.5)]


# -- 3. peak memory ------------------------------------------------------------------------

def _tree_rss(root: int) -> tuple[int, int]:
    """(sum of RSS, largest single RSS) in bytes of `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, ppid = int(entry.name), int(fields.get("PPid", "0").strip())
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total = largest = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        largest = max(largest, rss.get(pid, 0))
        stack.extend(children.get(pid, []))
    return total, largest


def job_peak_memory(source: str, dataset: str) -> tuple[int, int, float]:
    process = subprocess.Popen(
        [sys.executable, "-m", "edl.core_resources.pipelines.ingest", "--instance", "local",
         "--dataset", dataset, "--source", source],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    peak = [0, 0]
    finished = threading.Event()

    def sample():
        while not finished.is_set():
            total, largest = _tree_rss(process.pid)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    sampler.start()
    _out, err = process.communicate(timeout=600)
    seconds = time.perf_counter() - started
    finished.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"ingest of {source} failed:\n{err[-2000:]}")
    return peak[0], peak[1], seconds


def memory_growth(lake: Lake, small_mb: int = 16) -> list[dict]:
    say(f"3. peak memory of the job process tree: one CSV of {small_mb} MB, then {8 * small_mb} MB")
    dataset = lake.dataset("bench_memory")
    small = lake.drop_file("mem/small.csv", csv_text(small_mb))
    big = lake.drop_file("mem/big.csv", csv_text(8 * small_mb))
    small_total, small_largest, small_s = job_peak_memory(small, dataset)
    big_total, big_largest, big_s = job_peak_memory(big, dataset)
    say(f"   {small_mb} MB: tree {small_total / MB:.0f} MB (largest process "
        f"{small_largest / MB:.0f} MB) in {small_s:.1f} s; {8 * small_mb} MB: tree "
        f"{big_total / MB:.0f} MB (largest {big_largest / MB:.0f} MB) in {big_s:.1f} s "
        "(JVM included)")
    return [result("job peak RSS (driver + JVM + workers), 8x the input vs 1x", big_total / MB,
                   small_total / MB, "< 1.2x", "MB", lambda r: r < 1.2)]


# -- 4. lake.read with deltas ----------------------------------------------------------------

def _write_update(lake: Lake, fs, dataset: str, kind: str, table) -> None:
    import pyarrow.parquet as pq

    from edl.utils.schemas import schema_to_text
    from edl.utils.updates import part_name

    updates = lake.context.updates
    record = updates.allocate_update(dataset, kind, "bench://generated", lake.data)
    pq.write_table(table, f"{lake.data}/{record.data_prefix}{part_name(0)}", filesystem=fs)
    updates.complete_update(replace(record, part_count=1, file_count=1, rows=table.num_rows,
                                    arrow_schema=schema_to_text(table.schema)))


def _history(lake: Lake, fs, dataset: str, snapshot_rows: int, delta_rows: int,
             deltas: int) -> int:
    """A snapshot and `deltas` deltas sharing `delta_rows` rows: updates and deletes of existing
    keys and new keys. Returns the number of rows a read takes in."""
    import random

    import pyarrow as pa

    rng = random.Random(7)
    _write_update(lake, fs, dataset, "snapshot", pa.table({
        "id": pa.array(range(snapshot_rows), pa.int64()),
        "val": pa.array([f"v{i}" for i in range(snapshot_rows)])}))
    each = delta_rows // deltas
    top = int(snapshot_rows * 1.1)
    for d in range(deltas):
        keys = [rng.randrange(top) for _ in range(each)]
        _write_update(lake, fs, dataset, "delta", pa.table({
            "id": pa.array(keys, pa.int64()), "val": pa.array([f"d{d}-{k}" for k in keys]),
            "op": pa.array(["D" if rng.random() < 0.1 else "U" for _ in keys])}))
    return snapshot_rows + each * deltas


def read_with_deltas(lake: Lake, spark, snapshot_rows: int = 200_000,
                     delta_rows: int = 100_000) -> list[dict]:
    from edl.utils import lake as lakeapi

    say(f"4. lake.read: 1x = a snapshot of {snapshot_rows} rows + {delta_rows} delta rows")
    fs = lake.access.filesystem()
    cases = [(1, 20), (2, 20), (4, 20), (1, 5), (1, 10)]
    seconds, rates, rows = {}, {}, {}
    for scale, deltas in [(1, 5), *cases]:   # the first (1, 5) is a warm-up, measured again
        dataset = lake.dataset(f"bench_read_{scale}x_{deltas}d")
        if dataset not in rows:
            rows[dataset] = _history(lake, fs, dataset, scale * snapshot_rows,
                                     scale * delta_rows, deltas)
        runs = []
        for _ in range(2):                   # best of two: this machine is shared
            started = time.perf_counter()
            df = lakeapi.read(spark, dataset, context=lake.context)
            df.write.format("noop").mode("overwrite").save()
            runs.append(time.perf_counter() - started)
        seconds[(scale, deltas)] = min(runs)
        rates[(scale, deltas)] = rows[dataset] / min(runs)
    for scale, deltas in cases:
        say(f"   {scale}x rows, {deltas:2d} deltas: {seconds[(scale, deltas)]:5.2f} s, "
            f"{rates[(scale, deltas)]:9.0f} rows/s")
    return [
        result("lake.read rows/s, 4x rows vs 1x (20 deltas)", rates[(4, 20)], rates[(1, 20)],
               ">= 0.8x", "rows/s", lambda r: r >= 0.8),
        # Each update is at least one part, and each part one task: with the rows fixed, time
        # may grow with the number of parts (4x from 5 to 20) but never with its square (16x).
        result("lake.read time, 20 deltas vs 5 (same rows)", seconds[(1, 20)],
               seconds[(1, 5)], "<= 4x (deltas^2 would be 16x)", "s", lambda r: r <= 4.0),
    ]


# -- all -------------------------------------------------------------------------------------

def run() -> list[dict]:
    results = conversion_stage()
    with own_local_cloud() as instance:
        lake = Lake(instance)
        results += memory_growth(lake)          # its own processes: before our Spark starts
        spark = build_spark()
        spark.sparkContext.setLogLevel("ERROR")
        try:
            results += end_to_end(lake, spark)
            results += read_with_deltas(lake, spark)
        finally:
            spark.stop()
    return results


def measure(rounds: int):
    """`python -m bench ingest`: the results as the bench's lines (one round: each measurement
    already repeats or scales internally)."""
    from bench._common import Line

    lines = []
    for r in run():
        target = r["target"]
        at_least = target.startswith(">")
        limit = float(target.lstrip("<>= ").split("x")[0])
        lines.append(Line(group="ingest", name=r["name"], value=r["value"], limit=limit,
                          baseline=r["baseline"], baseline_name="baseline", unit=r["unit"],
                          at_least=at_least))
    return lines, {}


def main() -> int:
    started = time.perf_counter()
    results = run()
    print()
    for r in results:
        print(f"{'PASS' if r['passed'] else 'FAIL'}  {r['name']}: {r['value']} {r['unit']} vs "
              f"{r['baseline']} {r['unit']}, ratio {r['ratio']} (target {r['target']})")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
