"""Functional tests: AWS faked in-process with moto, commands run in-process.

Every fixture of this folder is defined here, each name meaning one thing:
- `moto_server`: moto's threaded server on a loopback port, one for the session (Spark's Python
  workers and the `edl` commands reach it over HTTP, as they would a local cloud);
- `lake`: that server reset, with the ingest lake's tables, buckets and `clinical_trials`;
- `cloud`: that server reset and bootstrapped like `edl local start`, IAM enforcement on;
- `aws`: moto's in-process mock for one test;
- `api_world` / `api_lake`: the REST API handlers' world on moto's in-process mock (one per
  module), emptied for each test.
Helpers the tests call live in `ingest_helpers.py`, `deploy_helpers.py` and `rest_api_helpers.py`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from edl.config import get_config
from edl.core_resources.rest_api import common
from edl.local.bootstrap import bootstrap
from edl.naming import data_bucket, drop_bucket
from edl.paths import local_credentials_file, local_state_file
from edl.utils.context import LakeContext
from edl.utils.metadata import DatasetRecord, DeltaConvention
from tests.functional import rest_api_helpers
from tests.functional.deploy_helpers import Cloud, post
from tests.functional.ingest_helpers import (
    DATASET,
    INSTANCE,
    REGION,
    TIER,
    LocalLake,
    create_metadata_tables,
)


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def lake(moto_server, monkeypatch, edl_home) -> LocalLake:
    """A reset server with the metadata tables, the buckets and the `clinical_trials` dataset,
    the local instance pointed at it the way `edl local start` does (the EDL home's state file)."""
    post(f"{moto_server}/moto-api/reset", b"", "application/json")
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION), ("EDL_INSTANCE", INSTANCE)):
        monkeypatch.setenv(name, value)
    (edl_home / "local").mkdir(parents=True, exist_ok=True)
    (edl_home / "local" / "state.json").write_text(json.dumps({"endpoint_url": moto_server}))
    # `lake.read` without a context reads as a user, with credentials from the API's broker;
    # no API runs here, so the broker vends the test's own keys (moto takes any): the reads
    # still go the broker's way (`edl.utils.vended`).
    monkeypatch.setattr("edl.utils.context.api_broker",
                        lambda instance, profile=None: self_vending_broker)

    session = boto3.Session(region_name=REGION)
    create_metadata_tables(session.client("dynamodb", endpoint_url=moto_server))
    s3 = session.client("s3", endpoint_url=moto_server)
    prefix = get_config().bucket_prefix
    buckets = (data_bucket(prefix, INSTANCE, TIER, REGION),
               drop_bucket(prefix, INSTANCE, TIER, REGION))
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    context = LakeContext.for_instance(INSTANCE)
    context.metadata.put_dataset(DatasetRecord(
        dataset=DATASET, tier=TIER, owner="alice", home_region=REGION,
        description="trials", delta=DeltaConvention(("id",), "op", "D")))
    return LocalLake(endpoint=moto_server, s3=s3,
                     glue=session.client("glue", endpoint_url=moto_server), context=context,
                     data_bucket=buckets[0], drop_bucket=buckets[1])


def self_vending_broker(dataset: str, level: str) -> dict:
    expiration = datetime.now(UTC) + timedelta(hours=1)
    return {"access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "session_token": f"vended-{dataset}-{level}",
            "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}


@pytest.fixture
def cloud(moto_server, edl_home, monkeypatch):
    """A freshly reset and bootstrapped local cloud, with this test's EDL home pointing at it."""
    post(f"{moto_server}/moto-api/reset-auth", b"inf", "text/plain")  # auth off to reset
    post(f"{moto_server}/moto-api/reset", b"", "application/json")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    instance = get_config().instance("local")
    result = bootstrap(instance, moto_server)
    Path(local_state_file()).parent.mkdir(parents=True, exist_ok=True)
    local_state_file().write_text(json.dumps({"endpoint_url": moto_server}))
    local_credentials_file().write_text("".join(
        f"[{u.profile}]\naws_access_key_id = {u.access_key_id}\n"
        f"aws_secret_access_key = {u.secret_access_key}\n\n" for u in result.users))
    yield Cloud(moto_server, instance,
                {u.profile: (u.access_key_id, u.secret_access_key) for u in result.users})
    # moto's auth switch is process-wide: leave it off for the other in-process moto tests.
    post(f"{moto_server}/moto-api/reset-auth", b"inf", "text/plain")


@pytest.fixture
def aws(aws_credentials):
    """moto's in-process mock, for a test that calls boto3 without an endpoint."""
    with mock_aws():
        yield


@pytest.fixture(scope="module")
def api_world():
    """One moto and one set of tables per test module (creating them is most of a test's
    cost); `api_lake` empties them before each test."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", rest_api_helpers.REGION)):
            patch.setenv(name, value)
        with mock_aws():
            yield rest_api_helpers.ApiLake()


@pytest.fixture
def api_lake(api_world, aws_credentials):
    """The handlers' world, emptied, installed as the handlers' `ApiContext` for this test."""
    api_world.reset()
    common.use_api_context(api_world.api)
    try:
        yield api_world
    finally:
        common.use_api_context(None)
