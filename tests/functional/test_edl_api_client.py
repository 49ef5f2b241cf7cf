"""The API client and the `edl-api` command against a real HTTP server on 127.0.0.1 (a stub that
plays the API's endpoints and records every request): signing, pagination, retries, errors, the
tables and --json, and the ingest flow upload → PUT → start → poll."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from edl.config import get_config
from edl.errors import LocalCloudError
from edl_api.client import ApiClient, ApiConnectionError, ApiError, RetryPolicy
from edl_api.discovery import ApiNotDeployedError, cloud_api_url
from edl_api.edl_api import run
from edl_api.lake_api import LakeApi
from edl_api.outside_sources import OutsideSources

KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
RESET = "reset"  # a reply that drops the connection without an answer


class Stub:
    """Routes (method, path) to replies; a reply is (status, json body) or a callable of the
    request. A list of replies is played in order, its last one repeated."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.routes: dict[tuple[str, str], list] = {}
        self.url = ""

    def on(self, method: str, path: str, *replies) -> None:
        self.routes[(method, path)] = list(replies)

    def reply_for(self, request: dict):
        replies = self.routes.get((request["method"], request["path"]))
        if not replies:
            return 404, {"error": {"code": "NotFound", "message": f"no route {request['path']}"}}
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return reply(request) if callable(reply) else reply

    def calls(self, method: str | None = None) -> list[dict]:
        return [r for r in self.requests if method is None or r["method"] == method]


class _Handler(BaseHTTPRequestHandler):
    stub: Stub

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = {"method": self.command, "path": split.path, "url": self.path,
                   "query": {k: v[0] for k, v in parse_qs(split.query).items()},
                   "headers": dict(self.headers.items()), "body": body}
        self.stub.requests.append(request)
        reply = self.stub.reply_for(request)
        if reply == RESET:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        status, payload = reply
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub():
    recorder = Stub()
    handler = type("Handler", (_Handler,), {"stub": recorder})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(stub: Stub, token: str | None = None, **kwargs) -> ApiClient:
    kwargs.setdefault("sleep", Sleeps())
    return ApiClient(f"{stub.url}/v1", Credentials(KEY_ID, SECRET, token), "us-east-1", **kwargs)


def signature_is_valid(request: dict, token: str | None = None) -> bool:
    """Recompute the SigV4 signature the way API Gateway (or the local runtime) would."""
    auth = request["headers"]["Authorization"]
    signed = re.search(r"SignedHeaders=([^,]+)", auth).group(1).split(";")
    given = re.search(r"Signature=([0-9a-f]+)", auth).group(1)
    lower = {k.lower(): v for k, v in request["headers"].items()}
    headers = {name: lower[name] for name in signed}
    aws_request = AWSRequest(method=request["method"], url=f"http://{lower['host']}{request['url']}",
                             data=request["body"], headers=headers)
    aws_request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY_ID, SECRET, token), "execute-api", "us-east-1")
    canonical = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request) == given


# -- signing ---------------------------------------------------------------------------------------

def test_requests_are_sigv4_signed_for_execute_api(stub):
    stub.on("GET", "/v1/datasets", (200, {"items": [], "next_token": None}))
    client(stub).get("/datasets", {"limit": 5})

    request = stub.requests[0]
    auth = request["headers"]["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "/us-east-1/execute-api/aws4_request" in auth
    assert "X-Amz-Security-Token" not in request["headers"]
    assert request["query"] == {"limit": "5"}
    assert signature_is_valid(request)


def test_a_session_token_is_sent_and_signed(stub):
    stub.on("POST", "/v1/datasets/sales/uploads", (200, {"url": "u", "source": "s"}))
    client(stub, token="SESSIONTOKEN").post("/datasets/sales/uploads", {"filename": "a.csv"})

    request = stub.requests[0]
    assert request["headers"]["X-Amz-Security-Token"] == "SESSIONTOKEN"
    assert "x-amz-security-token" in request["headers"]["Authorization"]
    assert json.loads(request["body"]) == {"filename": "a.csv"}
    assert signature_is_valid(request, token="SESSIONTOKEN")


def test_a_tampered_body_no_longer_matches_the_signature(stub):
    stub.on("POST", "/v1/datasets/sales/ingest", (202, {"update_id": "1"}))
    client(stub).post("/datasets/sales/ingest", {"source": "s3://a/b", "kind": "snapshot"})
    request = dict(stub.requests[0], body=b'{"source":"s3://other/b","kind":"snapshot"}')
    assert not signature_is_valid(request)


# -- pagination ------------------------------------------------------------------------------------

def test_paginate_follows_next_token_until_null(stub):
    def page(request):
        token = request["query"].get("next_token")
        if token is None:
            return 200, {"items": [{"name": "a"}, {"name": "b"}], "next_token": "t1"}
        if token == "t1":
            return 200, {"items": [{"name": "c"}], "next_token": "t2"}
        return 200, {"items": [{"name": "d"}], "next_token": None}

    stub.on("GET", "/v1/datasets", page)
    items = list(client(stub).paginate("/datasets", {"limit": 2}))

    assert [i["name"] for i in items] == ["a", "b", "c", "d"]
    assert [r["query"] for r in stub.requests] == [
        {"limit": "2"}, {"limit": "2", "next_token": "t1"}, {"limit": "2", "next_token": "t2"}]


def test_paginate_stops_at_max_items_without_fetching_more(stub):
    stub.on("GET", "/v1/datasets", (200, {"items": [{"name": "a"}, {"name": "b"}],
                                          "next_token": "more"}))
    assert len(list(client(stub).paginate("/datasets", max_items=2))) == 2
    assert len(stub.requests) == 1


def test_paginate_reads_a_page_that_names_its_list(stub):
    stub.on("GET", "/v1/datasets/sales/updates",
            (200, {"dataset": "sales", "updates": [{"update_id": "1"}], "next_token": "t"}),
            (200, {"dataset": "sales", "updates": [{"update_id": "2"}], "next_token": None}))
    items = list(client(stub).paginate("/datasets/sales/updates"))
    assert [i["update_id"] for i in items] == ["1", "2"]


def test_paginate_refuses_a_token_that_repeats(stub):
    stub.on("GET", "/v1/datasets", (200, {"items": [{"name": "a"}], "next_token": "same"}))
    with pytest.raises(ApiError, match="same next_token"):
        list(client(stub).paginate("/datasets"))


# -- retries ---------------------------------------------------------------------------------------

UNAVAILABLE = (503, {"error": {"code": "Unavailable", "message": "try later"}})


def test_retries_on_503_then_succeeds(stub):
    stub.on("GET", "/v1/jobs/j1", UNAVAILABLE, UNAVAILABLE, (200, {"job_id": "j1"}))
    sleeps = Sleeps()
    assert client(stub, sleep=sleeps).get("/jobs/j1") == {"job_id": "j1"}
    assert len(stub.requests) == 3
    assert len(sleeps) == 2 and all(0 <= s <= RetryPolicy().max_delay for s in sleeps)
    # each try is signed anew
    assert all(signature_is_valid(r) for r in stub.requests)


def test_backoff_grows_exponentially_with_full_jitter():
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    def highest(low, high):
        return high

    assert [policy.delay(n, highest) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.delay(0, highest, retry_after="2") == 2.0
    assert policy.delay(0, highest, retry_after="60") == 3.0


def test_gives_up_after_the_bound(stub):
    stub.on("GET", "/v1/datasets", UNAVAILABLE)
    with pytest.raises(ApiError) as err:
        client(stub, retry=RetryPolicy(max_attempts=3)).get("/datasets")
    assert err.value.status == 503 and err.value.code == "Unavailable"
    assert len(stub.requests) == 3


def test_retries_a_connection_reset(stub):
    stub.on("GET", "/v1/datasets/sales", RESET, (200, {"name": "sales"}))
    assert client(stub).get("/datasets/sales") == {"name": "sales"}
    assert len(stub.requests) == 2


def test_a_post_is_not_retried_when_the_server_may_have_acted(stub):
    stub.on("POST", "/v1/datasets/sales/ingest", (502, {"message": "Bad gateway"}))
    with pytest.raises(ApiError) as err:
        client(stub).post("/datasets/sales/ingest", {"source": "s3://a/b", "kind": "delta"})
    assert err.value.status == 502
    assert len(stub.requests) == 1


def test_a_post_is_retried_on_throttling(stub):
    stub.on("POST", "/v1/datasets/sales/ingest",
            (429, {"error": {"code": "Throttled", "message": "slow down"}}),
            (202, {"update_id": "0000000001", "job_id": "j1", "status": "queued"}))
    assert client(stub).post("/datasets/sales/ingest", {"source": "s", "kind": "delta"})[
        "job_id"] == "j1"
    assert len(stub.requests) == 2


def test_an_unreachable_api_is_a_clear_error_after_bounded_retries():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    api = ApiClient(f"http://127.0.0.1:{port}/v1", Credentials(KEY_ID, SECRET), "us-east-1",
                    local=True, sleep=sleeps, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ApiConnectionError) as err:
        api.get("/datasets")
    assert "cannot reach the API" in err.value.message and "edl local start" in err.value.hint
    assert len(sleeps) == 2


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, code, exit_code", [
    (400, "BadRequest", 2), (403, "Forbidden", 1), (404, "NotFound", 3), (409, "Conflict", 1),
    (413, "PayloadTooLarge", 1)])
def test_json_errors_become_api_errors(stub, status, code, exit_code):
    stub.on("GET", "/v1/datasets/sales", (status, {"error": {"code": code, "message": "why"}}))
    with pytest.raises(ApiError) as err:
        client(stub).get("/datasets/sales")
    assert (err.value.status, err.value.code, err.value.api_message) == (status, code, "why")
    assert err.value.exit_code == exit_code
    assert len(stub.requests) == 1  # a 4xx is never retried


def test_api_gateway_shaped_errors_are_understood(stub):
    stub.on("GET", "/v1/datasets", (403, {"message": "Missing Authentication Token"}))
    with pytest.raises(ApiError) as err:
        client(stub).get("/datasets")
    assert err.value.status == 403 and "Missing Authentication Token" in err.value.message
    assert "--profile" in err.value.hint


def test_a_non_json_success_is_an_error(stub):
    stub.on("GET", "/v1/datasets", (200, b"<html>proxy</html>"))
    with pytest.raises(ApiError, match="not a JSON object"):
        client(stub).get("/datasets")


# -- where the API is ------------------------------------------------------------------------------

def test_the_local_api_url_comes_from_the_state_file(edl_home, aws_credentials, stub):
    write_state(edl_home, f"{stub.url}/v1")
    api = ApiClient.for_instance("local", None)
    assert api.base_url == f"{stub.url}/v1" and api.local
    assert api.credentials.get_frozen_credentials().access_key == "testing"


def test_no_state_file_means_the_local_cloud_is_not_running(edl_home, aws_credentials):
    with pytest.raises(LocalCloudError, match="the local cloud is not running") as err:
        ApiClient.for_instance("local", None)
    assert "edl local start" in err.value.hint


def test_the_cloud_api_url_comes_from_the_rest_api_stack():
    instance = get_config().instance("dev01")
    cfn = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="y")
    with Stubber(cfn) as stubber:
        stubber.add_response("describe_stack_resources", {"StackResources": [
            {"LogicalResourceId": "ApiRole", "ResourceType": "AWS::IAM::Role",
             "PhysicalResourceId": "edl-dev01-api", "ResourceStatus": "CREATE_COMPLETE",
             "Timestamp": "2026-01-01T00:00:00Z"},
            {"LogicalResourceId": "RestApi", "ResourceType": "AWS::ApiGateway::RestApi",
             "PhysicalResourceId": "a1b2c3d4e5", "ResourceStatus": "CREATE_COMPLETE",
             "Timestamp": "2026-01-01T00:00:00Z"}]}, {"StackName": "edl-dev01-rest-api"})
        assert cloud_api_url(cfn, instance) == \
            "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1"
        stubber.add_client_error("describe_stack_resources", "ValidationError",
                                 "Stack with id edl-dev01-rest-api does not exist")
        with pytest.raises(ApiNotDeployedError, match="not deployed") as err:
            cloud_api_url(cfn, instance)
        assert "edl deploy-core --instance dev01" in err.value.hint


# -- the command -----------------------------------------------------------------------------------

def write_state(edl_home, api_url: str) -> None:
    (edl_home / "local").mkdir(parents=True, exist_ok=True)
    (edl_home / "local" / "state.json").write_text(json.dumps(
        {"endpoint_url": "http://127.0.0.1:1", "services": {"api": api_url}}))


@pytest.fixture
def cli(stub, edl_home, aws_credentials, capsys, monkeypatch):
    """`edl-api ARGV` against the stub as the local instance; (exit code, stdout, stderr)."""
    write_state(edl_home, f"{stub.url}/v1")
    monkeypatch.delenv("EDL_INSTANCE", raising=False)
    sleeps = Sleeps()

    s3 = FakeS3()

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = run(list(argv), sleep=sleeps,
                   outside=lambda instance, profile: OutsideSources(lambda: s3, PREFIX))
        out, err = capsys.readouterr()
        return code, out, err

    invoke.sleeps = sleeps
    invoke.s3 = s3
    return invoke


PREFIX = "sanofi-datalake"
DROP = f"{PREFIX}-drop-local-internal-us-east-1"


class FakeS3:
    """The caller's S3 as S3 answers them: `objects` by key, `denied` keys give AccessDenied."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.denied: set[str] = set()
        self.calls: list[tuple[str, str, str]] = []

    @staticmethod
    def _error(code: str, operation: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, operation)

    def head_object(self, Bucket, Key):
        self.calls.append(("head_object", Bucket, Key))
        if Key in self.denied:
            raise self._error("403", "HeadObject")
        if Key not in self.objects:
            raise self._error("404", "HeadObject")
        return {"ContentLength": len(self.objects[Key])}

    def get_object(self, Bucket, Key):
        self.calls.append(("get_object", Bucket, Key))
        if Key in self.denied:
            raise self._error("AccessDenied", "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def get_paginator(self, name):
        assert name == "list_objects_v2"
        fake = self

        class Paginator:
            def paginate(self, Bucket, Prefix):
                fake.calls.append(("list_objects_v2", Bucket, Prefix))
                keys = sorted(k for k in fake.objects if k.startswith(Prefix))
                yield {"Contents": [{"Key": k, "Size": len(fake.objects[k])} for k in keys]}
        return Paginator()


# As the handlers answer (edl/core_resources/rest_api/datasets.py): `updates` counts the ids
# allocated so far, `last_update` is the newest id.
DATASETS = [
    {"dataset": "clinical_trials", "tier": "sensitive", "owner": "alice", "updates": 2,
     "last_update": "0000000002", "home_region": "us-east-1", "description": "Trials",
     "delta": {"key_columns": ["trial_id"], "op_column": "op", "delete_marker": "D"},
     "created_at": 1764064800.0},
    {"dataset": "sales", "tier": "internal", "owner": "bob", "updates": 0, "last_update": None,
     "home_region": "us-east-1", "description": "", "delta": None, "created_at": 1764064800.0},
]


def test_datasets_prints_a_table(stub, cli):
    stub.on("GET", "/v1/datasets", (200, {"datasets": DATASETS, "next_token": None}))
    code, out, err = cli("datasets")
    assert code == 0
    header = next(line for line in out.splitlines() if "name" in line)
    for column in ("tier", "owner", "updates", "last update"):
        assert column in header
    row = next(line for line in out.splitlines() if "clinical_trials" in line)
    assert "sensitive" in row and "alice" in row and "0000000002" in row
    assert "2 datasets" in err


def test_datasets_json_is_the_raw_items_across_pages(stub, cli):
    stub.on("GET", "/v1/datasets", (200, {"datasets": DATASETS[:1], "next_token": "t"}),
            (200, {"datasets": DATASETS[1:], "next_token": None}))
    code, out, _ = cli("datasets", "--json")
    assert code == 0
    assert json.loads(out) == {"items": DATASETS, "next_token": None}


def test_dataset_shows_details_schema_and_delta_convention(stub, cli):
    stub.on("GET", "/v1/datasets/clinical_trials", (200, {
        **DATASETS[0],
        "newest_update": {"update_id": "0000000001", "kind": "snapshot", "rows": 12,
                          "finished_at": "2026-11-25T10:00:00+00:00",
                          "columns": [{"name": "trial_id", "type": "string"},
                                      {"name": "enrolled", "type": "int64"}]}}))
    code, out, _err = cli("dataset", "clinical_trials")
    assert code == 0
    for text in ("sensitive", "alice", "Trials", "trial_id", "enrolled", "int64",
                 "delete marker", "0000000002", "0000000001 (snapshot, 2026-11-25 10:00:00)"):
        assert text in out, text


def test_updates_passes_the_status_filter_and_prints_a_table(stub, cli):
    stub.on("GET", "/v1/datasets/sales/updates", (200, {"dataset": "sales", "updates": [
        {"update_id": "0000000001", "kind": "snapshot", "status": "complete", "rows": 1500,
         "bytes": 20480, "file_count": 1, "created_at": "2026-11-25T09:00:00Z"}],
        "next_token": None}))
    code, out, _ = cli("updates", "sales", "--status", "complete")
    assert code == 0
    assert stub.requests[0]["query"] == {"status": "complete"}
    row = next(line for line in out.splitlines() if "0000000001" in line)
    assert "complete" in row and "1,500" in row and "20.0 KB" in row


def test_an_unknown_dataset_exits_3_with_the_apis_message(stub, cli):
    stub.on("GET", "/v1/datasets/nothere", (404, {"error": {
        "code": "NotFound", "message": "no dataset 'nothere'"}}))
    code, out, err = cli("dataset", "nothere")
    assert code == 3 and out == ""
    assert "Error: no dataset 'nothere'" in err and "Traceback" not in err


def test_a_refused_ingest_exits_1_with_a_hint(stub, cli, tmp_path):
    stub.on("POST", "/v1/datasets/sales/ingest", (403, {"error": {
        "code": "Forbidden", "message": "carol may not write sales"}}))
    code, _, err = cli("ingest", "sales", "--source", f"s3://{DROP}/uploads/sales/a.csv",
                       "--kind", "delta")
    assert code == 1
    assert "carol may not write sales" in err and "Hint:" in err


def ingest_routes(stub: Stub, *job_replies) -> None:
    source = "s3://sanofi-datalake-drop-local-internal-us-east-1/uploads/sales/u1/batch.csv"
    stub.on("POST", "/v1/datasets/sales/uploads", lambda r: (200, {
        "url": f"{stub.url}/drop/batch.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
               "&X-Amz-SignedHeaders=host&X-Amz-Signature=abc",
        "source": source}))
    stub.on("PUT", "/drop/batch.csv", (200, b""))
    stub.on("POST", "/v1/datasets/sales/ingest",
            (202, {"update_id": "0000000003", "job_id": "job-7", "status": "queued"}))
    stub.on("GET", "/v1/jobs/job-7", *job_replies)


def job(status: str, **extra) -> tuple[int, dict]:
    return 200, {"job_id": "job-7", "status": status, "dataset": "sales",
                 "update_id": "0000000003", **extra}


def test_ingest_wait_uploads_puts_starts_and_polls_until_succeeded(stub, cli, tmp_path):
    data = tmp_path / "batch.csv"
    data.write_text("id,name\n1,a\n2,b\n")
    ingest_routes(stub, job("queued"), job("running", progress={"step": "convert", "files": 1}),
                  job("succeeded"))

    code, out, err = cli("ingest", "sales", "--source", str(data), "--kind", "snapshot",
                         "--delimiter", ";", "--wait")

    assert code == 0, err
    assert [(r["method"], r["path"]) for r in stub.requests] == [
        ("POST", "/v1/datasets/sales/uploads"), ("PUT", "/drop/batch.csv"),
        ("POST", "/v1/datasets/sales/ingest"), ("GET", "/v1/jobs/job-7"),
        ("GET", "/v1/jobs/job-7"), ("GET", "/v1/jobs/job-7")]
    upload, put, start = stub.requests[:3]
    assert json.loads(upload["body"]) == {"filename": "batch.csv"}
    assert put["body"] == data.read_bytes()
    assert "Authorization" not in put["headers"]  # the presigned URL is the authorization
    assert json.loads(start["body"]) == {
        "source": "s3://sanofi-datalake-drop-local-internal-us-east-1/uploads/sales/u1/batch.csv",
        "kind": "snapshot", "delimiter": ";"}
    assert "0000000003" in out and "job-7" in out
    assert "convert" in err and "complete" in err


def test_ingest_without_wait_answers_at_once(stub, cli, tmp_path):
    data = tmp_path / "batch.csv"
    data.write_text("id\n1\n")
    ingest_routes(stub, job("queued"))
    code, out, _ = cli("ingest", "sales", "--source", str(data), "--kind", "delta", "--json")
    assert code == 0
    assert json.loads(out)["job_id"] == "job-7" and json.loads(out)["update_id"] == "0000000003"
    assert not stub.calls("GET")


@pytest.mark.parametrize("source", [f"s3://{DROP}/sales/batch7/", "https://example.com/a.csv"])
def test_a_source_the_job_reads_is_not_uploaded(stub, cli, source):
    ingest_routes(stub, job("succeeded"))
    code, out, _ = cli("ingest", "sales", "--source", source, "--kind", "delta",
                       "--wait", "--json")
    assert code == 0
    assert [r["path"] for r in stub.calls("POST")] == ["/v1/datasets/sales/ingest"]
    assert json.loads(stub.calls("POST")[0]["body"])["source"] == source
    assert not stub.calls("PUT") and not cli.s3.calls
    assert json.loads(out)["status"] == "succeeded"


def test_an_s3_object_outside_the_lake_is_read_as_the_caller_and_uploaded(stub, cli):
    body = b"id,name\n1,a\n"
    cli.s3.objects = {"feed/2026/batch.csv": body, "feed/2026/other.csv": b"x"}
    ingest_routes(stub, job("succeeded"))
    code, _out, err = cli("ingest", "sales", "--source", "s3://partner/feed/2026/batch.csv",
                         "--kind", "snapshot", "--json")
    assert code == 0, err
    upload, put, start = stub.requests[:3]
    assert json.loads(upload["body"]) == {"filename": "batch.csv"}
    assert put["body"] == body
    assert json.loads(start["body"])["source"].startswith(f"s3://{DROP}/uploads/sales/")
    assert ("get_object", "partner", "feed/2026/batch.csv") in cli.s3.calls


def test_an_s3_prefix_outside_the_lake_comes_as_one_zip_of_every_object_below_it(stub, cli):
    cli.s3.objects = {"feed/a.csv": b"id\n1\n", "feed/eu/b.csv": b"id\n2\n",
                      "feed/": b"", "feedback/c.csv": b"not under the prefix"}
    ingest_routes(stub, job("succeeded"))
    code, _, err = cli("ingest", "sales", "--source", "s3://partner/feed", "--kind", "snapshot")
    assert code == 0, err
    upload, put = stub.requests[:2]
    assert json.loads(upload["body"]) == {"filename": "feed.zip"}
    with zipfile.ZipFile(io.BytesIO(put["body"])) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == {
            "a.csv": b"id\n1\n", "eu/b.csv": b"id\n2\n"}


def test_an_s3_source_the_caller_may_not_read_is_refused_before_anything_is_uploaded(stub, cli):
    cli.s3.objects = {"feed/a.csv": b"id\n1\n", "feed/secret.csv": b"id\n2\n"}
    cli.s3.denied = {"feed/secret.csv"}
    ingest_routes(stub, job("succeeded"))
    code, _, err = cli("ingest", "sales", "--source", "s3://partner/feed/", "--kind", "snapshot")
    assert code == 1
    assert "you cannot read s3://partner/feed/secret.csv (AccessDenied)" in err
    assert "Hint:" in err and "Traceback" not in err
    assert stub.requests == []
    code, _, err = cli("ingest", "sales", "--source", "s3://partner/feed/secret.csv",
                       "--kind", "snapshot")
    assert code == 1 and "secret.csv (AccessDenied)" in err and stub.requests == []


def test_a_failed_job_exits_non_zero_with_the_jobs_error(stub, cli, tmp_path):
    data = tmp_path / "batch.csv"
    data.write_text("id\n1\n")
    ingest_routes(stub, job("running"), job("failed", error={
        "code": "BadFile", "message": "batch.csv: line 2 has 3 fields [a, b, c], expected 1"}))
    code, _, err = cli("ingest", "sales", "--source", str(data), "--kind", "snapshot", "--wait")
    assert code == 1
    assert "Error: job job-7 failed: BadFile: batch.csv: line 2 has 3 fields [a, b, c]" in err
    assert "Traceback" not in err


def test_wait_gives_up_after_the_timeout(stub):
    ingest_routes(stub, job("running"))
    clock = iter(range(0, 1000, 5))
    api = LakeApi(client(stub))
    with pytest.raises(Exception, match="still running after 12s"):
        api.wait_for_job("job-7", timeout=12, sleep=lambda s: None, clock=lambda: next(clock))


def test_update_shows_files_and_schema_as_given(stub, cli):
    columns = [{"name": "id", "type": "int64"}]
    stub.on("GET", "/v1/datasets/sales/updates/7", (200, {
        "dataset": "sales", "update_id": "0000000007", "kind": "snapshot", "status": "complete",
        "rows": 2, "files": [{"path": "in/[bold]part[1].csv", "format": "csv", "rows": 2,
                              "bytes": 10, "sha256": "ab" * 32, "columns": columns}],
        "columns": columns}))
    code, out, _ = cli("update", "sales", "7")
    assert code == 0
    assert stub.requests[0]["path"] == "/v1/datasets/sales/updates/7"
    assert "in/[bold]part[1].csv" in out  # the API's text is never taken for markup
    assert "int64" in out and "complete" in out


def test_job_prints_status_and_error(stub, cli):
    stub.on("GET", "/v1/jobs/job-7", job("failed", error="the source was not readable"))
    code, out, _ = cli("job", "job-7")
    assert code == 0
    assert "failed" in out and "the source was not readable" in out and "0000000003" in out


# -- run-pipeline --------------------------------------------------------------------------------

RUN = "pipeline-visits_by_site-" + "0" * 31 + "7"
RUNS = "/v1/pipelines/visits_by_site/runs"


def run_job(status: str, **extra) -> tuple[int, dict]:
    return 200, {"job_id": RUN, "type": "pipeline", "pipeline": "visits_by_site",
                 "status": status, **extra}


def test_run_pipeline_starts_a_run_with_its_as_of_and_prints_the_answer(stub, cli):
    stub.on("POST", RUNS, (202, {"job_id": RUN, "pipeline": "visits_by_site",
                                 "status": "queued"}))
    code, out, err = cli("run-pipeline", "visits_by_site", "--as-of", "visits=4",
                         "sites=0000000002", "--json")
    assert code == 0, err
    assert json.loads(out) == {"job_id": RUN, "pipeline": "visits_by_site", "status": "queued"}
    (post,) = stub.requests
    assert "Authorization" in post["headers"]
    assert json.loads(post["body"]) == {"as_of": {"visits": "0000000004",
                                                  "sites": "0000000002"}}

    code, out, _ = cli("run-pipeline", "visits_by_site")
    assert code == 0 and RUN in out and "queued" in out
    assert json.loads(stub.requests[-1]["body"]) == {}   # every input as of its newest update
    assert not stub.calls("GET")


def test_run_pipeline_wait_follows_the_job_and_shows_the_updates_it_wrote(stub, cli):
    stub.on("POST", RUNS, (202, {"job_id": RUN, "pipeline": "visits_by_site",
                                 "status": "queued"}))
    stub.on("GET", f"/v1/jobs/{RUN}", run_job("queued"),
            run_job("running", progress="output site_counts: writing"),
            run_job("succeeded", outputs={"site_counts": {
                "dataset": "site_counts", "update_id": "0000000005", "rows": 1200}}))
    code, out, err = cli("run-pipeline", "visits_by_site", "--wait")
    assert code == 0, err
    assert [r["method"] for r in stub.requests] == ["POST", "GET", "GET", "GET"]
    assert RUN in out
    assert "output site_counts: writing" in err
    assert "site_counts: site_counts update 0000000005 (1,200 rows)" in err


def test_run_pipeline_wait_json_prints_the_finished_run(stub, cli):
    stub.on("POST", RUNS, (202, {"job_id": RUN, "pipeline": "visits_by_site",
                                 "status": "queued"}))
    stub.on("GET", f"/v1/jobs/{RUN}", run_job("succeeded"))
    code, out, _ = cli("run-pipeline", "visits_by_site", "--wait", "--json")
    assert code == 0
    final = json.loads(out)
    assert (final["job_id"], final["pipeline"], final["status"]) == (RUN, "visits_by_site",
                                                                     "succeeded")


def test_a_failed_run_exits_1_with_the_runs_error(stub, cli):
    stub.on("POST", RUNS, (202, {"job_id": RUN, "pipeline": "visits_by_site",
                                 "status": "queued"}))
    stub.on("GET", f"/v1/jobs/{RUN}", run_job("failed", error="check rows > 0 failed"))
    code, _, err = cli("run-pipeline", "visits_by_site", "--wait")
    assert code == 1
    assert f"Error: run {RUN} of pipeline visits_by_site failed: check rows > 0 failed" in err
    assert f"edl-api job {RUN}" in err and "Traceback" not in err


def test_a_refused_run_exits_1_with_the_apis_reason(stub, cli):
    reason = ("arn:aws:iam::000000000000:user/bob may not start a run of pipeline "
              "visits_by_site: a run writes every output (site_costs, site_counts), and you "
              "may not write site_costs; only a platform admin or someone who may write them "
              "all starts one. Ask with: edl-api grant request site_costs --level write")
    stub.on("POST", RUNS, (403, {"error": {"code": "no_write", "message": reason}}))
    code, _, err = cli("run-pipeline", "visits_by_site", "--wait")
    assert code == 1
    assert "may not write site_costs" in " ".join(err.split())
    assert "check --profile" not in err   # a policy refusal, not a wrong identity
    assert not stub.calls("GET")


@pytest.mark.parametrize("argv, message", [
    (["run-pipeline", "Visits-By-Site"], "invalid pipeline name"),
    (["run-pipeline", "visits_by_site", "--as-of", "visits"], "is not ALIAS=UPDATE"),
    (["run-pipeline", "visits_by_site", "--as-of", "visits=latest"], "is not an update id"),
])
def test_bad_run_pipeline_input_is_refused_before_any_request(stub, cli, argv, message):
    code, _, err = cli(*argv)
    assert code == 2
    assert message in err
    assert stub.requests == []


def test_a_failed_upload_says_so(stub, cli, tmp_path):
    data = tmp_path / "batch.csv"
    data.write_text("id\n1\n")
    ingest_routes(stub, job("queued"))
    stub.on("PUT", "/drop/batch.csv", (403, b"<Error><Code>SignatureDoesNotMatch</Code>"
                                            b"<Message>bad</Message></Error>"))
    code, _, err = cli("ingest", "sales", "--source", str(data), "--kind", "snapshot")
    assert code == 1 and "upload failed: 403 SignatureDoesNotMatch" in err
    assert not [r for r in stub.calls("POST") if r["path"].endswith("/ingest")]


# -- the shell helpers in utils/ -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def shell(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "EDL_API": f"{sys.executable} -m edl_api.edl_api",
                   "EDL_PYTHON": sys.executable, "PYTHONPATH": str(REPO), **env}
    environment.pop("EDL_INSTANCE", None)
    return subprocess.run(["bash", str(REPO / "utils" / script), *args], capture_output=True,
                          text=True, env=environment, cwd=REPO, timeout=60)


def test_ingest_file_script_uploads_waits_and_prints_the_update_id(stub, edl_home,
                                                                   aws_credentials, tmp_path):
    write_state(edl_home, f"{stub.url}/v1")
    data = tmp_path / "batch.csv"
    data.write_text("id\n1\n")
    ingest_routes(stub, job("succeeded"))
    result = shell("ingest-file.sh", "sales", str(data), "delta")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0000000003\n"
    assert json.loads(stub.calls("POST")[-1]["body"])["kind"] == "delta"
    assert stub.calls("PUT")[0]["body"] == b"id\n1\n"


def test_ingest_file_script_fails_with_the_jobs_error(stub, edl_home, aws_credentials, tmp_path):
    write_state(edl_home, f"{stub.url}/v1")
    data = tmp_path / "batch.csv"
    data.write_text("id\n1\n")
    ingest_routes(stub, job("failed", error="unreadable"))
    result = shell("ingest-file.sh", "sales", str(data))
    assert result.returncode == 1 and "unreadable" in result.stderr


def test_wait_for_update_script_polls_until_complete_or_failed(stub, edl_home, aws_credentials):
    write_state(edl_home, f"{stub.url}/v1")
    update = {"dataset": "sales", "update_id": "0000000003"}
    stub.on("GET", "/v1/datasets/sales/updates/0000000003",
            (200, {**update, "status": "pending"}), (200, {**update, "status": "complete"}))
    result = shell("wait-for-update.sh", "sales", "0000000003", WAIT_INTERVAL="0")
    assert result.returncode == 0, result.stderr
    assert len(stub.requests) == 2

    stub.on("GET", "/v1/datasets/sales/updates/0000000004",
            (200, {**update, "status": "failed", "reason": "bad CSV"}))
    result = shell("wait-for-update.sh", "sales", "0000000004", WAIT_INTERVAL="0")
    assert result.returncode == 1 and "failed: bad CSV" in result.stderr
