"""The Lambda runner's triggers on moto in-process: schedules queue one invocation (or pipeline
run) per due time, never twice, never for times before the runtime started; a complete update
queues one invocation per watching project, never twice; the job runner leaves Lambda items to
the Lambda runner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3

from edl.local.jobs_table import JobsTable
from edl.local.lambda_runner import LambdaRunner
from edl.naming import table_name
from edl.utils.lambdas import LambdaStore, invocation_item
from edl.utils.pipelines import PipelineStore, queue_run
from tests.functional.ingest_helpers import REGION, create_metadata_tables

START = datetime(2026, 12, 2, 9, 58, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def world(create: bool = True):
    if create:
        create_metadata_tables(boto3.client("dynamodb", region_name=REGION))
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    jobs = JobsTable(dynamodb.Table(table_name("local", "jobs")))
    lambdas = LambdaStore(dynamodb.Table(table_name("local", "lambdas")), "local")
    pipelines = PipelineStore(dynamodb.Table(table_name("local", "pipelines")), "local")
    base = {"function_name": "edl-local-x", "deployed_at": "2026-12-01T00:00:00+00:00",
            "watches": [], "schedule": ""}
    lambdas.put({**base, "name": "every_five", "function_name": "edl-local-every_five",
                 "trigger": "schedule", "schedule": "rate(5 minutes)"})
    lambdas.put({**base, "name": "at_ten", "trigger": "schedule",
                 "schedule": "cron(0 10 * * ? *)"})
    lambdas.put({**base, "name": "on_visits", "trigger": "on_update", "watches": ["visits"]})
    lambdas.put({**base, "name": "by_hand", "trigger": "none"})
    pipelines.put({"pipeline": "nightly", "trigger": "schedule", "schedule": "cron(5 10 * * ? *)",
                   "inputs": [], "outputs": [], "deployed_at": "2026-12-01T00:00:00+00:00"})
    clock = Clock(START)
    runner = LambdaRunner(jobs=lambda: jobs, lambdas=lambda: lambdas,
                          pipelines=lambda: pipelines, credentials=lambda *a: {},
                          package=lambda url: None, account_id="123456789012", region=REGION,
                          endpoint_url=lambda: "http://127.0.0.1:1", now=clock)
    return runner, clock, jobs


def test_schedules_queue_each_due_time_once(aws):
    runner, clock, jobs = world()
    assert runner.queue_due() == []            # nothing is due at the start: no making up
    clock.now = START + timedelta(minutes=7)   # 10:05:30
    due = runner.queue_due()
    assert sorted(due) == ["lambda-at_ten-at-20261202T1000",
                           "lambda-every_five-at-20261202T1000",
                           "lambda-every_five-at-20261202T1005",
                           "pipeline-nightly-at-20261202T1005"]
    assert runner.queue_due() == []            # the same times again: nothing new
    item = jobs.table.get_item(Key={"job_id": "lambda-at_ten-at-20261202T1000"})["Item"]
    assert (item["type"], item["status"], item["trigger"]) == \
        ("lambda", "queued", "schedule cron(0 10 * * ? *)")
    event = json.loads(item["event"])
    assert (event["source"], event["detail-type"], event["time"]) == \
        ("aws.events", "Scheduled Event", "2026-12-02T10:00:00Z")
    run = jobs.table.get_item(Key={"job_id": "pipeline-nightly-at-20261202T1005"})["Item"]
    assert (run["type"], run["pipeline"]) == ("pipeline", "nightly")

    # Another runner (a restarted runtime) that looks at the same times queues nothing twice.
    again, again_clock, _ = world(create=False)
    again._started_at = START
    again_clock.now = clock.now
    assert again.queue_due() == []


def test_a_complete_update_invokes_each_watching_project_once(aws):
    runner, _, jobs = world()
    [job_id] = runner.on_updates([("visits", "0000000004", 12)])
    assert runner.on_updates([("visits", "0000000004", 12)]) == []
    assert runner.on_updates([("sites", "0000000001", 1)]) == []
    item = jobs.table.get_item(Key={"job_id": job_id})["Item"]
    assert item["lambda"] == "on_visits"
    event = json.loads(item["event"])
    assert (event["source"], event["detail-type"]) == ("edl.lake", "EDL Update Complete")
    assert event["detail"] == {"instance": "local", "dataset": "visits",
                               "update_id": "0000000004", "kind": "", "rows": 12}


def test_the_job_runner_leaves_lambda_items_alone(aws):
    from edl.local.job_runner import JobRunner

    _, _, jobs = world()
    queue_run(jobs.table, invocation_item("by_hand", {"x": 1}))
    ran: list = []
    runner = JobRunner(jobs=lambda: jobs, lake=lambda: None, warm_up=False,
                       job_factory=lambda *a: ran.append(a), clock=lambda: 1.0)
    runner._swept_at = 1.0   # no sweep due
    assert runner.run_once() is False
    [item] = jobs.queued()
    assert item["status"] == "queued" and ran == []
