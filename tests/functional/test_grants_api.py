"""The grant endpoints over moto's tables: a grant for each tier and level through its whole
life, who may ask, decide and end it, listings, and every bad input of issue 9 - each checked
for its status, code and message, nothing changed, and the refusal in the audit log."""

from __future__ import annotations

import json

import pytest

from edl import naming
from edl.core_resources.rest_api import common, credentials, grants, ingest
from edl.utils.grants import DuplicateGrantError, GrantStore, pointer_key, requested_grant
from tests.functional.rest_api_helpers import (
    ACCOUNT,
    ADMIN_ARN,
    LOCAL,
    assert_refused,
    call,
    event,
    user_arn,
)

BOB, CAROL, ALICE = user_arn("bob"), user_arn("carol"), user_arn("alice")
SSO_JANE = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Analyst_ab12/jane"
SERVICE = f"arn:aws:sts::{ACCOUNT}:assumed-role/etl-runner/nightly"
DATASETS = {"stats": "internal", "plans": "restricted", "trials": "sensitive"}
SENSITIVE_ASK = {"duration": "30d", "justification": "Q3 safety review"}


@pytest.fixture
def world(api_lake):
    for name, tier in DATASETS.items():
        api_lake.add_dataset(name, owner="alice", tier=tier)
    for user in ("alice", "bob", "carol"):
        api_lake.add_user(user)
    return api_lake


def ask(dataset: str, level: str, *, user: str | None = "bob", arn: str | None = None,
        **body) -> tuple[int, dict]:
    extra = SENSITIVE_ASK if DATASETS.get(dataset) == "sensitive" else {}
    return call(grants.request_grant, event("request_grant", user=user, arn=arn,
                                            path={"dataset": dataset},
                                            body={"level": level, **extra, **body}))


def decide(action: str, grant_id: str, *, user: str = "alice", **body) -> tuple[int, dict]:
    return call(getattr(grants, f"{action}_grant"),
                event(f"{action}_grant", user=user, path={"grant_id": grant_id}, body=body))


def vend(dataset: str, level: str = "read", *, user: str = "bob") -> tuple[int, dict]:
    return call(credentials.get_credentials, event(
        "get_credentials", user=user, path={"dataset": dataset}, query={"level": level}))


def actions(lake, dataset: str) -> list[str]:
    return [e["action"] for e in sorted(lake.audit_events(dataset), key=lambda e: e["at"])]


# -- a grant for each tier and level, from request to revoke -----------------------------------

@pytest.mark.parametrize("dataset, level", [
    ("stats", "write"), ("plans", "read"), ("plans", "write"), ("trials", "read"),
    ("trials", "write")])
def test_a_grant_from_request_to_revoke(world, dataset, level):
    status, _ = vend(dataset, level)
    assert status == 403

    status, asked = ask(dataset, level)
    assert status == 201 and asked["state"] == "requested" and asked["approvers"] == []
    assert asked["grantee"] == BOB == asked["requester"]
    assert asked["grant_id"].startswith(f"{dataset}.") and asked["tier"] == DATASETS[dataset]
    assert vend(dataset, level)[0] == 403   # requested is not active

    status, approved = decide("approve", asked["grant_id"])
    assert status == 200 and approved["state"] == "active"
    assert approved["approvers"] == [ALICE] == [approved["decided_by"]]
    if DATASETS[dataset] == "sensitive":
        assert approved["expires_at"] is not None and approved["duration_seconds"] == 30 * 86400

    status, got = vend(dataset, level)
    assert status == 200 and got["basis"] == "grant" and got["grant_id"] == asked["grant_id"]
    assert got["role_arn"] == naming.role_arn(
        ACCOUNT, naming.dataset_role(LOCAL.name, dataset, level))

    status, revoked = decide("revoke", asked["grant_id"], reason="project over")
    assert status == 200 and revoked["state"] == "revoked" and revoked["reason"] == "project over"
    assert vend(dataset, level)[0] == 403
    assert actions(world, dataset) == ["refuse", "request", "refuse", "approve", "vend",
                                       "revoke", "refuse"]
    beside = [i for i in world.items("grants") if "principal" not in i]
    assert [i for i in beside if i["dataset"] != "#expiry"] == []   # no pointer left
    assert [i for i in beside if i.get("grants")] == []             # nor a scheduled expiry


def test_internal_data_is_read_without_a_grant_and_read_is_not_granted(world):
    status, got = vend("stats", user="carol")
    assert status == 200 and got["basis"] == "default" and got["grant_id"] is None
    assert got["role_arn"].endswith(f":role/{naming.default_reader_role(LOCAL.name)}")
    assert_refused(world, grants.request_grant, event(
        "request_grant", user="carol", path={"dataset": "stats"}, body={"level": "read"}),
        403, "level_not_grantable", subject="stats", words=("edl-api credentials stats",))


def test_the_owner_or_an_admin_making_a_request_makes_it_active_at_once(world):
    status, made = ask("plans", "read", user="alice", grantee=BOB)
    assert status == 201 and made["state"] == "active" and made["approvers"] == [ALICE]
    assert made["requester"] == ALICE and made["grantee"] == BOB
    assert vend("plans")[0] == 200
    status, made = ask("stats", "write", arn=ADMIN_ARN, grantee=CAROL)
    assert status == 201 and made["state"] == "active"
    assert actions(world, "plans") == ["request", "approve", "vend"]


def test_sensitive_grants_take_a_second_person(world):
    status, made = ask("trials", "read", user="alice", grantee=BOB)
    assert status == 201 and made["state"] == "requested"   # the owner asked: not at once
    assert_refused(world, grants.approve_grant, event(
        "approve_grant", user="alice", path={"grant_id": made["grant_id"]}, body={}),
        403, "self_approval", subject="trials", words=("your own request",))
    assert_refused(world, grants.approve_grant, event(
        "approve_grant", user="bob", path={"grant_id": made["grant_id"]}, body={}),
        403, "self_approval", subject="trials", words=("a grant for yourself",))
    status, approved = decide("approve", made["grant_id"], user="admin")
    assert status == 200 and approved["approvers"] == [ADMIN_ARN]


def test_reject_needs_a_reason_and_ends_the_request(world):
    _, asked = ask("plans", "write")
    status, rejected = decide("reject", asked["grant_id"], reason="use the read grant")
    assert status == 200 and rejected["state"] == "rejected"
    assert rejected["reason"] == "use the read grant" and rejected["decided_by"] == ALICE
    status, again = ask("plans", "write")   # the open lock went with the request
    assert status == 201 and again["grant_id"] != asked["grant_id"]
    assert_refused(world, grants.reject_grant, event(
        "reject_grant", user="alice", path={"grant_id": again["grant_id"]},
        body={"reason": " "}), 400, "reason_required", subject="plans")


def test_the_grantee_may_give_a_grant_up(world):
    _, made = ask("plans", "read", user="alice", grantee=BOB)
    status, revoked = decide("revoke", made["grant_id"], user="bob")
    assert status == 200 and revoked["decided_by"] == BOB


# -- identity: people are IAM users and the sessions of person-session roles -------------------

def test_callers_as_people():
    assert common.Caller(BOB, ACCOUNT).person == "bob"
    assert common.Caller(f"arn:aws:iam::{ACCOUNT}:user/team/bob", ACCOUNT).person == "bob"
    jane = common.Caller(SSO_JANE, ACCOUNT)
    assert (jane.person, jane.principal) == ("jane", SSO_JANE)
    assert common.Caller(SERVICE, ACCOUNT).person is None
    assert common.Caller(SERVICE, ACCOUNT, person_roles=("etl-*",)).person == "nightly"
    assert common.Caller(ADMIN_ARN, ACCOUNT).actor(LOCAL).is_admin


def test_an_sso_session_is_a_grantee_and_a_service_role_is_not(world):
    status, made = ask("plans", "read", user=None, arn=SSO_JANE)
    assert status == 201 and made["grantee"] == SSO_JANE
    status, made = ask("plans", "write", user="alice", grantee=SSO_JANE)
    assert status == 201 and made["state"] == "active"
    assert_refused(world, grants.request_grant, event(
        "request_grant", arn=SERVICE, path={"dataset": "plans"}, body={"level": "read"}),
        403, "not_a_person", subject="plans")
    assert_refused(world, grants.request_grant, event(
        "request_grant", user="alice", path={"dataset": "plans"},
        body={"level": "read", "grantee": SERVICE}), 403, "not_a_person", subject="plans")


# -- bad input: each a clear error, nothing changed, the refusal audited -----------------------

@pytest.fixture
def pending(world):
    """bob's requested read grant on trials, and his active read grant on plans (made by an
    admin, so that the owner may decide it)."""
    requested = ask("trials", "read")[1]["grant_id"]
    active = ask("plans", "read", arn=ADMIN_ARN, grantee=BOB)[1]["grant_id"]
    return {"requested": requested, "active": active}


def _request(dataset: str, user: str = "bob", **body) -> dict:
    return event("request_grant", user=user, path={"dataset": dataset}, body=body)


def _decision(action: str, grant_id: str, user: str = "alice", **body) -> dict:
    return event(f"{action}_grant", user=user, path={"grant_id": grant_id}, body=body)


BAD_INPUT = [
    ("unknown dataset", "request_grant", lambda g: _request("nope_nope", level="read"),
     404, "not_found", "nope_nope", ("nope_nope",)),
    ("unknown grantee", "request_grant",
     lambda g: _request("plans", "alice", level="read", grantee=user_arn("ghost")),
     404, "unknown_grantee", "plans", ("ghost",)),
    ("grantee of another account", "request_grant",
     lambda g: _request("plans", "alice", level="read",
                        grantee="arn:aws:iam::999999999999:user/bob"),
     404, "unknown_grantee", "plans", ("999999999999",)),
    ("grantee not an ARN", "request_grant",
     lambda g: _request("plans", "alice", level="read", grantee="bob"),
     400, "invalid_grantee", "plans", ("not an IAM ARN",)),
    ("someone else as grantee", "request_grant",
     lambda g: _request("plans", "carol", level="read", grantee=BOB),
     403, "grantee_not_allowed", "plans", ("owner",)),
    ("unknown grant id", "approve_grant", lambda g: _decision("approve", "trials.0000000000ff"),
     404, "unknown_grant", "trials", ("trials.0000000000ff",)),
    ("level not grantable", "request_grant", lambda g: _request("stats", level="read"),
     403, "level_not_grantable", "stats", ("internal",)),
    ("--for missing on sensitive", "request_grant",
     lambda g: _request("trials", level="write", justification="why"),
     400, "expiry_required", "trials", ("90 days",)),
    ("--for over the maximum", "request_grant",
     lambda g: _request("trials", level="write", justification="why", duration="91d"),
     400, "expiry_too_long", "trials", ("90 days",)),
    ("--for zero", "request_grant",
     lambda g: _request("trials", level="write", justification="why", duration="0d"),
     400, "invalid_duration", "trials", ("more than zero",)),
    ("--for negative", "request_grant",
     lambda g: _request("trials", level="write", justification="why", duration="-3d"),
     400, "invalid_duration", "trials", ("not a duration",)),
    ("no justification", "request_grant",
     lambda g: _request("trials", level="write", duration="30d"),
     400, "justification_required", "trials", ("justification",)),
    ("approving your own request", "approve_grant",
     lambda g: _decision("approve", g["requested"], "bob"),
     403, "self_approval", "trials", ("your own request",)),
    ("approving as someone who may not", "approve_grant",
     lambda g: _decision("approve", g["requested"], "carol"),
     403, "not_an_approver", "trials", ("alice",)),
    ("rejecting as someone who may not", "reject_grant",
     lambda g: _decision("reject", g["requested"], "carol", reason="no"),
     403, "not_an_approver", "trials", ("alice",)),
    ("approving an active grant", "approve_grant", lambda g: _decision("approve", g["active"]),
     409, "wrong_state", "plans", ("active",)),
    ("revoking a requested grant", "revoke_grant", lambda g: _decision("revoke", g["requested"]),
     409, "wrong_state", "trials", ("requested",)),
    ("revoking as someone who may not", "revoke_grant",
     lambda g: _decision("revoke", g["active"], "carol"),
     403, "not_a_revoker", "plans", ("alice",)),
    ("asking again", "request_grant", lambda g: _request("plans", level="read"),
     409, "duplicate_grant", "plans", ("already has",)),
    ("credentials without a grant", "get_credentials",
     lambda g: event("get_credentials", user="carol", path={"dataset": "trials"}),
     403, "no_grant", "trials", ("edl-api grant request trials --level read --for 30d",)),
    ("credentials of an unknown dataset", "get_credentials",
     lambda g: event("get_credentials", user="bob", path={"dataset": "nope_nope"}),
     404, "not_found", "nope_nope", ("nope_nope",)),
    ("showing someone else's grant", "get_grant",
     lambda g: event("get_grant", user="carol", path={"grant_id": g["active"]}),
     403, "not_allowed", "plans", ("grantee",)),
]


@pytest.mark.parametrize("name, endpoint, build, status, code, subject, words", BAD_INPUT,
                         ids=[case[0] for case in BAD_INPUT])
def test_bad_input(world, pending, name, endpoint, build, status, code, subject, words):
    module = credentials if endpoint == "get_credentials" else grants
    body = assert_refused(world, getattr(module, endpoint), build(pending), status, code,
                          subject=subject, words=words)
    if code == "duplicate_grant":
        assert pending["active"] in body["error"]["message"]


# -- listing and showing ----------------------------------------------------------------------

def test_who_sees_which_grants(pending, world):
    ask("plans", "write", user="carol")
    listed = lambda user, **q: {g["grant_id"] for g in call(grants.list_grants, event(  # noqa: E731
        "list_grants", user=user, query={k: str(v).lower() for k, v in q.items()}))[1]["grants"]}
    everything = set(pending.values())
    assert listed("bob") == everything                       # no filter: mine
    assert listed("bob", mine=True) == everything
    assert listed("bob", dataset="plans") == {pending["active"]}
    assert len(listed("alice", dataset="plans")) == 2        # the owner sees all of plans
    assert listed("carol", dataset="plans") == listed("carol") != set()
    assert listed("bob", state="requested") == {pending["requested"]}
    assert listed("alice", pending=True) == {pending["requested"]} | listed("carol")
    assert listed("admin", pending=True) == listed("alice", pending=True)
    assert listed("bob", pending=True) == set()


def test_pages_of_grants_skip_the_items_beside_them(world):
    for user in ("u1", "u2", "u3", "u4", "u5"):
        world.add_user(user)
        assert ask("plans", "read", user="alice", grantee=user_arn(user))[0] == 201
    seen, token = [], None
    while True:
        query = {"dataset": "plans", "limit": "2", **({"next_token": token} if token else {})}
        status, body = call(grants.list_grants, event("list_grants", user="alice", query=query))
        assert status == 200 and len(body["grants"]) <= 2
        seen += [g["grantee"] for g in body["grants"]]
        token = body["next_token"]
        if not token:
            break
    assert sorted(seen) == sorted(user_arn(u) for u in ("u1", "u2", "u3", "u4", "u5"))


def test_pending_pages(world):
    for user in ("u1", "u2", "u3"):
        world.add_user(user)
        assert ask("plans", "read", user=user)[0] == 201
    first = call(grants.list_grants, event("list_grants", user="alice",
                                           query={"pending": "true", "limit": "2"}))[1]
    second = call(grants.list_grants, event("list_grants", user="alice", query={
        "pending": "true", "limit": "2", "next_token": first["next_token"]}))[1]
    assert len(first["grants"]) == 2 and len(second["grants"]) == 1
    assert second["next_token"] is None


def test_show_a_grant(pending):
    for user in ("bob", "alice", "admin"):
        status, shown = call(grants.get_grant, event("get_grant", user=user,
                                                     path={"grant_id": pending["active"]}))
        assert status == 200 and shown["state"] == "active" and shown["grantee"] == BOB


# -- writes through a write grant, and revokes in AWS ------------------------------------------

def test_a_write_grant_lets_its_holder_ingest(world):
    upload = lambda: call(ingest.create_upload, event(  # noqa: E731
        "create_upload", user="bob", path={"dataset": "plans"}, body={"filename": "a.csv"}))
    assert upload()[0] == 403
    _, made = ask("plans", "write", user="alice", grantee=BOB)
    assert upload()[0] == 201
    status, read = vend("plans", "read")    # a write grant also reads
    assert status == 200 and read["basis"] == "grant" and read["grant_id"] == made["grant_id"]
    decide("revoke", made["grant_id"])
    assert upload()[0] == 403


def test_revoke_in_aws_ends_the_live_sessions_of_the_roles(world):
    world.lake.is_local = False
    iam = world.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "sts:AssumeRole"}]})
    roles = [naming.dataset_role(LOCAL.name, "plans", level) for level in ("read", "write")]
    _, made = ask("plans", "write", user="alice", grantee=BOB)
    iam.create_role(RoleName=roles[1], AssumeRolePolicyDocument=trust)
    status, body = decide("revoke", made["grant_id"])
    assert status == 503 and roles[0] in body["error"]["message"]   # the read role is missing
    assert call(grants.get_grant, event("get_grant", path={"grant_id": made["grant_id"]})
                )[1]["state"] == "active"                           # so nothing was revoked
    iam.create_role(RoleName=roles[0], AssumeRolePolicyDocument=trust)
    status, revoked = decide("revoke", made["grant_id"])
    assert status == 200 and revoked["state"] == "revoked"
    for role in roles:
        document = iam.get_role_policy(RoleName=role, PolicyName=grants.REVOKE_POLICY)[
            "PolicyDocument"]
        document = json.loads(document) if isinstance(document, str) else document
        statement = document["Statement"][0]
        assert (statement["Effect"], statement["Action"]) == ("Deny", "*")
        assert statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == \
            revoked["updated_at"]


# -- the store's items beside the grants, after a crash -----------------------------------------

def test_a_lock_left_by_a_crash_is_taken_over_and_a_live_one_is_not(world):
    now = world.api.now()
    store = GrantStore(world.metadata.table("grants"), clock=lambda: now)
    table = world.metadata.table("grants")
    lock = {"dataset": "plans", "grant_id": pointer_key("open", "read", BOB)}

    def new(hex_id: str):
        return requested_grant(f"plans.{hex_id}", dataset="plans", tier="restricted",
                               grantee=BOB, level="read", requester=BOB, now=now)

    table.put_item(Item={**lock, "points_to": "plans.00000000dead", "at": int(now) - 10})
    with pytest.raises(DuplicateGrantError):     # its writer may still be writing the grant
        store.create(new("0000000000a1"))
    table.put_item(Item={**lock, "points_to": "plans.00000000dead", "at": int(now) - 3600})
    store.create(new("0000000000a2"))            # it died: the lock is taken over
    assert table.get_item(Key=lock)["Item"]["points_to"] == "plans.0000000000a2"
    with pytest.raises(DuplicateGrantError) as caught:
        store.create(new("0000000000a3"))
    assert caught.value.grant_id == "plans.0000000000a2"
