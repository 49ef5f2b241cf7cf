"""The audit log over moto: append-only, every request, decision, vend, expiry and refusal with
who, when, what and why; who may read it, `since` and pages; and expiry by the sweep with an
injected clock (refused at once, `expire` apart from `revoke`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from edl.core_resources.rest_api import audit, credentials, grants
from edl.utils.audit import LAKE_SUBJECT, AuditLog, event_time
from edl.utils.grants import parse_time
from edl.utils.sweep import Sweeper
from tests.functional.rest_api_helpers import (
    ADMIN_ARN,
    assert_refused,
    call,
    event,
    user_arn,
)

BOB = user_arn("bob")
T0 = float(int(parse_time("2026-12-02T10:00:00Z")))


@pytest.fixture
def world(api_lake):
    api_lake.add_dataset("trials", owner="alice", tier="sensitive")
    api_lake.add_dataset("plans", owner="alice", tier="restricted")
    api_lake.add_user("bob")
    at(api_lake, T0)
    return api_lake


def at(world, seconds: float) -> None:
    """The API's clock from `seconds` on, a millisecond further at every reading (events of
    one millisecond have no order of their own)."""
    ticks = iter(range(10**6))
    world.api.now = lambda: seconds + next(ticks) / 1000


def listed(user: str = "alice", **query) -> tuple[int, dict]:
    return call(audit.list_audit, event("list_audit", user=user, query=query or None))


def request_trials(duration: str = "30d") -> str:
    status, made = call(grants.request_grant, event(
        "request_grant", user="bob", path={"dataset": "trials"},
        body={"level": "read", "duration": duration, "justification": "Q3 safety review"}))
    assert status == 201, made
    return made["grant_id"]


def approve(grant_id: str) -> dict:
    status, made = call(grants.approve_grant, event(
        "approve_grant", user="alice", path={"grant_id": grant_id}, body={"reason": "ok"}))
    assert status == 200, made
    return made


def vend(dataset: str = "trials") -> tuple[int, dict]:
    return call(credentials.get_credentials, event(
        "get_credentials", user="bob", path={"dataset": dataset}))


# -- append-only ------------------------------------------------------------------------------

def test_events_are_never_overwritten(world):
    suffixes = iter(["aaaa0000", "aaaa0000", "bbbb1111"])
    log = AuditLog(world.metadata.table("audit"), clock=lambda: T0,
                   suffix=lambda: next(suffixes))
    first = log.record(dataset="trials", action="vend", actor=BOB, reason="first")
    second = log.record(dataset="trials", action="vend", actor=BOB, reason="second")
    assert first["event_id"] == f"{event_time(T0)}#aaaa0000" == "2026-12-02T10:00:00.000Z#aaaa0000"
    assert second["event_id"].endswith("#bbbb1111")
    assert [e["reason"] for e in sorted(world.audit_events("trials"),
                                        key=lambda e: e["event_id"])] == ["first", "second"]
    with pytest.raises(ClientError) as caught:   # what the log's own writes are conditioned on
        world.metadata.table("audit").put_item(
            Item={"subject": "trials", "event_id": first["event_id"], "reason": "rewritten"},
            ConditionExpression="attribute_not_exists(event_id)")
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_every_step_is_audited_with_who_what_and_why(world):
    assert vend()[0] == 403
    grant_id = request_trials()
    approve(grant_id)
    assert vend()[0] == 200
    call(grants.revoke_grant, event("revoke_grant", user="alice", path={"grant_id": grant_id},
                                    body={"reason": "study closed"}))
    status, body = listed(dataset="trials")
    assert status == 200 and body["next_token"] is None
    steps = [(e["action"], e["actor"], e["decision"], e["reason"]) for e in body["events"]]
    assert steps[1:] == [
        ("request", BOB, "allowed", "Q3 safety review"),
        ("approve", user_arn("alice"), "allowed", "ok"),
        ("vend", BOB, "allowed", None),
        ("revoke", user_arn("alice"), "allowed", "study closed")]
    refusal = body["events"][0]
    assert (refusal["action"], refusal["decision"], refusal["detail"]["tried"]) == \
        ("refuse", "refused", "vend")
    assert {e["grant_id"] for e in body["events"][1:]} == {grant_id}
    assert all(e["at"].startswith("2026-12-02T10:00:00.") and e["dataset"] == "trials"
               for e in body["events"])
    assert body["events"][3]["detail"]["basis"] == "grant"


# -- who reads it, since when, page by page ----------------------------------------------------

def test_the_owner_and_admins_read_a_dataset_s_events(world):
    request_trials()
    assert listed("alice", dataset="trials")[0] == 200
    assert listed("admin", dataset="trials")[0] == 200
    assert_refused(world, audit.list_audit, event("list_audit", user="bob",
                                                  query={"dataset": "trials"}),
                   403, "not_allowed", subject="trials", words=("alice",))
    assert_refused(world, audit.list_audit, event("list_audit", user="bob"),
                   400, "dataset_required", subject=LAKE_SUBJECT)
    assert_refused(world, audit.list_audit, event("list_audit", user="bob",
                                                  query={"dataset": "nope_nope"}),
                   404, "not_found", subject="nope_nope")


def test_an_admin_reads_every_dataset_s_events(world):
    request_trials()
    call(grants.request_grant, event("request_grant", arn=ADMIN_ARN, path={"dataset": "plans"},
                                     body={"level": "read", "grantee": BOB}))
    status, body = listed("admin")
    assert status == 200
    assert {e["dataset"] for e in body["events"]} == {"trials", "plans"}


def test_since_is_a_window_back_from_now(world):
    at(world, T0 - 7200)
    request_trials()
    at(world, T0 - 60)
    assert vend("plans")[0] == 403
    at(world, T0)
    assert [e["action"] for e in listed(dataset="trials", since="1h")[1]["events"]] == []
    assert [e["action"] for e in listed(dataset="trials", since="3h")[1]["events"]] == ["request"]
    assert len(listed(dataset="plans", since="5m")[1]["events"]) == 1
    assert listed("admin", since="5m")[1]["events"][0]["dataset"] == "plans"
    status, body = listed(dataset="trials", since="0s")
    assert status == 400 and body["error"]["code"] == "invalid_duration"
    assert listed(dataset="trials", since="999999999d")[0] == 200   # before 1970: everything


def test_events_page(world):
    for _ in range(5):
        vend()
    seen, token = [], None
    while True:
        query = {"dataset": "trials", "limit": "2", **({"next_token": token} if token else {})}
        status, body = listed(**query)
        assert status == 200 and len(body["events"]) <= 2
        seen += [e["event_id"] for e in body["events"]]
        token = body["next_token"]
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen)


# -- expiry ------------------------------------------------------------------------------------

def sweep(world, seconds: float):
    for bucket in {world.lake.data_bucket(d) for d in world.metadata.list_datasets()}:
        world.client("s3").create_bucket(Bucket=bucket)
    return Sweeper(world.lake, now=lambda: datetime.fromtimestamp(seconds, UTC)).sweep()


def test_a_short_grant_expires_refused_at_once_and_swept_as_expired(world):
    grant_id = request_trials(duration="90s")
    made = approve(grant_id)
    assert made["expires_at"] == "2026-12-02T10:01:30Z"
    at(world, T0 + 60)
    assert vend()[0] == 200
    assert sweep(world, T0 + 60).expired == ()           # not yet

    at(world, T0 + 90)
    assert vend()[0] == 403                               # refused before the sweep ran
    report = sweep(world, T0 + 91)
    assert report.expired == (grant_id,) and report.errors == ()
    assert report.to_dict()["expired"] == [grant_id]
    status, shown = call(grants.get_grant, event("get_grant", user="bob",
                                                 path={"grant_id": grant_id}))
    assert status == 200 and shown["state"] == "expired"
    assert shown["reason"] == "expired at 2026-12-02T10:01:30Z"
    beside = [i for i in world.items("grants") if "principal" not in i]
    assert [i for i in beside if i["dataset"] != "#expiry"] == []   # pointer and lock gone
    expiry = [e for e in world.audit_events("trials") if e["action"] == "expire"]
    assert len(expiry) == 1 and expiry[0]["actor"] == "edl-local-sweeper"
    assert expiry[0]["grant_id"] == grant_id and expiry[0]["at"].startswith("2026-12-02T10:01:31")
    assert not [e for e in world.audit_events("trials") if e["action"] == "revoke"]

    assert sweep(world, T0 + 200).expired == ()           # once
    assert sweep(world, T0 + 3600).expired == ()          # the next hour: 10:00 is cleared
    assert [(i["grant_id"], i.get("hour")) for i in world.items("grants")
            if i["dataset"] == "#expiry"] == [("cursor", "2026-12-02T11")]
    assert_refused(world, credentials.get_credentials, event(
        "get_credentials", user="bob", path={"dataset": "trials"}), 403, "no_grant",
        subject="trials")
    assert_refused(world, grants.revoke_grant, event(
        "revoke_grant", user="alice", path={"grant_id": grant_id}, body={}), 409, "wrong_state",
        subject="trials", words=("expired",))
    assert request_trials() != grant_id                   # and bob may ask again


def test_no_credentials_and_no_refusal_go_out_unaudited(world):
    class Unwritable:
        def put_item(self, **kwargs):
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}},
                              "PutItem")

    world.api.audit = lambda: AuditLog(Unwritable())   # type: ignore[method-assign]
    status, body = call(credentials.get_credentials, event(
        "get_credentials", user="alice", path={"dataset": "plans"}))
    assert status == 503 and "audit log" in body["error"]["message"]
    assert "access_key_id" not in body
    status, body = vend()            # bob, without a grant: not even the refusal
    assert status == 503 and "audit log" in body["error"]["message"]
