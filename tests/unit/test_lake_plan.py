"""Which updates make a dataset as of an update: the newest snapshot ≤ N and the deltas after."""

from __future__ import annotations

import pytest

from edl.utils.lake import NoDataError, plan_read
from edl.utils.updates import UnknownUpdateError, UpdateRecord, format_update_id


def update(n: int, kind: str, status: str = "complete") -> UpdateRecord:
    return UpdateRecord(dataset="d", update_id=format_update_id(n), kind=kind, status=status,
                        source="s3://x/y", bucket="b")


HISTORY = [update(1, "snapshot"), update(2, "delta"), update(3, "delta", "failed"),
           update(4, "delta"), update(5, "snapshot"), update(6, "delta"),
           update(7, "delta", "pending")]


def ids(updates) -> list[int]:
    return [int(u.update_id) for u in updates]


def test_default_is_the_newest_complete_update():
    plan = plan_read("d", HISTORY)
    assert plan.as_of == "0000000006"
    assert int(plan.snapshot.update_id) == 5 and ids(plan.deltas) == [6]


def test_as_of_skips_failed_and_later_updates():
    plan = plan_read("d", HISTORY, as_of="4")
    assert int(plan.snapshot.update_id) == 1 and ids(plan.deltas) == [2, 4]


def test_as_of_a_snapshot_has_no_deltas():
    plan = plan_read("d", HISTORY, as_of="0000000005")
    assert int(plan.snapshot.update_id) == 5 and plan.deltas == ()


@pytest.mark.parametrize("as_of, message", [("3", "failed"), ("7", "pending"), ("9", "no update")])
def test_as_of_must_be_a_complete_update(as_of, message):
    with pytest.raises(UnknownUpdateError, match=message):
        plan_read("d", HISTORY, as_of=as_of)


def test_nothing_complete_is_no_data():
    with pytest.raises(NoDataError, match="no complete update"):
        plan_read("d", [update(1, "snapshot", "failed")])


def test_update_ids_sort_lexically_in_numeric_order():
    assert format_update_id(9) < format_update_id(10) < format_update_id(100)
    with pytest.raises(UnknownUpdateError):
        format_update_id("latest")


def committed(n: int, kind: str, seq: int) -> UpdateRecord:
    return UpdateRecord(dataset="d", update_id=format_update_id(n), kind=kind, status="complete",
                        source="s3://x/y", bucket="b", commit_seq=seq)


def test_as_of_follows_the_order_updates_completed_in():
    """Update 3 was allocated before 4 but completed after it: as of 4 it does not count."""
    history = [committed(1, "snapshot", 0), committed(2, "delta", 0),    # before commit_seq
               committed(3, "delta", 2), committed(4, "delta", 1), committed(5, "delta", 3)]
    assert ids(plan_read("d", history, as_of="4").deltas) == [2, 4]
    assert ids(plan_read("d", history, as_of="3").deltas) == [2, 4, 3]
    latest = plan_read("d", history)
    assert latest.as_of == "0000000005" and ids(latest.deltas) == [2, 4, 3, 5]


def test_a_snapshot_completed_late_is_the_base_only_from_its_commit_on():
    history = [committed(1, "snapshot", 1), committed(2, "snapshot", 3), committed(3, "delta", 2)]
    assert int(plan_read("d", history, as_of="3").snapshot.update_id) == 1
    newest = plan_read("d", history)
    assert newest.as_of == "0000000002" and newest.deltas == ()
