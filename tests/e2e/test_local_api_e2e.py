"""The local runtime's REST API and job runner, on the real local cloud.

`edl local start` (the session's cloud) serves the API next to the AWS endpoint; requests are
signed with SigV4 as the local users, exactly as `edl-api` signs them, and an ingest started
through the API - its file uploaded through the presigned URL the API hands out - is run by the
runtime's job runner as the ingest job role.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from edl.aws import read_local_profile
from edl.local import control

EDL = str(Path(sys.executable).with_name("edl"))
DATASET = "api_e2e_sites"
CSV = b"id,site,score\n1,lyon,1.5\n2,paris,2\n"


def edl(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
    return subprocess.run([EDL, *args], capture_output=True, text=True, env=env, timeout=180)


def call(method: str, url: str, user: str, body: dict | None = None) -> requests.Response:
    key, secret = read_local_profile(user)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(Credentials(key, secret), "execute-api", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return requests.request(method, prepared.url, headers=dict(prepared.headers), data=data,
                            timeout=60)


def test_status_lists_the_api_and_the_job_runner(local_cloud):
    services = control.status().services
    assert services["aws"] == f"http://127.0.0.1:{local_cloud.port}"
    assert services["api"].startswith("http://127.0.0.1:") and services["api"].endswith("/v1")
    assert services["jobs"] == services["api"].removesuffix("/v1") + "/_local/jobs"
    runner = requests.get(services["jobs"], timeout=10).json()
    assert runner["spark"] in ("cold", "warm") and runner["running"] is None


def test_the_api_refuses_unknown_and_unsigned_callers(local_cloud):
    api = control.status().services["api"]
    unsigned = requests.get(f"{api}/datasets", timeout=10)
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == \
        (403, "MissingAuthenticationToken")
    request = AWSRequest(method="GET", url=f"{api}/datasets")
    SigV4Auth(Credentials("AKIAIOSFODNN7EXAMPLE", "secret"), "execute-api",
              "us-east-1").add_auth(request)
    prepared = request.prepare()
    stranger = requests.get(prepared.url, headers=dict(prepared.headers), timeout=10)
    assert (stranger.status_code, stranger.json()["error"]["code"]) == \
        (403, "InvalidClientTokenId")


def test_alice_lists_datasets_and_ingests_through_the_api(local_cloud):
    api = control.status().services["api"]
    deployed = edl("deploy-core", "--instance", "local")
    assert deployed.returncode == 0, deployed.stderr
    dataset = edl("deploy-dataset", DATASET, "--tier", "internal", "--owner", "alice",
                  "--instance", "local")
    assert dataset.returncode == 0, dataset.stderr

    listed = call("GET", f"{api}/datasets", "alice")
    if listed.status_code == 501:  # the handlers are not there yet
        assert listed.json()["error"]["code"] == "not_implemented"
        return
    assert listed.status_code == 200, listed.text
    assert DATASET in [d["dataset"] for d in listed.json()["datasets"]]

    # The file goes up through the presigned URL the upload endpoint gives, as edl-api does it.
    upload = call("POST", f"{api}/datasets/{DATASET}/uploads", "alice", {"filename": "sites.csv"})
    assert upload.status_code == 201, upload.text
    put = requests.put(upload.json()["url"], data=CSV, timeout=30)
    assert put.status_code == 200, put.text

    started = call("POST", f"{api}/datasets/{DATASET}/ingest", "alice",
                   {"source": upload.json()["source"], "kind": "snapshot"})
    assert started.status_code == 202, started.text
    job_id, update_id = started.json()["job_id"], started.json()["update_id"]

    deadline = time.monotonic() + 120
    while True:
        job = call("GET", f"{api}/jobs/{job_id}", "bob").json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    assert job["update_id"] == update_id

    update = call("GET", f"{api}/datasets/{DATASET}/updates/{update_id}", "carol").json()
    assert (update["status"], update["rows"]) == ("complete", 2), update
