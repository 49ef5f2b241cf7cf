"""Benchmark 6: the local cloud keeps its data (issue 8), at what cost.

1. Write overhead. A ~1 KB CSV through `edl-api ingest DATASET --source FILE --kind snapshot
   --wait --profile alice --instance local` (a subprocess, as a user runs it) on a warm runtime
   whose lake is kept (every write journaled and fsync'd before it is answered): the median of
   `WARM_INGESTS` ingests is at most 1.3x the median of the same ingests on a warm `--ephemeral`
   runtime, measured in the same run (core and dataset deployed on both, one ingest first on
   each to warm its Spark).

2. Start-up of a big lake. `edl local start` of a kept lake holding 10,000 S3 objects (1 KB,
   written with put_object) and 10,000 DynamoDB items (batch_write_item), after a clean stop,
   is at most 3x a fresh `edl local start` (an empty state folder: bootstrap included) - the
   median of `--rounds` of each. The start after a SIGKILL (the journal since the last snapshot
   replayed) is shown as information.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import BIN, EDL, LOCAL, BenchError, Line, LocalCloud, log, median, run

GROUP = "state"
USER = "alice"
DATASET = "bench_state_ingest"
WARM_INGESTS = 5
WRITE_RATIO = 1.3
START_RATIO = 3.0
OBJECTS = 10_000
ITEMS = 10_000
EDL_API = BIN / "edl-api"


def _csv_file(folder: Path) -> Path:
    rows = ["id,site,score"]
    n = 0
    while sum(len(r) + 1 for r in rows) < 1000:
        n += 1
        rows.append(f"{n},site_{n % 7},{n * 1.25:.2f}")
    path = folder / "sites.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _ingests(cloud: LocalCloud, source: Path) -> list[float]:
    for command in (("deploy-core",), ("deploy-dataset", DATASET, "--tier", "internal",
                                       "--owner", USER)):
        run([EDL, *command, "--instance", LOCAL], cloud.env())
    timed = []
    for n in range(WARM_INGESTS + 1):  # the first starts the job runner's Spark: not timed
        seconds, _ = run([EDL_API, "ingest", DATASET, "--source", source, "--kind", "snapshot",
                          "--wait", "--profile", USER, "--instance", LOCAL], cloud.env(),
                         timeout=300)
        if n:
            timed.append(seconds)
    return timed


def _write_overhead(details: dict[str, Any]) -> Line:
    with tempfile.TemporaryDirectory(prefix="edl-bench-state-data-") as folder:
        source = _csv_file(Path(folder))
        runs = {}
        for label, persistent in (("kept", True), ("ephemeral", False)):
            with LocalCloud(f"{GROUP}-{label}", persistent=persistent) as cloud:
                cloud.start(spark=True)
                runs[label] = _ingests(cloud, source)
            log(f"ingest on a warm {label} lake: {', '.join(f'{s:.2f}' for s in runs[label])} s")
    details["ingest_s"] = runs
    return Line(GROUP, f"edl-api ingest --wait of ~1 KB, warm runtime, lake kept (median of "
                f"{WARM_INGESTS})", median(runs["kept"]), WRITE_RATIO,
                baseline=median(runs["ephemeral"]),
                baseline_name="the same on an --ephemeral runtime", runs=runs)


def _fill(cloud: LocalCloud) -> float:
    """10,000 objects and 10,000 items, written as the CloudFormation role."""
    import boto3

    credentials = cloud.role_credentials()
    kwargs = dict(endpoint_url=cloud.endpoint, region_name=cloud.instance.default_region,
                  **credentials)
    s3 = boto3.client("s3", **kwargs)
    dynamodb = boto3.resource("dynamodb", **kwargs)
    started = time.perf_counter()
    s3.create_bucket(Bucket="bench-state-objects")
    body = b"x" * 1024
    for n in range(OBJECTS):
        s3.put_object(Bucket="bench-state-objects", Key=f"objects/{n:05d}.bin",
                      Body=body[:-8] + f"{n:08d}".encode())
    table = dynamodb.create_table(
        TableName="bench-state-items", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    with table.batch_writer() as batch:
        for n in range(ITEMS):
            batch.put_item(Item={"id": f"item-{n:05d}", "n": n, "payload": "y" * 100})
    return time.perf_counter() - started


def _check_filled(cloud: LocalCloud, objects: int = OBJECTS) -> None:
    """The reopened lake holds what was written: every object and every item."""
    import boto3

    kwargs = dict(endpoint_url=cloud.endpoint, region_name=cloud.instance.default_region,
                  **cloud.role_credentials())
    pages = boto3.client("s3", **kwargs).get_paginator("list_objects_v2").paginate(
        Bucket="bench-state-objects")
    found_objects = sum(page.get("KeyCount", 0) for page in pages)
    scans = boto3.client("dynamodb", **kwargs).get_paginator("scan").paginate(
        TableName="bench-state-items", Select="COUNT")
    found_items = sum(page["Count"] for page in scans)
    if (found_objects, found_items) != (objects, ITEMS):
        raise BenchError(f"the reopened lake holds {found_objects} objects and {found_items} "
                         f"items, expected {objects} and {ITEMS}")


def _kill() -> None:
    from edl.local import control

    pid = control.status().pid
    if pid is None:
        raise BenchError("no runtime to kill")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while control.status().pid is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def _start_up(rounds: int, details: dict[str, Any]) -> list[Line]:
    from edl import paths

    fresh, reopened = [], []
    with LocalCloud(f"{GROUP}-start", persistent=True) as cloud:
        for _ in range(rounds):
            fresh.append(cloud.start(warm=False))
            log(f"fresh start in {fresh[-1]:.2f} s")
            cloud.stop()
            shutil.rmtree(paths.local_state_dir())  # the next start is fresh again
        cloud.start(warm=False)
        details["fill_s"] = _fill(cloud)
        log(f"wrote {OBJECTS} objects and {ITEMS} items in {details['fill_s']:.1f} s")
        cloud.stop()
        for _ in range(rounds):
            reopened.append(cloud.start(warm=False))
            log(f"reopened the lake in {reopened[-1]:.2f} s")
            _check_filled(cloud)
            cloud.stop()
        cloud.start(warm=False)
        _write_after_snapshot(cloud)
        _kill()
        after_kill = cloud.start(warm=False)
        _check_filled(cloud, OBJECTS + 1)
    log(f"fresh start {', '.join(f'{s:.2f}' for s in fresh)} s; reopened "
        f"{', '.join(f'{s:.2f}' for s in reopened)} s; after a kill {after_kill:.2f} s")
    details.update(fresh_start_s=fresh, reopen_start_s=reopened, start_after_kill_s=after_kill)
    return [
        Line(GROUP, f"edl local start of a kept lake with {OBJECTS:,} objects and {ITEMS:,} "
             f"items (median of {rounds})", median(reopened), START_RATIO,
             baseline=median(fresh), baseline_name="a fresh edl local start",
             runs={"reopened": reopened, "fresh": fresh}),
        Line(GROUP, "seconds of the same start after a SIGKILL (journal replayed)",
             after_kill, None, kind="count"),
    ]


def _write_after_snapshot(cloud: LocalCloud) -> None:
    """One acknowledged write after the last snapshot, so the start after the kill replays."""
    import boto3

    boto3.client("s3", endpoint_url=cloud.endpoint, region_name=cloud.instance.default_region,
                 **cloud.role_credentials()).put_object(
        Bucket="bench-state-objects", Key="objects/after-snapshot.bin", Body=b"z")


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    details: dict[str, Any] = {}
    lines = _start_up(rounds, details)
    lines.insert(0, _write_overhead(details))
    return lines, details


if __name__ == "__main__":
    import sys

    from bench.__main__ import main

    sys.exit(main([GROUP, *sys.argv[1:]]))
