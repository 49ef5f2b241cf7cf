"""The update model against moto's DynamoDB: ids, the lifecycle, and immutability."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from edl.utils.commit_lock import COMMIT_LEASE_SECONDS
from edl.utils.metadata import DatasetRecord, MetadataStore, UnknownDatasetError
from edl.utils.updates import COMPLETE, FAILED, PENDING, UpdateStateError, UpdateStore
from tests.functional.ingest_helpers import create_metadata_tables

BUCKET = "sanofi-datalake-local-sensitive-us-east-1"


@pytest.fixture
def store(aws_credentials):
    with mock_aws():
        create_metadata_tables(boto3.client("dynamodb", region_name="us-east-1"))
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        MetadataStore(dynamodb, "local").put_dataset(DatasetRecord(
            dataset="clinical_trials", tier="sensitive", owner="alice", home_region="us-east-1"))
        yield UpdateStore(dynamodb, "local")


def allocate(store: UpdateStore, kind: str = "snapshot"):
    return store.allocate_update("clinical_trials", kind, "s3://drop/a.csv", BUCKET,
                                 requested_by="alice")


def test_ids_grow_and_are_zero_padded(store):
    first, second = allocate(store), allocate(store, "delta")
    assert (first.update_id, second.update_id) == ("0000000001", "0000000002")
    assert store.get_update("clinical_trials", "2").status == PENDING
    assert [u.kind for u in store.list_updates("clinical_trials")] == ["snapshot", "delta"]


def test_concurrent_allocations_get_distinct_ids(store):
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: allocate(store).update_id, range(24)))
    assert len(set(ids)) == 24
    assert len(store.list_updates("clinical_trials")) == 24


def _set_counter(store: UpdateStore, value: int) -> None:
    store._table("datasets").update_item(Key={"dataset": "clinical_trials"},
                                         UpdateExpression="SET update_seq = :v",
                                         ExpressionAttributeValues={":v": value})


def test_a_counter_a_little_behind_moves_on_to_the_next_free_id(store):
    for _ in range(3):
        allocate(store)
    _set_counter(store, 1)                      # e.g. a table restored from an older backup
    assert allocate(store).update_id == "0000000004"


def test_a_counter_far_behind_is_an_error_that_says_how_to_repair_it(store):
    for _ in range(8):
        allocate(store)
    _set_counter(store, 0)
    with pytest.raises(UpdateStateError, match="counter is behind") as caught:
        allocate(store)
    assert "update_seq" in caught.value.hint
    assert len(store.list_updates("clinical_trials")) == 8


def test_unknown_dataset_is_refused(store):
    with pytest.raises(UnknownDatasetError, match="no_such"):
        store.allocate_update("no_such", "snapshot", "s3://x/y", BUCKET)


def test_a_complete_update_is_never_rewritten(store):
    update = store.claim_update("clinical_trials", allocate(store).update_id, "job-1")
    done = store.complete_update(update)
    assert done.status == COMPLETE
    with pytest.raises(UpdateStateError, match="already complete"):
        store.complete_update(update)
    with pytest.raises(UpdateStateError, match="already complete"):
        store.fail_update("clinical_trials", update.update_id, "late failure")
    with pytest.raises(UpdateStateError, match="is complete"):
        store.claim_update("clinical_trials", update.update_id, "job-2")
    assert store.get_update("clinical_trials", update.update_id).status == COMPLETE


def test_a_pending_update_belongs_to_one_job(store):
    update = allocate(store)
    store.claim_update("clinical_trials", update.update_id, "job-1")
    with pytest.raises(UpdateStateError, match="taken by job job-1"):
        store.claim_update("clinical_trials", update.update_id, "job-2")


def test_failed_keeps_the_reason(store):
    update = allocate(store)
    failed = store.fail_update("clinical_trials", update.update_id, "a.csv line 3: bad")
    assert failed.status == FAILED
    assert store.get_update("clinical_trials", update.update_id).reason == "a.csv line 3: bad"


def test_commits_take_positions_in_the_order_they_complete(store):
    first, second = allocate(store), allocate(store)
    assert store.complete_update(second).commit_seq == 1
    assert store.complete_update(first).commit_seq == 2
    assert [u.commit_seq for u in store.list_updates("clinical_trials")] == [2, 1]


def test_a_committer_that_died_holding_the_lock_is_fenced_off_after_its_lease(store):
    """A committer killed between taking its position and writing its record: the next one
    waits out the lease, fails the dead one's update, and commits after it; the dead one can
    never complete at its older position."""
    dead, alive = allocate(store), allocate(store)
    datasets = store._table("datasets")
    datasets.update_item(   # what the dead committer's one write left behind
        Key={"dataset": "clinical_trials"},
        UpdateExpression="SET committing = :u, committing_since = :t ADD commit_seq :one",
        ExpressionAttributeValues={":u": dead.update_id, ":t": Decimal(1000), ":one": 1})
    clock = [1000.0]
    waited = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock[0] += seconds

    later = UpdateStore(store._dynamodb, "local", clock=lambda: clock[0], sleep=sleep)
    done = later.complete_update(alive)

    assert done.commit_seq == 2 and sum(waited) >= COMMIT_LEASE_SECONDS
    fenced = later.get_update("clinical_trials", dead.update_id)
    assert fenced.status == FAILED and "abandoned while committing" in fenced.reason
    with pytest.raises(UpdateStateError, match="already failed"):
        later.complete_update(dead)
    assert "committing" not in datasets.get_item(Key={"dataset": "clinical_trials"})["Item"]


def test_concurrent_commits_get_distinct_positions_and_release_the_lock(store):
    updates = [allocate(store) for _ in range(10)]
    with ThreadPoolExecutor(10) as pool:
        done = list(pool.map(store.complete_update, updates))
    assert sorted(u.commit_seq for u in done) == list(range(1, 11))
    item = store._table("datasets").get_item(Key={"dataset": "clinical_trials"})["Item"]
    assert "committing" not in item and int(item["commit_seq"]) == 10
