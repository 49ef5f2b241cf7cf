"""The local job runner: queued job items in the jobs table run as the real ingest job.

moto runs as a server on 127.0.0.1 (Spark's workers are separate processes); the lake has the
metadata tables and the `clinical_trials` dataset (`ingest_helpers.lake`). The runner gets the
session's Spark, which it must not stop.
"""

from __future__ import annotations

import time
from typing import ClassVar

import pytest

from edl.local.job_runner import JobRunner
from edl.local.jobs_table import FAILED, QUEUED, RUNNING, SUCCEEDED, JobsTable
from edl.utils import lake as lakeapi
from edl.utils.sweep import Sweeper
from edl.utils.updates import UpdateRecord
from tests.functional.ingest_helpers import DATASET

CSV = b"id,name,score\n1,ann,1.5\n2,bob,2\n"


@pytest.fixture
def jobs(lake) -> JobsTable:
    return JobsTable(lake.context.metadata.table("jobs"))


def runner_for(lake, spark, jobs: JobsTable, **kwargs) -> JobRunner:
    return JobRunner(jobs=lambda: jobs, lake=lambda: lake.context, spark=lambda: spark,
                     owns_spark=False, warm_up=False, **kwargs)


def queue_ingest(lake, jobs: JobsTable, job_id: str, source: str, *, created_at: str = "1",
                 **arguments: str) -> UpdateRecord:
    """What the ingest endpoint does on the local cloud: a pending update and a queued job."""
    update = lake.context.updates.allocate_update(DATASET, "snapshot", source, lake.data_bucket,
                                                  requested_by="alice", job_id=job_id)
    jobs.table.put_item(Item={
        "job_id": job_id, "status": QUEUED, "type": "ingest", "created_at": created_at,
        "arguments": {"--dataset": DATASET, "--source": source, "--kind": "snapshot",
                      "--update": update.update_id, "--requested-by": "alice", **arguments}})
    return update


def item(jobs: JobsTable, job_id: str) -> dict:
    return jobs.table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]


def test_a_queued_ingest_runs_and_succeeds(lake, spark, jobs):
    source = lake.put("batch1/sites.csv", CSV)
    update = queue_ingest(lake, jobs, "ingest-0123456789ab", source)

    assert runner_for(lake, spark, jobs).run_once() is True

    done = item(jobs, "ingest-0123456789ab")
    assert done["status"] == SUCCEEDED
    assert (done["update_id"], done["rows"], done["files"]) == (update.update_id, 2, 1)
    assert done["started_at"] <= done["finished_at"] and done["duration_seconds"] > 0
    assert "error" not in done
    record = lake.context.updates.get_update(DATASET, update.update_id)
    assert (record.status, record.rows, record.job_id) == ("complete", 2, "ingest-0123456789ab")
    assert lake.keys(f"{DATASET}/data/{update.update_id}/") == [
        f"{DATASET}/data/{update.update_id}/_edl_manifest.json",
        f"{DATASET}/data/{update.update_id}/part-00000.parquet"]


def test_a_failing_ingest_is_failed_with_the_reason(lake, spark, jobs):
    source = f"s3://{lake.drop_bucket}/nothing/here.csv"
    update = queue_ingest(lake, jobs, "ingest-0000000000aa", source)

    assert runner_for(lake, spark, jobs).run_once() is True

    failed = item(jobs, "ingest-0000000000aa")
    assert failed["status"] == FAILED
    assert failed["update_id"] == update.update_id
    assert "nothing/here.csv" in failed["error"]
    assert lake.context.updates.get_update(DATASET, update.update_id).status == "failed"


def test_csv_options_reach_the_job(lake, spark, jobs):
    source = lake.put("batch2/semi.csv", b"id;name\n1;ann\n")
    update = queue_ingest(lake, jobs, "ingest-0000000000bb", source, **{"--delimiter": ";"})

    runner_for(lake, spark, jobs).run_once()

    assert item(jobs, "ingest-0000000000bb")["status"] == SUCCEEDED
    record = lake.context.updates.get_update(DATASET, update.update_id)
    assert [c["name"] for c in record.columns] == ["id", "name"]


class _StubJob:
    """Stands in for IngestJob: records the requests, in order."""

    runs: ClassVar[list] = []

    def __init__(self, spark, context) -> None:
        pass

    def run(self, request):
        _StubJob.runs.append(request)
        return UpdateRecord(dataset=request.dataset, update_id=request.update_id, kind="snapshot",
                            status="complete", source=request.source, bucket="b", rows=1,
                            file_count=1)


def test_jobs_run_oldest_first_and_a_running_job_is_not_taken_again(lake, jobs):
    _StubJob.runs = []
    for job_id, created in (("ingest-00000000000b", "2"), ("ingest-00000000000a", "1")):
        jobs.table.put_item(Item={"job_id": job_id, "status": QUEUED, "created_at": created,
                                  "dataset": DATASET, "source": "s3://drop/x.csv",
                                  "update_id": "0000000001", "options": {"header": False}})
    runner = JobRunner(jobs=lambda: jobs, lake=lambda: lake.context, spark=lambda: None,
                       job_factory=_StubJob, warm_up=False)
    jobs.table.put_item(Item={"job_id": "ingest-00000000000c", "status": RUNNING,
                              "created_at": "0", "dataset": DATASET, "source": "s3://drop/y",
                              "runner_id": runner.runner_id})

    assert [runner.run_once() for _ in range(3)] == [True, True, False]

    assert [r.job_id for r in _StubJob.runs] == ["ingest-00000000000a", "ingest-00000000000b"]
    assert _StubJob.runs[0].options.header is False
    assert item(jobs, "ingest-00000000000c")["status"] == RUNNING


def test_the_service_thread_runs_a_job_it_is_woken_for(lake, spark, jobs):
    runner = runner_for(lake, spark, jobs, poll_seconds=30)
    runner.start()
    try:
        source = lake.put("batch3/sites.csv", CSV)
        queue_ingest(lake, jobs, "ingest-0000000000cc", source)
        runner.wake()
        deadline = time.monotonic() + 60
        while item(jobs, "ingest-0000000000cc")["status"] in (QUEUED, RUNNING):
            assert time.monotonic() < deadline, "the job did not finish within 60 s"
            time.sleep(0.1)
    finally:
        runner.stop()
    done = item(jobs, "ingest-0000000000cc")
    assert done["status"] == SUCCEEDED, done.get("error")
    assert runner.status()["finished"] == 1
    assert not spark.sparkContext._jsc.sc().isStopped()  # the runner did not own it


def test_a_job_left_running_by_a_dead_runner_is_failed_at_start_and_a_rerun_succeeds(
        lake, spark, jobs):
    source = lake.put("batch4/sites.csv", CSV)
    update = queue_ingest(lake, jobs, "ingest-0000000000dd", source)
    # what a runtime killed mid-ingest leaves: the job running, its update claimed, files staged
    jobs.claim("ingest-0000000000dd", "runner-of-a-dead-runtime")
    lake.context.updates.claim_update(DATASET, update.update_id, "ingest-0000000000dd")
    staged = f"_edl_staging/{DATASET}/{update.update_id}/raw/sites.csv"
    lake.s3.put_object(Bucket=lake.data_bucket, Key=staged, Body=CSV)
    runner = runner_for(lake, spark, jobs, sweeper=lambda: Sweeper(lake.context))

    assert runner.run_once() is False

    job = item(jobs, "ingest-0000000000dd")
    assert job["status"] == FAILED and "its runner stopped while it ran" in job["error"]
    record = lake.context.updates.get_update(DATASET, update.update_id)
    assert record.status == "failed" and "its runner stopped" in record.reason
    assert lake.keys("_edl_staging/") == [] and lake.keys(f"{DATASET}/") == []
    with pytest.raises(lakeapi.NoDataError):
        lakeapi.read(spark, DATASET)

    rerun = queue_ingest(lake, jobs, "ingest-0000000000ee", source)
    assert runner.run_once() is True
    assert item(jobs, "ingest-0000000000ee")["status"] == SUCCEEDED
    assert lake.context.updates.get_update(DATASET, rerun.update_id).status == "complete"
    assert item(jobs, "ingest-0000000000dd")["status"] == FAILED


class _CountingSweeper:
    def __init__(self) -> None:
        self.sweeps = 0

    def abandon_job(self, job_id, reason):
        return []

    def sweep(self):
        self.sweeps += 1


def test_the_runner_sweeps_at_start_and_then_every_interval(lake, jobs):
    now = [0.0]
    sweeper = _CountingSweeper()
    runner = JobRunner(jobs=lambda: jobs, lake=lambda: lake.context, spark=lambda: None,
                       warm_up=False, clock=lambda: now[0], sweeper=lambda: sweeper,
                       sweep_seconds=30)
    counts = []
    for t in (0, 10, 29, 30, 45, 61):
        now[0] = t
        runner.run_once()
        counts.append(sweeper.sweeps)
    assert counts == [1, 1, 1, 2, 2, 3]


def test_a_job_whose_runner_process_is_alive_is_left_running(lake, jobs):
    import os
    import socket

    jobs.table.put_item(Item={"job_id": "ingest-0000000000ff", "status": RUNNING,
                              "created_at": "0", "dataset": DATASET, "source": "s3://drop/y",
                              "runner_id": f"{socket.gethostname()}:{os.getpid()}:another"})
    runner = JobRunner(jobs=lambda: jobs, lake=lambda: lake.context, spark=lambda: None,
                       warm_up=False)
    assert runner.sweep() == []
    assert item(jobs, "ingest-0000000000ff")["status"] == RUNNING
