"""`POST /pipelines/{pipeline}/runs` over moto's tables: who may start a run (the platform admin,
or whoever may write every output), what a run queues (locally) or starts (Glue, in the cloud),
how `GET /jobs/{job_id}` follows it, and each refusal - its status and message, nothing queued,
and the decision in the audit log under the outputs it is about."""

from __future__ import annotations

import json
import time

import pytest

from edl.core_resources.rest_api import grants, jobs, pipelines
from edl.utils.audit import LAKE_SUBJECT
from tests.functional.rest_api_helpers import ADMIN_ARN, LOCAL, call, event, user_arn

BOB, ALICE = user_arn("bob"), user_arn("alice")
PIPELINE = "visits_by_site"
JOB_NAME = f"edl-{LOCAL.name}-pipeline-{PIPELINE}"
# The outputs: one internal (read by everyone, written through a grant), one restricted.
OUTPUTS = {"site_counts": "internal", "site_costs": "restricted"}


def registration(name: str = PIPELINE) -> dict:
    """What `edl deploy-pipeline` registers (edl/installed_scripts/commands/pipelines.py)."""
    config = {"name": name, "kind": "pyspark", "description": "",
              "inputs": {"visits": {"dataset": "visits"}, "sites": {"dataset": "sites"}},
              "outputs": {alias: {"dataset": alias, "kind": "snapshot"} for alias in OUTPUTS},
              "trigger": "manual", "checks": {}, "params": {}}
    return {"pipeline": name, "kind": "pyspark", "trigger": "manual", "schedule": "",
            "description": "", "inputs": ["sites", "visits"], "outputs": sorted(OUTPUTS),
            "config": json.dumps(config, sort_keys=True), "code_hash": "0" * 64,
            "package": f"s3://artifacts/pipelines/{name}/{'0' * 64}.zip",
            "job_name": f"edl-{LOCAL.name}-pipeline-{name}",
            "role_arn": f"arn:aws:iam::{LOCAL.account_id}:role/edl-{LOCAL.name}-pl-{name}",
            "deployed_at": "2026-01-05T10:00:00+00:00"}


@pytest.fixture
def world(api_lake):
    for name in ("visits", "sites"):
        api_lake.add_dataset(name, owner="alice", tier="internal")
    for name, tier in OUTPUTS.items():
        api_lake.add_dataset(name, owner="alice", tier=tier)
    for user in ("alice", "bob"):
        api_lake.add_user(user)
    api_lake.metadata.table("pipelines").put_item(Item=registration())
    return api_lake


def give(dataset: str, level: str, grantee: str = BOB, **body) -> str:
    """An active grant, made by the dataset's owner (active at once); its id."""
    status, made = call(grants.request_grant, event(
        "request_grant", user="alice", path={"dataset": dataset},
        body={"level": level, "grantee": grantee, **body}))
    assert status == 201 and made["state"] == "active", made
    return made["grant_id"]


def start(*, user: str | None = "bob", arn: str | None = None, pipeline: str = PIPELINE,
          body: dict | None = None) -> tuple[int, dict]:
    return call(pipelines.start_pipeline_run, event(
        "start_pipeline_run", user=None if arn else user, arn=arn,
        path={"pipeline": pipeline}, body=body))


def new_events(lake, dataset: str, before: set[str]) -> list[dict]:
    return [e for e in lake.audit_events(dataset) if e["event_id"] not in before]


def event_ids(lake, *datasets: str) -> dict[str, set[str]]:
    return {d: {e["event_id"] for e in lake.audit_events(d)} for d in datasets}


# -- who may start a run ------------------------------------------------------------------------

def test_the_platform_admin_starts_a_run_which_is_queued_and_audited_per_output(world):
    before = event_ids(world, *OUTPUTS)
    status, body = start(arn=ADMIN_ARN, body={"as_of": {"visits": "4"}})

    assert status == 202, body
    assert set(body) == {"job_id", "pipeline", "status"}
    assert (body["pipeline"], body["status"]) == (PIPELINE, "queued")
    (item,) = world.jobs()
    assert item["job_id"] == body["job_id"] and body["job_id"].startswith(f"pipeline-{PIPELINE}-")
    assert (item["type"], item["status"], item["requested_by"]) == ("pipeline", "queued",
                                                                    ADMIN_ARN)
    assert item["job_name"] == JOB_NAME
    assert item["arguments"] == {"--pipeline": PIPELINE, "--job-id": body["job_id"],
                                 "--requested-by": ADMIN_ARN,
                                 "--as-of": ["visits=0000000004"]}
    for dataset in OUTPUTS:
        (run,) = new_events(world, dataset, before[dataset])
        assert (run["action"], run["decision"], run["actor"]) == ("run", "allowed", ADMIN_ARN)
        assert run["level"] == "write"
        assert run["detail"] == {"pipeline": PIPELINE, "job_id": body["job_id"],
                                 "basis": "admin", "as_of": {"visits": "0000000004"}}


def test_a_holder_of_write_on_every_output_starts_a_run(world):
    granted = {dataset: give(dataset, "write") for dataset in OUTPUTS}
    before = event_ids(world, *OUTPUTS)

    status, body = start()   # no body: every input as of its newest update

    assert status == 202, body
    (item,) = world.jobs()
    assert item["requested_by"] == BOB and "--as-of" not in item["arguments"]
    for dataset, grant_id in granted.items():
        (run,) = new_events(world, dataset, before[dataset])
        assert (run["action"], run["actor"], run["grant_id"]) == ("run", BOB, grant_id)
        assert run["detail"]["basis"] == "grant"


def test_the_owner_of_every_output_needs_no_grant(world):
    before = event_ids(world, *OUTPUTS)
    status, _ = start(user="alice")
    assert status == 202
    assert [e["detail"]["basis"] for d in OUTPUTS for e in new_events(world, d, before[d])] \
        == ["owner", "owner"]


def test_write_on_one_output_of_two_is_refused_naming_the_other(world):
    give("site_counts", "write")
    before = event_ids(world, *OUTPUTS)

    status, body = start()

    assert (status, body["error"]["code"]) == (403, "no_write")
    message = body["error"]["message"]
    assert "may not write site_costs;" in message
    assert "edl-api grant request site_costs --level write" in message
    assert "grant request site_counts" not in message
    assert world.jobs() == []
    (refusal,) = new_events(world, "site_costs", before["site_costs"])
    assert (refusal["action"], refusal["decision"], refusal["actor"]) == ("refuse", "refused",
                                                                          BOB)
    assert refusal["reason"] == message
    assert refusal["detail"] == {"tried": "start_pipeline_run", "status": 403,
                                 "code": "no_write"}
    assert new_events(world, "site_counts", before["site_counts"]) == []


def test_read_grants_and_the_internal_tiers_default_read_give_no_run(world):
    give("site_costs", "read")
    before = event_ids(world, *OUTPUTS)
    status, body = start()
    assert (status, body["error"]["code"]) == (403, "no_write")
    assert "may not write site_costs, site_counts;" in body["error"]["message"]
    assert world.jobs() == []
    for dataset in OUTPUTS:
        assert [e["action"] for e in new_events(world, dataset, before[dataset])] == ["refuse"]


def test_an_expired_write_grant_gives_no_run(world):
    for dataset in OUTPUTS:
        give(dataset, "write", duration="1d")
    world.api.now = lambda: time.time() + 2 * 86400
    status, body = start()
    assert (status, body["error"]["code"]) == (403, "no_write")
    assert world.jobs() == []


# -- bad requests -------------------------------------------------------------------------------

def test_an_unknown_pipeline_is_404_and_audited(world):
    before = {e["event_id"] for e in world.audit_events(LAKE_SUBJECT)}
    status, body = start(arn=ADMIN_ARN, pipeline="no_such_pipeline")
    assert (status, body["error"]["code"]) == (404, "unknown_pipeline")
    assert "no_such_pipeline" in body["error"]["message"]
    assert world.jobs() == []
    (refusal,) = [e for e in world.audit_events(LAKE_SUBJECT) if e["event_id"] not in before]
    assert refusal["detail"]["code"] == "unknown_pipeline"


@pytest.mark.parametrize("as_of, code, words", [
    ({"clicks": "3"}, "unknown_input", ("as_of names clicks", "its inputs: sites, visits")),
    ({"visits": "latest"}, "bad_request", ("visits",)),
    ({"visits": 3}, "bad_request", ("visits",)),
    (["visits=3"], "bad_request", ("JSON object",)),
])
def test_a_bad_as_of_is_400_and_queues_nothing(world, as_of, code, words):
    status, body = start(arn=ADMIN_ARN, body={"as_of": as_of})
    assert (status, body["error"]["code"]) == (400, code), body
    for word in words:
        assert word in body["error"]["message"]
    assert world.jobs() == []


def test_an_invalid_pipeline_name_is_400(world):
    status, _ = start(arn=ADMIN_ARN, pipeline="Bad-Name")
    assert status == 400


# -- following the run, and the cloud ---------------------------------------------------------

def test_the_run_is_followed_at_jobs(world):
    _, started = start(arn=ADMIN_ARN)
    world.metadata.table("jobs").update_item(
        Key={"job_id": started["job_id"]},
        UpdateExpression="SET #s = :s, outputs = :o, run_id = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "succeeded", ":r": "run-1", ":o": {
            "site_counts": {"dataset": "site_counts", "update_id": "0000000001", "rows": 3}}})
    status, job = call(jobs.get_job, event("get_job", path={"job_id": started["job_id"]}))
    assert status == 200
    assert (job["pipeline"], job["status"], job["run_id"]) == (PIPELINE, "succeeded", "run-1")
    assert job["outputs"]["site_counts"] == {"dataset": "site_counts",
                                             "update_id": "0000000001", "rows": 3}
    assert "update_id" not in job


class Glue:
    """The pipeline's Glue job as the handlers see it."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.started: list[dict] = []

    def start_job_run(self, JobName, Arguments):
        if self.refuse:
            from botocore.exceptions import ClientError
            raise ClientError({"Error": {"Code": "ConcurrentRunsExceededException",
                                         "Message": "too many"}}, "StartJobRun")
        self.started.append({"JobName": JobName, "Arguments": Arguments})
        return {"JobRunId": "jr_7"}

    def get_job_run(self, JobName, RunId):
        assert (JobName, RunId) == (JOB_NAME, "jr_7")
        return {"JobRun": {"JobRunState": "RUNNING"}}


def test_in_the_cloud_the_pipelines_glue_job_is_started_and_read(world):
    world.lake.is_local = False
    glue = world.overrides["glue"] = Glue()
    status, body = start(arn=ADMIN_ARN, body={"as_of": {"visits": "4", "sites": "0000000002"}})
    assert status == 202, body
    (run,) = glue.started
    assert run == {"JobName": JOB_NAME, "Arguments": {
        "--job-id": body["job_id"], "--requested-by": ADMIN_ARN,
        "--as-of": "sites=0000000002,visits=0000000004"}}
    (item,) = world.jobs()
    assert item["glue_run_id"] == "jr_7"
    status, job = call(jobs.get_job, event("get_job", path={"job_id": body["job_id"]}))
    assert (status, job["status"]) == (200, "running")


def test_when_glue_refuses_the_run_fails_and_the_answer_is_503(world):
    world.lake.is_local = False
    world.overrides["glue"] = Glue(refuse=True)
    status, _ = start(arn=ADMIN_ARN)
    assert status == 503
    (item,) = world.jobs()
    assert item["status"] == "failed" and "ConcurrentRunsExceeded" in item["error"]
