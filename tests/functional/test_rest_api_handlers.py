"""The REST API handlers, called with the events API Gateway builds, over moto's tables.

Each bad input of issue 4 gets its JSON error and its status, and changes nothing."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import boto3
import pytest

from edl import naming
from edl.core_resources.rest_api import datasets, ingest, jobs, updates
from tests.functional.rest_api_helpers import (
    ACCOUNT,
    ADMIN_ARN,
    CONFIG,
    LOCAL,
    REGION,
    call,
    event,
    user_arn,
)

PREFIX = CONFIG.bucket_prefix


def drop(tier: str = "internal", region: str = REGION) -> str:
    return naming.drop_bucket(PREFIX, LOCAL.name, tier, region)


# -- datasets ---------------------------------------------------------------------------------

def test_list_datasets_pages_through_every_dataset_once(api_lake):
    names = {f"ds_{i:03d}" for i in range(7)}
    for name in names:
        api_lake.add_dataset(name)
    seen, token, pages = [], None, 0
    while True:
        query = {"limit": "3", **({"next_token": token} if token else {})}
        status, body = call(datasets.list_datasets, event("list_datasets", query=query))
        assert status == 200
        assert len(body["datasets"]) <= 3
        seen += [d["dataset"] for d in body["datasets"]]
        pages += 1
        token = body["next_token"]
        if token is None:
            break
    assert sorted(seen) == sorted(names) and pages == 3


def test_get_dataset_shows_record_and_newest_complete_schema(api_lake):
    api_lake.add_dataset("clinical_trials", owner="bob")
    first = api_lake.updates.allocate_update("clinical_trials", "snapshot", "s3://x/a.csv", "b")
    api_lake.updates.claim_update("clinical_trials", first.update_id, "job-1")
    from dataclasses import replace

    import pyarrow as pa

    from edl.utils.schemas import schema_to_text
    # as the ingest commits it: the Arrow schema, once (no column list, no per-file detail)
    api_lake.updates.complete_update(replace(
        first, rows=3, arrow_schema=schema_to_text(pa.schema([("id", pa.int64())]))))
    api_lake.updates.allocate_update("clinical_trials", "delta", "s3://x/b.csv", "b")  # pending

    status, body = call(datasets.get_dataset,
                        event("get_dataset", user="carol", path={"dataset": "clinical_trials"}))
    assert status == 200
    assert body["owner"] == "bob" and body["tier"] == "internal"
    assert body["updates"] == 2 and body["last_update"] == "0000000002"
    assert body["newest_update"]["update_id"] == "0000000001"
    assert body["newest_update"]["columns"] == [{"name": "id", "type": "int64"}]


def test_unknown_dataset_is_404(api_lake):
    status, body = call(datasets.get_dataset, event("get_dataset", path={"dataset": "nope_nope"}))
    assert status == 404 and body["error"]["code"] == "not_found"
    assert "nope_nope" in body["error"]["message"]
    status, _ = call(updates.list_updates, event("list_updates", path={"dataset": "nope_nope"}))
    assert status == 404


def test_invalid_dataset_name_is_400_before_any_lookup(api_lake):
    status, body = call(datasets.get_dataset, event("get_dataset", path={"dataset": "Bad-Name"}))
    assert status == 400 and body["error"]["code"] == "invalid_name"


# -- updates ----------------------------------------------------------------------------------

def test_list_updates_filters_by_status_and_pages(api_lake):
    api_lake.add_dataset("sales")
    for _ in range(5):
        api_lake.updates.allocate_update("sales", "snapshot", "s3://x/a.csv", "b")
    api_lake.updates.fail_update("sales", "0000000002", "bad file")
    status, body = call(updates.list_updates, event(
        "list_updates", path={"dataset": "sales"}, query={"status": "failed"}))
    assert status == 200 and [u["update_id"] for u in body["updates"]] == ["0000000002"]

    ids, token = [], None
    while True:
        query = {"limit": "2", **({"next_token": token} if token else {})}
        _, body = call(updates.list_updates, event("list_updates", path={"dataset": "sales"},
                                                   query=query))
        ids += [u["update_id"] for u in body["updates"]]
        token = body["next_token"]
        if not token:
            break
    assert ids == [f"{i:010d}" for i in range(1, 6)]


def test_get_update_accepts_short_ids_and_404s_unknown_ones(api_lake):
    api_lake.add_dataset("sales")
    api_lake.updates.allocate_update("sales", "delta", "s3://x/a.csv", "b")
    status, body = call(updates.get_update, event(
        "get_update", path={"dataset": "sales", "update_id": "1"}))
    assert status == 200 and body["update_id"] == "0000000001" and body["status"] == "pending"
    status, body = call(updates.get_update, event(
        "get_update", path={"dataset": "sales", "update_id": "9"}))
    assert status == 404


# -- page tokens ------------------------------------------------------------------------------

def test_tampered_page_token_is_400(api_lake):
    for i in range(3):
        api_lake.add_dataset(f"ds_{i:03d}")
    _, body = call(datasets.list_datasets, event("list_datasets", query={"limit": "1"}))
    token = body["next_token"]
    payload, mac = token.split(".")
    import base64
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded["p"]["dataset"] = "ds_000"
    forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{mac}", token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
                "garbage", token + ".x"):
        status, body = call(datasets.list_datasets,
                            event("list_datasets", query={"next_token": bad}))
        assert (status, body["error"]) == (400, {"code": "invalid_page_token",
                                                 "message": "invalid page token"})


def test_page_token_of_one_listing_is_refused_by_another(api_lake):
    api_lake.add_dataset("aaa_one")
    api_lake.add_dataset("bbb_two")
    for name in ("aaa_one", "bbb_two"):
        for _ in range(2):
            api_lake.updates.allocate_update(name, "snapshot", "s3://x/a", "b")
    _, body = call(updates.list_updates, event("list_updates", path={"dataset": "aaa_one"},
                                               query={"limit": "1"}))
    status, _ = call(updates.list_updates, event(
        "list_updates", path={"dataset": "bbb_two"}, query={"next_token": body["next_token"]}))
    assert status == 400


# -- request validation -----------------------------------------------------------------------

@pytest.mark.parametrize("query, message", [
    ({"limit": "0"}, "at least 1"), ({"limit": "501"}, "at most 500"),
    ({"limit": "ten"}, "integer"), ({"colour": "red"}, "unknown query parameter"),
])
def test_bad_query_is_400(api_lake, query, message):
    status, body = call(datasets.list_datasets, event("list_datasets", query=query))
    assert status == 400 and message in body["error"]["message"]


def test_method_not_in_api_config_is_405(api_lake):
    status, body = call(datasets.list_datasets, event("list_datasets", method="DELETE"))
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("identity", [{}, {"userArn": "alice", "accountId": ACCOUNT},
                                      {"userArn": user_arn("alice"), "accountId": "999999999999"}])
def test_unsigned_or_inconsistent_identity_is_403(api_lake, identity):
    ev = event("list_datasets")
    ev["requestContext"]["identity"] = identity
    status, body = call(datasets.list_datasets, ev)
    assert status == 403 and body["error"]["code"] == "unsigned"


def test_caller_of_another_account_is_403(api_lake):
    status, _ = call(datasets.list_datasets,
                     event("list_datasets", arn="arn:aws:iam::999999999999:user/mallory"))
    assert status == 403


# -- ingest: bad input ------------------------------------------------------------------------

def _ingest(api_lake, body=None, *, user="alice", raw_body=None, dataset="sales"):
    return call(ingest.start_ingest, event("start_ingest", user=user, path={"dataset": dataset},
                                           body=body, raw_body=raw_body))


def _nothing_changed(api_lake):
    assert api_lake.jobs() == []
    assert api_lake.updates.list_updates("sales") == []


@pytest.mark.parametrize("raw, code", [
    ('{"source": "s3://x/y", "kind": ', "malformed_json"),
    ("[1, 2]", "bad_request"),
    ('{"source": "s3://x/y", "kind": NaN}', "malformed_json"),
    ("", "missing_body"),
])
def test_malformed_body_is_400(api_lake, raw, code):
    api_lake.add_dataset("sales")
    status, body = _ingest(api_lake, raw_body=raw)
    assert status == 400 and body["error"]["code"] == code
    _nothing_changed(api_lake)


@pytest.mark.parametrize("payload, code, text", [
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "colour": "red"},
     "unknown_field", "colour"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv"}, "missing_field", "kind"),
    ({"kind": "snapshot"}, "missing_field", "source"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "full"}, "bad_request", "snapshot"),
    ({"source": 7, "kind": "snapshot"}, "bad_request", "string"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "header": "yes"},
     "bad_request", "true or false"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "encoding": "klingon"},
     "invalid_option", "encoding"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "encoding": "base64"},
     "invalid_option", "not a text encoding"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "delimiter": "\n"},
     "invalid_option", "line break"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "delimiter": "'",
      "quote": "'"}, "invalid_option", "quote"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "quote": "\r"},
     "invalid_option", "quote"),
    ({"source": f"s3://{drop()}/uploads/sales/a.csv", "kind": "snapshot", "format": "xml"},
     "bad_request", "csv"),
    ({"source": "ftp://host/a.csv", "kind": "snapshot"}, "invalid_source",
     "the API takes " + ", ".join(f"{s}://" for s in naming.SOURCE_SCHEMES)),
    ({"source": "sftp://me@host/a.csv", "kind": "snapshot"}, "invalid_source", "sftp"),
])
def test_bad_ingest_body_is_400_and_changes_nothing(api_lake, payload, code, text):
    api_lake.add_dataset("sales")
    status, body = _ingest(api_lake, payload)
    assert status == 400, body
    assert body["error"]["code"] == code and text in body["error"]["message"]
    _nothing_changed(api_lake)


def test_oversized_body_is_413(api_lake):
    api_lake.add_dataset("sales")
    payload = {"source": "s3://x/" + "a" * 70_000, "kind": "snapshot"}
    status, body = _ingest(api_lake, payload)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    _nothing_changed(api_lake)


def test_ingest_into_unknown_dataset_is_404(api_lake):
    status, _ = _ingest(api_lake, {"source": "https://example.com/a.csv", "kind": "snapshot"},
                        dataset="ghost_dataset")
    assert status == 404
    assert api_lake.jobs() == []


def test_ingest_by_someone_who_may_not_write_is_403(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    status, body = _ingest(api_lake, {"source": "https://example.com/a.csv", "kind": "snapshot"},
                           user="bob")
    assert status == 403 and "alice" in body["error"]["message"]
    _nothing_changed(api_lake)


def test_a_role_session_named_like_the_owner_is_not_the_owner(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/some-role/alice"
    status, _ = call(ingest.start_ingest, event("start_ingest", arn=arn, path={"dataset": "sales"},
                                                body={"source": "https://e.com/a", "kind": "delta"}))
    assert status == 403
    _nothing_changed(api_lake)


@pytest.mark.parametrize("source", [
    "s3://someone-elses-bucket/secret.csv",                      # IAM cannot vouch for the caller
    f"s3://{drop('restricted')}/uploads/sales/a.csv",            # another tier's drop bucket
    f"s3://{drop()}/uploads/other_dataset/a.csv",                # another dataset's area
    f"s3://{drop()}/loose.csv",                                  # outside any dataset's area
    f"s3://{naming.data_bucket(PREFIX, LOCAL.name, 'sensitive', REGION)}/x/data/1/p.parquet",
])
def test_s3_source_the_caller_could_not_read_is_403(api_lake, source):
    api_lake.add_dataset("sales", owner="alice")
    status, body = _ingest(api_lake, {"source": source, "kind": "snapshot"})
    assert status == 403 and body["error"]["code"] == "source_forbidden", body
    _nothing_changed(api_lake)


@pytest.mark.parametrize("source", [
    "s3://partner-bucket/feed/a.csv",          # an object: the caller's read is S3's to decide
    "s3://partner-bucket/feed/",               # a prefix: every object under it would be read
])
def test_s3_source_outside_the_drop_area_is_refused_with_the_way_to_bring_it_in(api_lake, source):
    api_lake.add_dataset("sales", owner="alice")
    status, body = _ingest(api_lake, {"source": source, "kind": "snapshot"})
    assert status == 403 and body["error"]["code"] == "source_forbidden"
    assert f"edl-api ingest sales --source {source}" in body["error"]["message"]
    _nothing_changed(api_lake)


def test_a_prefix_in_the_datasets_own_drop_area_may_be_ingested(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    status, body = _ingest(api_lake, {"source": f"s3://{drop()}/sales/batch7/", "kind": "snapshot"})
    assert status == 202, body


# -- ingest: the happy path -------------------------------------------------------------------

def test_ingest_creates_pending_update_and_queued_job_and_answers_202(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    source = f"s3://{drop()}/uploads/sales/0001/batch1.csv"
    status, body = _ingest(api_lake, {"source": source, "kind": "delta", "delimiter": ";",
                                  "header": False})
    assert status == 202
    assert body["status"] == "queued" and body["update_id"] == "0000000001"
    (job,) = api_lake.jobs()
    assert job["job_id"] == body["job_id"] and job["status"] == "queued"
    assert job["dataset"] == "sales" and job["update_id"] == "0000000001"
    assert job["requested_by"] == user_arn("alice")
    assert job["request"] == {"source": source, "kind": "delta", "delimiter": ";",
                              "header": False}
    (update,) = api_lake.updates.list_updates("sales")
    assert update.status == "pending" and update.kind == "delta" and update.source == source
    assert update.options["delimiter"] == ";" and update.options["header"] is False
    assert update.requested_by == user_arn("alice")
    assert job["arguments"]["--update"] == "0000000001" and job["arguments"]["--no-header"]
    assert job["arguments"]["--delimiter"] == ";" and job["arguments"]["--source"] == source

    status, job_view = call(jobs.get_job, event("get_job", user="carol",
                                                path={"job_id": body["job_id"]}))
    assert status == 200 and job_view["status"] == "queued"
    assert job_view["update_id"] == "0000000001"


def test_the_format_and_quote_of_an_ingest_reach_the_jobs_command_line(api_lake):
    from edl.core_resources.pipelines.ingest.__main__ import build_request, parse_args
    from edl.local.job_runner import ingest_arguments

    api_lake.add_dataset("sales", owner="alice")
    source = f"s3://{drop()}/uploads/sales/0001/export.dat"
    status, _ = _ingest(api_lake, {"source": source, "kind": "snapshot", "format": "csv",
                               "quote": "'", "delimiter": "|", "encoding": "latin-1"})
    assert status == 202
    (job,) = api_lake.jobs()
    request = build_request(parse_args(ingest_arguments(job)))
    assert request.options.format_of("export.dat") == "csv"
    assert (request.options.quote, request.options.delimiter, request.options.codec) == \
        ("'", "|", "iso8859-1")


def test_platform_admin_may_ingest_any_dataset(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    status, _ = call(ingest.start_ingest, event(
        "start_ingest", arn=ADMIN_ARN, path={"dataset": "sales"},
        body={"source": "https://example.com/a.csv", "kind": "snapshot"}))
    assert status == 202


def test_in_the_cloud_the_glue_job_is_started_with_the_update(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    api_lake.lake.is_local = False
    started = {}

    class Glue:
        def start_job_run(self, JobName, Arguments):
            started.update(JobName=JobName, Arguments=Arguments)
            return {"JobRunId": "jr_123"}

    api_lake.overrides["glue"] = Glue()
    status, body = _ingest(api_lake, {"source": "https://example.com/a", "kind": "snapshot",
                                  "format": "jsonl", "quote": "'"})
    assert status == 202
    assert started["JobName"] == "edl-local-ingest"
    assert (started["Arguments"]["--format"], started["Arguments"]["--quote"]) == ("jsonl", "'")
    assert started["Arguments"]["--update"] == body["update_id"]
    assert started["Arguments"]["--job-id"] == body["job_id"]
    (job,) = api_lake.jobs()
    assert job["glue_run_id"] == "jr_123"


def test_when_glue_refuses_the_update_fails_and_the_answer_is_503(api_lake):
    from botocore.exceptions import ClientError

    api_lake.add_dataset("sales", owner="alice")
    api_lake.lake.is_local = False

    class Glue:
        def start_job_run(self, **_):
            raise ClientError({"Error": {"Code": "ConcurrentRunsExceededException",
                                         "Message": "too many"}}, "StartJobRun")

    api_lake.overrides["glue"] = Glue()
    status, _ = _ingest(api_lake, {"source": "https://example.com/a.csv", "kind": "snapshot"})
    assert status == 503
    (update,) = api_lake.updates.list_updates("sales")
    assert update.status == "failed"
    (job,) = api_lake.jobs()
    assert job["status"] == "failed"


def test_unknown_job_is_404(api_lake):
    status, _ = call(jobs.get_job, event("get_job", path={"job_id": "ingest-" + "0" * 32}))
    assert status == 404
    status, _ = call(jobs.get_job, event("get_job", path={"job_id": "../etc"}))
    assert status == 400


# -- uploads ----------------------------------------------------------------------------------

def test_create_upload_gives_a_working_presigned_put_into_the_datasets_area(api_lake):
    import requests

    api_lake.add_dataset("sales", owner="alice", tier="restricted")
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=drop("restricted"))
    status, body = call(ingest.create_upload, event("create_upload", path={"dataset": "sales"},
                                                    body={"filename": "batch 1.csv"}))
    assert status == 201
    assert body["bucket"] == drop("restricted") and body["method"] == "PUT"
    assert body["headers"] == {}
    assert body["key"].startswith("uploads/sales/") and body["key"].endswith("/batch 1.csv")
    assert body["source"] == f"s3://{body['bucket']}/{body['key']}"
    url = urlparse(body["url"])
    assert "X-Amz-Signature" in parse_qs(url.query)
    assert requests.put(body["url"], data=b"id\n1\n", timeout=10).status_code == 200
    stored = s3.get_object(Bucket=body["bucket"], Key=body["key"])["Body"].read()
    assert stored == b"id\n1\n"
    # The upload's source is then accepted by start_ingest.
    status, _ = _ingest(api_lake, {"source": body["source"], "kind": "snapshot"})
    assert status == 202


@pytest.mark.parametrize("filename", ["../x.csv", "a/b.csv", "..", ".hidden", "a\\b.csv", "",
                                      "x" * 300])
def test_create_upload_refuses_paths_in_the_filename(api_lake, filename):
    api_lake.add_dataset("sales", owner="alice")
    status, body = call(ingest.create_upload, event("create_upload", path={"dataset": "sales"},
                                                    body={"filename": filename}))
    assert status == 400, body


def test_create_upload_by_someone_who_may_not_write_is_403(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    status, _ = call(ingest.create_upload, event("create_upload", user="bob",
                                                 path={"dataset": "sales"},
                                                 body={"filename": "a.csv"}))
    assert status == 403


# -- bugs -------------------------------------------------------------------------------------

def test_a_bug_is_500_with_the_error_shape_and_is_logged(api_lake, caplog, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(api_lake.metadata, "table", broken)
    status, body = call(datasets.list_datasets, event("list_datasets"))
    assert status == 500 and body["error"]["code"] == "internal"
    assert "boom" not in body["error"]["message"]
    assert any("internal error" in r.message for r in caplog.records)
