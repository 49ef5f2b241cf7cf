"""What the handlers share: api_config loading and routing, page tokens, the caller, the one
authorization check, and the Lambda entry point of a handler module."""

from __future__ import annotations

import base64
import json

import pytest

from edl.api_config import get_api_config, load_api_config
from edl.core_resources.rest_api import common, datasets
from edl.errors import ConfigError
from edl.utils.metadata import DatasetRecord
from tests.functional.rest_api_helpers import ACCOUNT, ADMIN_ARN, LOCAL, call, event, user_arn

KEY = b"k" * 32


# -- api_config -------------------------------------------------------------------------------

def test_routes_by_path_and_method():
    config = get_api_config()
    endpoint, params, _ = config.route("GET", "/datasets/sales/updates/7")
    assert endpoint.name == "get_update" and params == {"dataset": "sales", "update_id": "7"}
    assert config.route("DELETE", "/datasets") == (None, {}, True)       # → 405
    assert config.route("GET", "/nothing/here") == (None, {}, False)     # → 404


def test_a_bad_api_config_names_file_and_key(tmp_path):
    path = tmp_path / "api_config.yaml"
    text = (get_api_config().path.read_text()
            .replace("access: dataset_writer", "access: everyone", 1))
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_api_config(path)
    assert "api_config.yaml" in error.value.message and "access" in error.value.message


def test_the_fingerprint_follows_the_endpoints():
    config = get_api_config()
    assert config.fingerprint == load_api_config(config.path).fingerprint
    assert len(config.fingerprint) == 12


# -- page tokens ------------------------------------------------------------------------------

def test_page_token_round_trip_and_scope():
    tokens = common.PageTokens(KEY)
    token = tokens.encode("list_datasets", {"dataset": "abc"})
    assert tokens.decode("list_datasets", token) == {"dataset": "abc"}
    with pytest.raises(common.BadRequest):
        tokens.decode("list_updates:abc:", token)
    with pytest.raises(common.BadRequest):
        common.PageTokens(b"x" * 32).decode("list_datasets", token)  # another key


def test_a_short_key_is_refused():
    with pytest.raises(ValueError):
        common.PageTokens(b"short")


# -- the caller and authorization -------------------------------------------------------------

def test_caller_kinds():
    user = common.Caller(user_arn("alice"), ACCOUNT)
    assert (user.kind, user.user_name, user.role_name) == ("user", "alice", None)
    session = common.Caller(f"arn:aws:sts::{ACCOUNT}:assumed-role/edl-platform-admin/bob", ACCOUNT)
    assert (session.kind, session.user_name, session.role_name) == \
        ("assumed-role", None, "edl-platform-admin")
    assert session.is_principal(f"arn:aws:iam::{ACCOUNT}:role/ops/edl-platform-admin")
    assert not session.is_principal("arn:aws:iam::999999999999:role/edl-platform-admin")


def test_authorize_dataset_writer():
    endpoint = get_api_config().endpoint("start_ingest")
    record = DatasetRecord(dataset="sales", tier="internal", owner="alice", home_region="us-east-1")
    common.authorize(endpoint, common.Caller(user_arn("alice"), ACCOUNT), LOCAL, record)
    common.authorize(endpoint, common.Caller(ADMIN_ARN, ACCOUNT), LOCAL, record)
    for arn in (user_arn("bob"), user_arn("alice2"), f"arn:aws:iam::{ACCOUNT}:user/x/bob"):
        with pytest.raises(common.Forbidden):
            common.authorize(endpoint, common.Caller(arn, ACCOUNT), LOCAL, record)


# -- the Lambda entry point and the body ------------------------------------------------------

def test_module_handler_dispatches_by_resource_and_method(api_lake):
    api_lake.add_dataset("sales")
    status, body = call(datasets.handler, event("get_dataset", path={"dataset": "sales"}))
    assert status == 200 and body["dataset"] == "sales"
    status, body = call(datasets.handler, event("list_datasets"))
    assert status == 200 and [d["dataset"] for d in body["datasets"]] == ["sales"]
    status, _ = call(datasets.handler, event("list_datasets", method="POST"))
    assert status == 405
    other = event("get_job", path={"job_id": "ingest-" + "0" * 32})
    status, _ = call(datasets.handler, other)
    assert status == 404


def test_base64_bodies_are_decoded_and_measured(api_lake):
    from edl.core_resources.rest_api import ingest

    api_lake.add_dataset("sales")
    payload = json.dumps({"filename": "a.csv"}).encode()
    ev = event("create_upload", path={"dataset": "sales"}, raw_body=base64.b64encode(payload)
               .decode())
    ev["isBase64Encoded"] = True
    status, _ = call(ingest.create_upload, ev)
    assert status == 201
    ev["body"] = base64.b64encode(b"x" * 70_000).decode()
    assert call(ingest.create_upload, ev)[0] == 413
