"""The credential broker (`GET /datasets/{dataset}/credentials`) over moto: why the caller gets
credentials (default, owner, grant, break-glass), how long they last, whom the session names,
and that the grant check is a keyed read whatever the number of grants."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from edl import naming
from edl.core_resources.rest_api import common, credentials, grants
from edl.utils.grants import format_time, parse_time, pointer_key
from tests.functional.rest_api_helpers import (
    ACCOUNT,
    ADMIN_ARN,
    CONFIG,
    LOCAL,
    REGION,
    assert_refused,
    call,
    event,
    user_arn,
)

BOB = user_arn("bob")
SSO_JANE = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Analyst_ab12/jane"


class RecordingSts:
    """An STS that answers like AWS and keeps what it was asked."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.calls: list[dict] = []

    def assume_role(self, **kwargs):
        self.calls.append(kwargs)
        expiration = datetime.fromtimestamp(self.clock() + kwargs["DurationSeconds"], UTC)
        return {"Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret",
                                "SessionToken": "token", "Expiration": expiration}}


@pytest.fixture
def world(api_lake):
    for name, tier in (("stats", "internal"), ("plans", "restricted"), ("trials", "sensitive")):
        api_lake.add_dataset(name, owner="alice", tier=tier)
    api_lake.add_user("bob")
    return api_lake


@pytest.fixture
def sts(world):
    now = float(int(time.time()))
    world.api.now = lambda: now
    recording = RecordingSts(lambda: world.api.now())
    world.overrides["sts"] = recording
    return recording


def grant(dataset: str, level: str, *, duration: str | None = None, grantee: str = BOB) -> dict:
    body = {"level": level, "grantee": grantee,
            **({"duration": duration} if duration else {}),
            **({"justification": "Q3"} if dataset == "trials" else {})}
    status, made = call(grants.request_grant, event(
        "request_grant", arn=ADMIN_ARN, path={"dataset": dataset}, body=body))
    assert status == 201, made
    if made["state"] == "requested":
        status, made = call(grants.approve_grant, event(
            "approve_grant", user="alice", path={"grant_id": made["grant_id"]}, body={}))
        assert status == 200, made
    return made


def vend(dataset: str, *, user: str = "bob", arn: str | None = None, **query) -> tuple[int, dict]:
    return call(credentials.get_credentials, event(
        "get_credentials", user=user, arn=arn, path={"dataset": dataset}, query=query or None))


def role(dataset: str, level: str) -> str:
    return naming.role_arn(ACCOUNT, naming.dataset_role(LOCAL.name, dataset, level))


# -- why: the basis of every vend -------------------------------------------------------------

def test_credentials_have_the_contract_keys_and_come_from_sts(world):
    status, got = vend("stats", user="carol")
    assert status == 200
    assert set(got) == {"dataset", "level", "role_arn", "basis", "grant_id", "access_key_id",
                        "secret_access_key", "session_token", "expiration", "region", "bucket",
                        "prefix"}
    assert got["access_key_id"].startswith("ASIA") and got["session_token"]
    assert (got["dataset"], got["level"], got["basis"], got["prefix"]) == \
        ("stats", "read", "default", "stats/")
    assert got["bucket"] == naming.data_bucket(CONFIG.bucket_prefix, LOCAL.name, "internal",
                                               REGION)
    assert got["region"] == REGION and got["expiration"].endswith("Z")


@pytest.mark.parametrize("dataset, level, who, basis, role_of", [
    ("stats", "read", "carol", "default", None),
    ("plans", "read", "alice", "owner", "read"),
    ("trials", "write", "alice", "owner", "write"),
    ("trials", "read", "admin", "break_glass", "read"),
])
def test_access_without_a_grant(world, sts, dataset, level, who, basis, role_of):
    status, got = vend(dataset, user=who, level=level)
    assert status == 200 and got["basis"] == basis and got["grant_id"] is None
    expected = role(dataset, role_of) if role_of else naming.role_arn(
        ACCOUNT, naming.default_reader_role(LOCAL.name))
    assert got["role_arn"] == sts.calls[-1]["RoleArn"] == expected
    event_ = [e for e in world.audit_events(dataset) if e["decision"] == "allowed"][-1]
    assert event_["action"] == ("break_glass" if basis == "break_glass" else "vend")
    assert event_["detail"]["basis"] == basis and event_["actor"] == user_arn(who)


def test_a_grant_gives_its_level_and_a_write_grant_also_read(world, sts):
    assert_refused(world, credentials.get_credentials, event(
        "get_credentials", user="bob", path={"dataset": "plans"}, query={"level": "write"}),
        403, "no_grant", subject="plans", words=("edl-api grant request plans --level write",))
    made = grant("plans", "write")
    for level in ("write", "read"):
        status, got = vend("plans", level=level)
        assert status == 200 and got["basis"] == "grant" and got["grant_id"] == made["grant_id"]
        assert got["role_arn"] == role("plans", level)
    read_only = grant("trials", "read", duration="30d")
    assert vend("trials", level="read")[1]["grant_id"] == read_only["grant_id"]
    assert vend("trials", level="write")[0] == 403


# -- how long, and in whose name ---------------------------------------------------------------

@pytest.mark.parametrize("asked, seconds", [(None, 3600), ("15m", 900), ("5m", 900),
                                            ("30m", 1800), ("2h", 3600)])
def test_durations_are_between_15_minutes_and_an_hour(world, sts, asked, seconds):
    query = {"duration": asked} if asked else {}
    status, got = vend("stats", user="carol", **query)
    assert status == 200 and sts.calls[-1]["DurationSeconds"] == seconds
    assert "Policy" not in sts.calls[-1]
    assert got["expiration"] == format_time(world.api.now() + seconds)


def test_credentials_never_outlive_the_grant(world, sts):
    made = grant("trials", "read", duration="1h")
    expires = parse_time(made["expires_at"])

    world.api.now = lambda: expires - 1800             # half an hour left: a shorter session
    status, got = vend("trials")
    assert status == 200 and sts.calls[-1]["DurationSeconds"] == 1800
    assert got["expiration"] == made["expires_at"]

    world.api.now = lambda: expires - 600               # ten minutes left: STS's 15 minutes,
    status, got = vend("trials")                        # cut at the expiry by a session policy
    assert status == 200 and sts.calls[-1]["DurationSeconds"] == 900
    policy = json.loads(sts.calls[-1]["Policy"])
    assert policy["Statement"][0]["Condition"] == {
        "DateLessThan": {"aws:CurrentTime": made["expires_at"]}}
    assert got["expiration"] == made["expires_at"]

    world.api.now = lambda: expires                     # expired, even before any sweep
    assert_refused(world, credentials.get_credentials, event(
        "get_credentials", user="bob", path={"dataset": "trials"}), 403, "no_grant",
        subject="trials")


class RefusingSts:
    """An STS whose roles do not trust the broker (a lake deployed by an older EDL)."""

    def assume_role(self, **kwargs):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}},
                          "AssumeRole")


def test_a_role_the_broker_may_not_assume_is_a_503_naming_it_and_vends_nothing(world):
    world.overrides["sts"] = RefusingSts()
    status, got = vend("stats", user="carol")
    assert (status, got["error"]["code"]) == (503, "broker_unavailable")
    assert naming.default_reader_role(LOCAL.name) in got["error"]["message"]
    assert "deploy-core" in got["error"]["message"]
    assert not [e for e in world.audit_events("stats") if e["action"] == "vend"]


def test_the_session_is_named_after_the_caller(world, sts):
    vend("stats", user="carol")
    assert sts.calls[-1]["RoleSessionName"] == "carol" == sts.calls[-1]["SourceIdentity"]
    vend("stats", arn=SSO_JANE)
    assert sts.calls[-1]["RoleSessionName"] == "jane"


@pytest.mark.parametrize("arn, caller_id, name", [
    (user_arn("bob"), "AIDAEXAMPLE", "bob"),
    (SSO_JANE.replace("jane", "jane.doe@example.com"), "AROA:jane", "jane.doe@example.com"),
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/etl/nightly", "AROAEXAMPLE:nightly",
     "AROAEXAMPLE-nightly"),
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/etl/x", "", "edl-x"),
    (SSO_JANE.replace("jane", "j" * 80), "", "j" * 64),
    (SSO_JANE.replace("jane", "jäne"), "", "j-ne"),
])
def test_session_names_are_what_sts_takes(arn, caller_id, name):
    caller = common.Caller(arn, ACCOUNT, caller_id=caller_id)
    assert credentials.session_name(caller) == name


# -- the grant check is keyed ------------------------------------------------------------------

def test_the_grant_check_is_one_keyed_read_among_thousands_of_grants(world, sts):
    """5,000 grants over 500 datasets (the bench measures 50,000 against the local API): the
    vend reads the dataset and the grant's active pointers by key, in one call, and appends the
    audit event - no scan, no query - so its cost does not grow with the table."""
    table = world.metadata.table("grants")
    expires = format_time(world.api.now() + 86400)
    with table.batch_writer() as batch:
        for i in range(5000):
            dataset, grantee = f"ds_{i % 500:03d}", user_arn(f"user{i}")
            grant_id = f"{dataset}.{i:012x}"
            batch.put_item(Item={"dataset": dataset, "grant_id": grant_id, "principal": grantee,
                                 "grantee": grantee, "state": "active", "level": "read"})
            batch.put_item(Item={"dataset": dataset, "expires_at": expires, "points_to": grant_id,
                                 "grant_id": pointer_key("active", "read", grantee)})
    made = grant("plans", "read")
    calls: list[str] = []
    events = world.dynamodb.meta.client.meta.events

    def count(model, **kwargs):
        calls.append(model.name)

    events.register("before-call.dynamodb", count)
    try:
        status, got = vend("plans")
    finally:
        events.unregister("before-call.dynamodb", count)
    assert status == 200 and got["grant_id"] == made["grant_id"]
    # the dataset and its active pointers together (BatchGetItem), then the audit event
    assert calls == ["BatchGetItem", "PutItem"]


def test_an_api_role_without_batch_reads_still_vends_by_key(world, sts, monkeypatch, caplog):
    """A lake whose API role comes from an older deploy-core may not BatchGetItem: the broker
    reads the same items one by one (and logs that core wants redeploying)."""
    from botocore.exceptions import ClientError

    made = grant("plans", "read")

    def denied(*args, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                          "BatchGetItem")

    monkeypatch.setattr(world.metadata, "get_many", denied)
    status, got = vend("plans")
    assert status == 200 and got["basis"] == "grant" and got["grant_id"] == made["grant_id"]
    assert vend("plans", user="carol")[0] == 403
    assert "redeploy core" in caplog.text
