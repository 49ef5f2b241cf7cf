"""The update model against moto's DynamoDB: ids, the lifecycle, and immutability."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from edl.utils.metadata import DatasetRecord, MetadataStore, UnknownDatasetError
from edl.utils.updates import COMPLETE, FAILED, PENDING, UpdateStateError, UpdateStore
from tests.functional.ingest_fixtures import create_metadata_tables

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
