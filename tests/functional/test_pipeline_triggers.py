"""on_update triggers: one run per pipeline per complete input update, never twice."""

from __future__ import annotations

import boto3

from edl.naming import table_name
from edl.utils.pipelines import PipelineStore, queue_triggered_runs, run_job_item
from tests.functional.ingest_helpers import REGION, create_metadata_tables


def tables():
    create_metadata_tables(boto3.client("dynamodb", region_name=REGION))
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    store = PipelineStore(dynamodb.Table(table_name("local", "pipelines")), "local")
    for name, trigger, inputs in (("by_site", "on_update", ["visits"]),
                                  ("by_day", "on_update", ["visits", "sites"]),
                                  ("by_hand", "manual", ["visits"]),
                                  ("elsewhere", "on_update", ["sites"])):
        store.put({"pipeline": name, "trigger": trigger, "inputs": inputs, "outputs": []})
    return store, dynamodb.Table(table_name("local", "jobs"))


def test_a_complete_update_queues_each_on_update_reader_once(aws):
    store, jobs = tables()
    first = queue_triggered_runs(store, jobs, "visits", "0000000003")
    assert sorted(j.split("-on-")[0] for j in first) == ["pipeline-by_day", "pipeline-by_site"]
    assert queue_triggered_runs(store, jobs, "visits", "0000000003") == []   # never twice
    assert len(queue_triggered_runs(store, jobs, "visits", "0000000004")) == 2
    item = jobs.get_item(Key={"job_id": first[0]})["Item"]
    assert (item["status"], item["type"]) == ("queued", "pipeline")
    assert item["trigger"] == "on_update visits 0000000003"


def test_a_pipelines_own_output_does_not_start_it_again(aws):
    store, jobs = tables()
    store.put({"pipeline": "loop", "trigger": "on_update", "inputs": ["loop_out"],
               "outputs": ["loop_out"]})
    assert queue_triggered_runs(store, jobs, "loop_out", "0000000001", produced_by="loop") == []


def test_a_manual_run_item_carries_its_as_of_for_the_wrapper():
    item = run_job_item("by_site", as_of={"visits": "3", "sites": "1"}, requested_by="admin")
    assert item["arguments"]["--as-of"] == ["sites=1", "visits=3"]
    assert item["arguments"]["--job-id"] == item["job_id"]
    assert item["job_id"].startswith("pipeline-by_site-")
