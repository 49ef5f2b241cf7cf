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
