"""The sweep finds expired grants by key, never by scanning the grants table.

moto in-process, one grants table in the shape of `core_tables.yaml`; the store's table is
wrapped to count scans. Times are fixed: T0 is 2026-12-02T10:00:00Z.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from edl.utils.grants import (
    EXPIRED,
    SWEEP_HOURS,
    GrantStore,
    parse_time,
    requested_grant,
    transition,
)

T0 = parse_time("2026-12-02T10:00:00Z")
HOUR = 3600.0
ALICE = "arn:aws:iam::123456789012:user/alice"


@dataclass
class CountingTable:
    """A boto3 Table that counts its scans."""

    table: Any
    scans: list[dict] = field(default_factory=list)

    def scan(self, **kwargs):
        self.scans.append(kwargs)
        return self.table.scan(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self.table, name)


@pytest.fixture
def table(aws):
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    created = dynamodb.create_table(
        TableName="edl-local-grants", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "dataset", "KeyType": "HASH"},
                   {"AttributeName": "grant_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                              for n in ("dataset", "grant_id", "principal")],
        GlobalSecondaryIndexes=[{
            "IndexName": "by-principal", "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": "principal", "KeyType": "HASH"},
                          {"AttributeName": "dataset", "KeyType": "RANGE"}]}])
    return CountingTable(created)


def active_grant(store: GrantStore, n: int, *, seconds: float, at: float = T0):
    """Grant n on `trials` for user n, approved at `at` for `seconds`."""
    grantee = f"arn:aws:iam::123456789012:user/u{n}"
    grant = store.create(requested_grant(
        f"trials.{n:012x}", dataset="trials", tier="sensitive", grantee=grantee, level="read",
        requester=grantee, now=at, duration_seconds=int(seconds)))
    return store.approve(grant, actor=ALICE, now=at)


def expire_due(store: GrantStore, now: float) -> list[str]:
    due = store.expired_grants(now)
    for grant in due:
        store.end(grant, "expire", actor="edl-local-sweeper", now=now)
    return [g.grant_id for g in due]


def test_expired_grants_are_found_by_key_not_by_scan(table):
    store = GrantStore(table)
    assert expire_due(store, T0) == []           # a new lake: one scan of an empty table
    scans_at_start = len(table.scans)
    soon = active_grant(store, 1, seconds=90)
    later = active_grant(store, 2, seconds=2 * HOUR)
    active_grant(store, 3, seconds=30 * 86400)
    revoked = active_grant(store, 4, seconds=60)
    store.end(revoked, "revoke", actor=ALICE, now=T0 + 10)

    assert expire_due(store, T0 + 60) == []
    assert expire_due(store, T0 + 91) == [soon.grant_id]
    assert expire_due(store, T0 + 200) == []      # once
    assert expire_due(store, T0 + 2 * HOUR + 1) == [later.grant_id]
    assert store.get(later.grant_id).state == EXPIRED
    assert len(table.scans) == scans_at_start     # no scan after the first sweep
    cursor = table.get_item(Key={"dataset": "#expiry", "grant_id": "cursor"})["Item"]
    assert cursor["hour"] == "2026-12-02T12"      # 10:00 and 11:00 are cleared


def test_a_lake_from_before_the_schedule_is_scheduled_by_one_scan(table):
    store = GrantStore(table)
    now = T0
    kept = []
    for n, seconds in ((1, 60), (2, 3 * HOUR)):  # written as an older EDL did: no schedule
        grantee = f"arn:aws:iam::123456789012:user/u{n}"
        grant = requested_grant(f"trials.{n:012x}", dataset="trials", tier="sensitive",
                                grantee=grantee, level="read", requester=grantee, now=now,
                                duration_seconds=int(seconds))
        grant = transition(grant, "approve", actor=ALICE, now=now)
        table.put_item(Item=grant.to_item())
        kept.append(grant)

    assert [g.grant_id for g in store.expired_grants(T0 + 120)] == [kept[0].grant_id]
    assert len(table.scans) == 1
    store.end(kept[0], "expire", actor="edl-local-sweeper", now=T0 + 120)
    assert expire_due(store, T0 + HOUR) == []
    assert expire_due(store, T0 + 3 * HOUR + 5) == [kept[1].grant_id]   # from the schedule
    assert len(table.scans) == 1


def test_a_long_stop_is_caught_up_a_bounded_number_of_hours_per_sweep(table):
    store = GrantStore(table)
    expire_due(store, T0)
    far = active_grant(store, 1, seconds=(SWEEP_HOURS + 10) * HOUR)
    # the runtime was stopped for three days: the first sweep reads SWEEP_HOURS hours
    back = T0 + 72 * HOUR
    reads = []
    original = table.table.get_item

    def counted_get(**kwargs):
        reads.append(kwargs["Key"]["grant_id"])
        return original(**kwargs)

    table.get_item = counted_get   # type: ignore[method-assign]
    assert expire_due(store, back) == []
    assert len([r for r in reads if r.startswith("2026-")]) == SWEEP_HOURS * 16
    assert expire_due(store, back) == [far.grant_id]     # the second catches up
    assert store.get(far.grant_id).state == EXPIRED
