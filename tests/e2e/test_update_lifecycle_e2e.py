"""Updates on the real local cloud when ingests die or race (issue #7 §4).

Killed mid-ingest: the ingest job runs as its own process (as a Glue job run does), recorded in
the jobs table as running under that process, and is SIGKILLed once it has staged files. What
"start it again" means here: the local cloud keeps no state across a restart yet (issue #8), so
the runtime is not restarted; its job runner, which sweeps at start and every 30 s, finds the job's
runner gone and fails the job and its update - the same code that runs at a restart. Once the
local cloud persists, this test can SIGKILL the runtime itself and start it again.

Ten concurrent ingests into one dataset run in this process on the session's Spark, as the
ingest job role: ten distinct ids, all complete, and every "as of" read made during the run
returns the same rows at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from edl.utils import lake
from tests.e2e.helpers import DATA, DROP, client, deploy, ingest_in_process, reader, rows

KILLED, RACED = "e2e_killed", "e2e_raced"
FILES = 40


def keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=DATA, Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def wait_for(condition, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.2)
    return value


def test_an_ingest_killed_mid_way_ends_failed_nothing_readable_and_a_rerun_succeeds(
        local_cloud, spark):
    deploy(KILLED)
    s3 = client(local_cloud, "s3")
    for n in range(FILES):
        s3.put_object(Bucket=DROP, Key=f"killed/f{n:03d}.csv", Body=f"id,val\n{n},v{n}\n".encode())
    job_id = "ingest-e2e-killed01"
    process = subprocess.Popen(
        [sys.executable, "-m", "edl.core_resources.pipelines.ingest", "--instance", "local",
         "--dataset", KILLED, "--source", f"s3://{DROP}/killed/", "--job-id", job_id],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    jobs = client(local_cloud, "dynamodb")
    jobs.put_item(TableName="edl-local-jobs", Item={
        "job_id": {"S": job_id}, "status": {"S": "running"}, "type": {"S": "ingest"},
        "created_at": {"S": "e2e"},
        "runner_id": {"S": f"{socket.gethostname()}:{process.pid}:e2e"}})
    try:
        staged = wait_for(lambda: keys(s3, f"_edl_staging/{KILLED}/"), "the ingest staged files",
                          240)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    [update] = lake.list_updates(KILLED, instance="local")
    assert update.status in ("pending", "failed")      # the runner may have swept it already
    as_reader = reader(KILLED)
    with pytest.raises(ClientError) as denied:         # staging is outside the read role's prefix
        as_reader.s3_access("us-east-1").client().get_object(Bucket=DATA, Key=staged[0])
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(lake.NoDataError):
        lake.read(spark, KILLED, context=as_reader)

    def job_failed():
        item = jobs.get_item(TableName="edl-local-jobs", Key={"job_id": {"S": job_id}},
                             ConsistentRead=True)["Item"]
        return item if item["status"]["S"] == "failed" else None

    job = wait_for(job_failed, "the runtime's sweep failed the job", 90)
    assert "its runner stopped while it ran" in job["error"]["S"]
    swept = lake.get_update(KILLED, update.update_id, instance="local")
    assert swept.status == "failed" and "its runner stopped" in swept.reason
    wait_for(lambda: lake.get_update(KILLED, update.update_id, instance="local").files_removed,
             "its files were removed", 30)
    assert keys(s3, f"_edl_staging/{KILLED}/") == []
    assert keys(s3, f"{KILLED}/") == []

    # The rerun needs no process of its own (only the killed run did): no second Spark JVM.
    assert ingest_in_process(spark, KILLED, f"s3://{DROP}/killed/") == 0
    assert rows(spark, as_reader, KILLED) == [(n, f"v{n}") for n in range(FILES)]


def test_ten_concurrent_ingests_get_distinct_ids_and_reads_as_of_each_are_stable(
        local_cloud, spark):
    deploy(RACED)
    s3 = client(local_cloud, "s3")
    assert ingest_in_process(spark, RACED, _put(s3, "raced/base.csv", b"id,val\n0,base\n")) == 0
    sources = [_put(s3, f"raced/d{n}.csv", f"id,val,op\n{n % 3},d{n},U\n{10 + n},new,I\n"
                    .encode()) for n in range(10)]
    as_reader = reader(RACED)
    seen: dict[str, list[tuple]] = {}

    def ingest_and_read(source: str) -> None:
        assert ingest_in_process(spark, RACED, source, "--kind", "delta") == 0
        newest = lake.list_updates(RACED, instance="local")
        mine = max((u for u in newest if u.source == source), key=lambda u: u.update_id)
        seen[mine.update_id] = rows(spark, as_reader, RACED, as_of=mine.update_id)

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(ingest_and_read, sources))

    updates = lake.list_updates(RACED, instance="local")
    assert len({u.update_id for u in updates}) == 11
    assert all(u.status == "complete" for u in updates)
    assert sorted(u.commit_seq for u in updates) == list(range(1, 12))
    for update_id, then in seen.items():
        assert rows(spark, as_reader, RACED, as_of=update_id) == then, f"as of {update_id}"
    # "as of" follows commit order: each delta's keys 10+n appear exactly from its commit on
    by_commit = sorted(updates[1:], key=lambda u: u.commit_seq)
    for position, update in enumerate(by_commit):
        added = {int(u.source.rsplit("d", 1)[1].split(".")[0]) + 10
                 for u in by_commit[:position + 1]}
        assert {k for k, _ in seen[update.update_id] if k >= 10} == added


def _put(s3, key: str, body: bytes) -> str:
    s3.put_object(Bucket=DROP, Key=key, Body=body)
    return f"s3://{DROP}/{key}"
