"""Grant states and transitions (edl/utils/grants.py): every move from every state, pure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edl.utils import grants
from edl.utils.grants import (
    ACTIVE,
    EXPIRED,
    REJECTED,
    REQUESTED,
    REVOKED,
    STATES,
    TRANSITIONS,
    Grant,
    GrantStateError,
    UnknownGrantError,
    dataset_of,
    format_time,
    new_grant_id,
    parse_time,
    requested_grant,
    transition,
)

NOW = parse_time("2026-12-02T10:00:00Z")
BOB = "arn:aws:iam::123456789012:user/bob"
ALICE = "arn:aws:iam::123456789012:user/alice"


def grant(state: str = REQUESTED, **changes) -> Grant:
    return replace(requested_grant("trials.3f9a2c1b7d40", dataset="trials", tier="sensitive",
                           grantee=BOB, level="read", requester=BOB, now=NOW,
                           justification="Q3 safety review", duration_seconds=30 * 86400),
                   state=state, **changes)


def test_the_moves_are_exactly_those_of_the_issue():
    assert TRANSITIONS == {"approve": (REQUESTED, ACTIVE), "reject": (REQUESTED, REJECTED),
                           "revoke": (ACTIVE, REVOKED), "expire": (ACTIVE, EXPIRED)}


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("state", STATES)
def test_every_action_from_every_state(action, state):
    source, target = TRANSITIONS[action]
    before = grant(state)
    if state == source:
        after = transition(before, action, actor=ALICE, now=NOW + 60, reason="why")
        assert after.state == target and after.updated_at == format_time(NOW + 60)
        assert (after.grant_id, after.grantee, after.level) == (before.grant_id, BOB, "read")
    else:
        with pytest.raises(GrantStateError) as caught:
            transition(before, action, actor=ALICE, now=NOW + 60)
        assert before.grant_id in caught.value.message and state in caught.value.message


def test_approval_starts_the_clock_and_names_the_approver():
    after = transition(grant(), "approve", actor=ALICE, now=NOW + 3600)
    assert after.approvers == (ALICE,) and after.decided_by == ALICE
    assert after.expires_at == format_time(NOW + 3600 + 30 * 86400) == "2027-01-01T11:00:00Z"
    open_ended = transition(grant(duration_seconds=None), "approve", actor=ALICE, now=NOW)
    assert open_ended.expires_at is None


def test_reject_and_revoke_keep_who_and_why_expiry_keeps_the_decider():
    rejected = transition(grant(), "reject", actor=ALICE, now=NOW, reason="not needed")
    assert (rejected.reason, rejected.decided_by) == ("not needed", ALICE)
    active = transition(grant(), "approve", actor=ALICE, now=NOW)
    revoked = transition(active, "revoke", actor=BOB, now=NOW + 5, reason="done")
    assert (revoked.reason, revoked.decided_by) == ("done", BOB)
    expired = transition(active, "expire", actor="edl-local-sweeper", now=NOW + 31 * 86400)
    assert expired.decided_by == ALICE and expired.reason == f"expired at {active.expires_at}"


def test_expired_is_judged_on_the_expiry_itself():
    active = transition(grant(), "approve", actor=ALICE, now=NOW)
    assert not active.expired(NOW + 30 * 86400 - 1)
    assert active.expired(NOW + 30 * 86400)
    assert not grant(duration_seconds=None).expired(NOW + 10**9)


def test_json_has_the_contract_keys_and_items_round_trip():
    active = transition(grant(), "approve", actor=ALICE, now=NOW)
    assert list(active.to_json()) == [
        "grant_id", "dataset", "tier", "grantee", "level", "state", "requester", "approvers",
        "justification", "reason", "expires_at", "duration_seconds", "created_at",
        "updated_at", "decided_by"]
    item = active.to_item()
    assert item["principal"] == BOB
    assert Grant.from_item(item) == active


def test_grant_ids_name_their_dataset():
    grant_id = new_grant_id("trials", "00112233445566778899aabbccddeeff")
    assert grant_id == "trials.aabbccddeeff"
    assert dataset_of(grant_id) == "trials"
    for bad in ("trials", "Trials.aabbccddeeff", "trials.aabbccddeef", "tr.aabbccddeeff", ""):
        with pytest.raises(UnknownGrantError):
            dataset_of(bad)


def test_times_are_iso_utc_and_sort_as_they_read():
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert parse_time(format_time(NOW)) == NOW
    assert format_time(NOW) < format_time(NOW + 1) < format_time(NOW + 86400)


def test_pointer_keys_stay_apart_from_grant_ids():
    key = grants.pointer_key("active", "read", BOB)
    assert key == f"active#read#{BOB}" and not grants.GRANT_ID_RE.fullmatch(key)
