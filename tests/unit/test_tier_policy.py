"""The tier policy (edl/utils/tier_policy.py) over the shipped tiers.yaml: pure checks."""

from __future__ import annotations

import pytest

from edl.config import TierPolicy, load_config
from edl.utils import tier_policy
from edl.utils.tier_policy import Actor, PolicyRefusal

TIERS = load_config().tiers
INTERNAL, RESTRICTED, SENSITIVE = TIERS["internal"], TIERS["restricted"], TIERS["sensitive"]
OPEN = TierPolicy(name="restricted", description="", default_read=False,
                  grantable_levels=("read", "write"), approval="none", justification=False,
                  max_grant_days=None)
DAY = 86400


def arn(name: str) -> str:
    return f"arn:aws:iam::123456789012:user/{name}"


ALICE = Actor(arn("alice"), "alice", is_admin=False)      # the owner
ADMIN = Actor(arn("admin"), "admin", is_admin=True)
BOB = Actor(arn("bob"), "bob", is_admin=False)
CAROL = Actor(arn("carol"), "carol", is_admin=False)
SERVICE = Actor("arn:aws:sts::123456789012:assumed-role/etl/x", None, is_admin=False)


def refused(check, *args, **kwargs) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        check(*args, **kwargs)
    return caught.value


def test_the_shipped_tiers_are_what_the_issue_asks():
    assert (INTERNAL.default_read, INTERNAL.grantable_levels, INTERNAL.approval) == \
        (True, ("write",), "owner_or_admin")
    assert (RESTRICTED.default_read, RESTRICTED.approval, RESTRICTED.justification) == \
        (False, "owner_or_admin", False)
    assert (SENSITIVE.approval, SENSITIVE.justification, SENSITIVE.max_grant_days) == \
        ("second_person", True, 90)


@pytest.mark.parametrize("policy, level, duration, justification, status, code", [
    (INTERNAL, "read", None, None, 403, "level_not_grantable"),
    (SENSITIVE, "read", 30 * DAY, None, 400, "justification_required"),
    (SENSITIVE, "read", 30 * DAY, "   ", 400, "justification_required"),
    (SENSITIVE, "read", None, "why", 400, "expiry_required"),
    (SENSITIVE, "read", 91 * DAY, "why", 400, "expiry_too_long"),
    (SENSITIVE, "write", 0, "why", 400, "invalid_duration"),
    (SENSITIVE, "write", -5, "why", 400, "invalid_duration"),
    (RESTRICTED, "read", 3651 * DAY, None, 400, "expiry_too_long"),
    (RESTRICTED, "read", None, "x" * 1001, 400, "text_too_long"),
])
def test_bad_requests(policy, level, duration, justification, status, code):
    error = refused(tier_policy.check_request, policy, dataset="trials", level=level,
                    duration=duration, justification=justification)
    assert (error.status, error.code) == (status, code)


def test_internal_read_refusal_says_no_grant_is_needed():
    error = refused(tier_policy.check_request, INTERNAL, dataset="stats", level="read",
                    duration=None, justification=None)
    assert "edl-api credentials stats" in error.message and "grantable: write" in error.message


@pytest.mark.parametrize("policy, level, duration, justification", [
    (INTERNAL, "write", None, None),
    (RESTRICTED, "read", None, None),
    (RESTRICTED, "write", 12 * 3600, None),
    (SENSITIVE, "read", 90 * DAY, "Q3 safety review"),
])
def test_good_requests(policy, level, duration, justification):
    tier_policy.check_request(policy, dataset="trials", level=level, duration=duration,
                              justification=justification)


def test_naming_another_grantee_takes_the_owner_or_an_admin():
    tier_policy.check_grantee(ALICE, BOB.principal, owner="alice")
    tier_policy.check_grantee(ADMIN, BOB.principal, owner="alice")
    tier_policy.check_grantee(BOB, BOB.principal, owner="alice")
    assert refused(tier_policy.check_grantee, CAROL, BOB.principal, owner="alice").code == \
        "grantee_not_allowed"


@pytest.mark.parametrize("policy, actor, requester, grantee, code", [
    (RESTRICTED, CAROL, BOB, BOB, "not_an_approver"),
    (SENSITIVE, CAROL, BOB, BOB, "not_an_approver"),
    (SENSITIVE, BOB, BOB, BOB, "self_approval"),          # your own request
    (SENSITIVE, ALICE, ALICE, BOB, "self_approval"),      # the owner asked: someone else decides
    (SENSITIVE, ADMIN, BOB, ADMIN, "self_approval"),      # a grant for yourself
    (RESTRICTED, ALICE, BOB, ALICE, "self_approval"),
    (OPEN, BOB, BOB, BOB, "self_approval"),
    (INTERNAL, SERVICE, BOB, BOB, "not_an_approver"),
])
def test_who_may_not_decide(policy, actor, requester, grantee, code):
    error = refused(tier_policy.check_decision, policy, actor, requester=requester.principal,
                    grantee=grantee.principal, owner="alice")
    assert (error.status, error.code) == (403, code)
    assert not tier_policy.may_approve(policy, actor, requester=requester.principal,
                                       grantee=grantee.principal, owner="alice")


@pytest.mark.parametrize("policy, actor, requester", [
    (RESTRICTED, ALICE, BOB), (RESTRICTED, ADMIN, BOB), (INTERNAL, ALICE, BOB),
    (SENSITIVE, ALICE, BOB), (SENSITIVE, ADMIN, ALICE), (OPEN, CAROL, BOB),
])
def test_who_may_decide(policy, actor, requester):
    tier_policy.check_decision(policy, actor, requester=requester.principal,
                               grantee=BOB.principal, owner="alice")


@pytest.mark.parametrize("policy, actor, grantee, at_once", [
    (INTERNAL, ALICE, BOB, True),        # write on internal, made by the owner
    (INTERNAL, BOB, BOB, False),
    (RESTRICTED, ADMIN, BOB, True),
    (RESTRICTED, ALICE, ALICE, False),   # a grant for yourself is never your own decision
    (SENSITIVE, ALICE, BOB, False),      # second person: never at once
    (OPEN, BOB, BOB, True),
])
def test_requests_made_by_an_approver_are_active_at_once(policy, actor, grantee, at_once):
    assert tier_policy.active_at_once(policy, actor, grantee=grantee.principal,
                                      owner="alice") is at_once


def test_who_may_revoke():
    for actor in (ALICE, ADMIN, BOB):   # owner, admin, the grantee giving it up
        tier_policy.check_revoke(actor, grantee=BOB.principal, owner="alice")
    assert refused(tier_policy.check_revoke, CAROL, grantee=BOB.principal,
                   owner="alice").code == "not_a_revoker"


@pytest.mark.parametrize("policy, actor, level, basis", [
    (INTERNAL, CAROL, "read", "default"),
    (INTERNAL, SERVICE, "read", "default"),
    (INTERNAL, CAROL, "write", None),
    (INTERNAL, ALICE, "write", "owner"),
    (RESTRICTED, CAROL, "read", None),
    (RESTRICTED, ALICE, "read", "owner"),
    (SENSITIVE, ADMIN, "write", "break_glass"),
    (SENSITIVE, SERVICE, "read", None),
])
def test_access_without_a_grant(policy, actor, level, basis):
    assert tier_policy.implicit_basis(policy, actor, level=level, owner="alice") == basis


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("12h", 43200),
                                           ("30d", 30 * DAY)])
def test_durations(text, seconds):
    assert tier_policy.parse_seconds(text, what="--for") == seconds


@pytest.mark.parametrize("text", ["0", "0d", "-5d", "soon", "", "1w"])
def test_bad_durations(text):
    error = refused(tier_policy.parse_seconds, text, what="--for")
    assert (error.status, error.code) == (400, "invalid_duration") and "--for" in error.message


def test_texts():
    assert tier_policy.check_text(None, what="reason") is None
    assert refused(tier_policy.check_text, " ", what="reason", required=True).code == \
        "reason_required"
    assert refused(tier_policy.check_text, "x" * 1001, what="reason").code == "text_too_long"
