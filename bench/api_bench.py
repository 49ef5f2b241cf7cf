"""Benchmark 5: the REST API on the local cloud.

1. Metadata reads. With 1,000 datasets and 10,000 updates in the metadata tables, `GET /datasets`
   (first page, default page size) and `GET /datasets/{d}/updates` (random datasets) through the
   local HTTP server - signed by `edl_api.client.ApiClient` as the demo user alice - take at most
   3x the time of the same DynamoDB reads made directly with boto3 as alice (a scan of the
   datasets table with Limit = page size; a consistent query of the dataset's updates with
   Limit = page size). Requests alternate API / direct so both sides see the same machine; p50
   and p99 of each are printed, the p50 ratio is held to the target, the p99 ratio is info.
   The metadata is bulk-loaded with batch_write_item as the CloudFormation role, in the shapes
   `DatasetRecord.to_item()` and `UpdateRecord.to_item()` (10 complete updates a dataset).

2. Ingest. A ~1 KB CSV through `edl-api ingest DATASET --source FILE --kind snapshot --wait
   --profile alice --instance local` (a subprocess, as a user runs it): the median of 5 ingests
   on a warm runtime (one ingest before them warms the job runner's Spark) is at most 0.2x the
   median of `--rounds` ingests each made with a cold Spark start (a fresh local cloud whose
   runtime does not warm Spark up: `EDL_LOCAL_SPARK_WARMUP=0`, core and dataset deployed anew,
   the first ingest timed).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    BIN,
    EDL,
    LOCAL,
    BenchError,
    Line,
    LocalCloud,
    log,
    median,
    percentile,
    run,
)

GROUP = "api"
DATASETS = 1_000
UPDATES_PER_DATASET = 10
REQUESTS = 200
WARM_UPS = 10
WARM_INGESTS = 5
METADATA_RATIO = 3.0
INGEST_RATIO = 0.2
USER = "alice"
INGEST_DATASET = "bench_api_ingest"
EDL_API = BIN / "edl-api"


def _deploy_core(cloud: LocalCloud) -> float:
    return run([EDL, "deploy-core", "--instance", LOCAL], cloud.env())[0]


def _deploy_dataset(cloud: LocalCloud, name: str) -> float:
    return run([EDL, "deploy-dataset", name, "--tier", "internal", "--owner", USER,
                "--instance", LOCAL], cloud.env())[0]


# -- 1. metadata reads ---------------------------------------------------------------------------

def _dataset_names() -> list[str]:
    return [f"bench_ds_{i:04d}" for i in range(DATASETS)]


def _bulk_load(cloud: LocalCloud) -> float:
    """1,000 dataset items and 10,000 complete update items, written with batch_write_item as
    the CloudFormation role."""
    from edl import naming
    from edl.aws import LOCAL_ADMIN_PROFILE, AwsSessions, Identity
    from edl.config import get_config
    from edl.utils.metadata import DatasetRecord
    from edl.utils.updates import COMPLETE, UpdateRecord, format_update_id

    instance = cloud.instance
    region = instance.default_region
    bucket = naming.data_bucket(get_config().bucket_prefix, instance.name, "internal", region)
    dynamodb = AwsSessions(instance, Identity(LOCAL_ADMIN_PROFILE)).deploy_resource("dynamodb")
    datasets = dynamodb.Table(naming.table_name(instance.name, "datasets"))
    updates = dynamodb.Table(naming.table_name(instance.name, "updates"))
    started = time.perf_counter()
    now = time.time()
    with datasets.batch_writer() as batch:
        for n, name in enumerate(_dataset_names()):
            item = DatasetRecord(dataset=name, tier="internal", owner=USER, home_region=region,
                                 description=f"bench dataset {n}", created_at=now).to_item()
            item["update_seq"] = UPDATES_PER_DATASET
            batch.put_item(Item=item)
    with updates.batch_writer() as batch:
        for name in _dataset_names():
            for seq in range(1, UPDATES_PER_DATASET + 1):
                update_id = format_update_id(seq)
                batch.put_item(Item=UpdateRecord(
                    dataset=name, update_id=update_id, kind="snapshot", status=COMPLETE,
                    source=f"s3://{bucket}/drop/{name}/{seq}.csv", bucket=bucket,
                    requested_by=f"arn:aws:iam::{instance.account_id}:user/{USER}",
                    job_id=f"ingest-{seq:012x}", created_at="2026-01-01T00:00:00.000+00:00",
                    started_at="2026-01-01T00:00:01.000+00:00",
                    finished_at="2026-01-01T00:00:05.000+00:00", rows=1000 + seq,
                    bytes=40_000 + seq, part_count=1, file_count=1,
                    columns=({"name": "id", "type": "int64"}, {"name": "site", "type": "string"}),
                    catalog_registered=True,   # as an ingest leaves it: no sweep backlog
                ).to_item())
    seconds = time.perf_counter() - started
    counted = datasets.scan(Select="COUNT")["Count"]
    if counted < DATASETS:
        raise BenchError(f"the datasets table holds {counted} items after the bulk load, "
                         f"expected at least {DATASETS}")
    return seconds


def _metadata_reads(cloud: LocalCloud) -> tuple[list[Line], dict[str, Any]]:
    from edl import naming
    from edl.api_config import get_api_config
    from edl.aws import AwsSessions, Identity
    from edl_api.client import ApiClient

    instance = cloud.instance
    page_size = get_api_config().page_size_default
    api = ApiClient.for_instance(LOCAL, USER)
    dynamodb = AwsSessions(instance, Identity(USER)).user_session().resource(
        "dynamodb", region_name=instance.default_region, endpoint_url=cloud.endpoint,
        config=AwsSessions(instance).client_config)
    datasets = dynamodb.Table(naming.table_name(instance.name, "datasets"))
    updates = dynamodb.Table(naming.table_name(instance.name, "updates"))

    from boto3.dynamodb.conditions import Key

    def api_datasets(_name: str) -> int:
        return len(api.get("/datasets")["datasets"])

    def direct_datasets(_name: str) -> int:
        return len(datasets.scan(Limit=page_size)["Items"])

    def api_updates(name: str) -> int:
        return len(api.get(f"/datasets/{name}/updates")["updates"])

    def direct_updates(name: str) -> int:
        return len(updates.query(KeyConditionExpression=Key("dataset").eq(name),
                                 ConsistentRead=True, Limit=page_size)["Items"])

    rng = random.Random(5)
    names = _dataset_names()
    series = {"datasets": (api_datasets, direct_datasets),
              "updates": (api_updates, direct_updates)}
    times: dict[str, dict[str, list[float]]] = {}
    for endpoint, (through_api, direct) in series.items():
        # Sanity: both sides read the same page size.
        name = rng.choice(names)
        got_api, got_direct = through_api(name), direct(name)
        expected = page_size if endpoint == "datasets" else UPDATES_PER_DATASET
        if got_api != expected or got_direct != expected:
            raise BenchError(f"GET {endpoint}: the API gave {got_api} items and boto3 "
                             f"{got_direct}, expected {expected}")
        for _ in range(WARM_UPS):
            name = rng.choice(names)
            through_api(name)
            direct(name)
        runs = {"api": [], "direct": []}
        for i in range(REQUESTS):
            name = rng.choice(names)
            # Alternate which side goes first, so neither always follows the other.
            order = (("api", through_api), ("direct", direct))
            for side, call in (order if i % 2 == 0 else order[::-1]):
                started = time.perf_counter()
                call(name)
                runs[side].append(time.perf_counter() - started)
        times[endpoint] = runs

    lines: list[Line] = []
    details: dict[str, Any] = {"page_size": page_size, "requests": REQUESTS}
    for endpoint, runs in times.items():
        path = "/datasets" if endpoint == "datasets" else "/datasets/{d}/updates"
        direct_what = ("scan of the datasets table" if endpoint == "datasets"
                       else "query of the updates table")
        stats = {side: {"p50_ms": percentile(v, 50) * 1e3, "p99_ms": percentile(v, 99) * 1e3,
                        "mean_ms": statistics.fmean(v) * 1e3} for side, v in runs.items()}
        details[endpoint] = stats
        log(f"GET {path}: API p50 {stats['api']['p50_ms']:.1f} ms, p99 "
            f"{stats['api']['p99_ms']:.1f} ms; boto3 {direct_what} p50 "
            f"{stats['direct']['p50_ms']:.1f} ms, p99 {stats['direct']['p99_ms']:.1f} ms "
            f"({REQUESTS} each)")
        lines.append(Line(
            GROUP, f"GET {path} through the local API, p50 of {REQUESTS}",
            stats["api"]["p50_ms"], METADATA_RATIO, baseline=stats["direct"]["p50_ms"],
            baseline_name=f"boto3 {direct_what} as {USER}, p50", unit="ms",
            runs={"api_ms": [t * 1e3 for t in runs["api"]],
                  "direct_ms": [t * 1e3 for t in runs["direct"]]}))
        lines.append(Line(
            GROUP, f"GET {path} through the local API, p99 of {REQUESTS}",
            stats["api"]["p99_ms"], None, baseline=stats["direct"]["p99_ms"],
            baseline_name=f"boto3 {direct_what} as {USER}, p99", unit="ms"))
    return lines, details


# -- 2. ingest -----------------------------------------------------------------------------------

def _csv_file(folder: Path) -> Path:
    rows = ["id,site,score,comment"]
    n = 0
    while sum(len(r) + 1 for r in rows) < 1000:
        n += 1
        rows.append(f"{n},site_{n % 7},{n * 1.25:.2f},row number {n}")
    path = folder / "sites.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _ingest(cloud: LocalCloud, source: Path) -> float:
    seconds, _ = run([EDL_API, "ingest", INGEST_DATASET, "--source", source, "--kind",
                         "snapshot", "--wait", "--profile", USER, "--instance", LOCAL],
                        cloud.env(), timeout=300)
    return seconds


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edl-bench-api-data-") as folder:
        source = _csv_file(Path(folder))
        details["csv_bytes"] = source.stat().st_size
        with LocalCloud(GROUP) as cloud:
            # Spark warm-up off: no JVM start competes with the timed reads; the first ingest
            # below starts Spark.
            details["start_s"] = cloud.start(spark=False)
            details["deploy_core_s"] = _deploy_core(cloud)
            details["bulk_load_s"] = _bulk_load(cloud)
            log(f"loaded {DATASETS} datasets and {DATASETS * UPDATES_PER_DATASET} updates in "
                f"{details['bulk_load_s']:.1f} s")
            lines, details["metadata"] = _metadata_reads(cloud)

            _deploy_dataset(cloud, INGEST_DATASET)
            first = _ingest(cloud, source)  # starts Spark: the runtime is warm after it
            warm = [_ingest(cloud, source) for _ in range(WARM_INGESTS)]
            log(f"ingest of {details['csv_bytes']} bytes: first (starts Spark) {first:.2f} s, "
                f"then warm {', '.join(f'{s:.2f}' for s in warm)} s")
            cold = []
            for n in range(1, rounds + 1):
                cloud.reset(spark=False)  # EDL_LOCAL_SPARK_WARMUP=0: Spark starts at the job
                _deploy_core(cloud)
                _deploy_dataset(cloud, INGEST_DATASET)
                cold.append(_ingest(cloud, source))
                log(f"cold round {n}/{rounds}: first ingest on a fresh runtime {cold[-1]:.2f} s")
    details.update(ingest_first_on_metadata_cloud_s=first, ingest_warm_s=warm, ingest_cold_s=cold)
    lines.append(Line(
        GROUP, f"edl-api ingest --wait of {details['csv_bytes']} bytes, warm runtime "
        f"(median of {len(warm)})", median(warm), INGEST_RATIO, baseline=median(cold),
        baseline_name=f"the same ingest with a cold Spark start (median of {len(cold)})",
        runs={"warm": warm, "cold": cold}))
    return lines, details


if __name__ == "__main__":
    import sys

    from bench.__main__ import main

    sys.exit(main(["api", *sys.argv[1:]]))
