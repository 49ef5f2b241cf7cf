"""`lake.read` as a user: metadata with the caller's own credentials, each dataset's data with
credentials a broker vends for (dataset, read), refreshed before they expire (`edl.utils.vended`).
The broker here is a function; `test_edl_api_grants_client.py` has the API's broker over HTTP."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from edl.errors import UsageError
from edl.utils import lake as lakeapi
from edl.utils import lake_source
from edl.utils.context import LakeContext
from edl.utils.vended import BrokerAnswerError, VendedAccess
from edl_api.lake_api import NoGrantError
from tests.functional.ingest_helpers import DATASET, ingest

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Broker:
    """Vends numbered credentials valid for `lifetime` from the clock's now; `refuse` makes the
    next calls raise what the API's broker would after a revoke."""

    def __init__(self, clock: Clock, lifetime: timedelta = timedelta(hours=1)) -> None:
        self.clock, self.lifetime = clock, lifetime
        self.calls: list[tuple[str, str, datetime]] = []
        self.refuse: Exception | None = None
        self._numbers = itertools.count(1)

    def __call__(self, dataset: str, level: str) -> dict:
        self.calls.append((dataset, level, self.clock()))
        if self.refuse is not None:
            raise self.refuse
        n = next(self._numbers)
        expiration = (self.clock() + self.lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"access_key_id": f"ASIAVENDED{n}", "secret_access_key": f"secret{n}",
                "session_token": f"token{n}", "expiration": expiration}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(clock) -> Broker:
    return Broker(clock)


@pytest.fixture
def reader(lake, broker, clock) -> LakeContext:
    """The lake as a user reads it: the lake's metadata, the data through the broker."""
    return dataclasses.replace(lake.context, dataset_access=VendedAccess(
        broker, lake.endpoint, time_fetcher=clock))


@pytest.fixture
def options_seen(monkeypatch) -> list[dict]:
    """The data source options of every read: what Spark's tasks reach S3 with."""
    seen: list[dict] = []
    original = lake_source.read_options

    def recording(*args, **kwargs):
        options = original(*args, **kwargs)
        seen.append(options)
        return options

    monkeypatch.setattr(lake_source, "read_options", recording)
    return seen


def rows(df) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


# -- refresh ---------------------------------------------------------------------------------

def test_credentials_are_refetched_before_they_expire_never_after(lake, broker, clock):
    vended = VendedAccess(broker, lake.endpoint, time_fetcher=clock)
    record = lake.context.metadata.get_dataset(DATASET)

    assert vended(record).access_key == "ASIAVENDED1"
    clock.advance(minutes=44)       # 16 minutes left: still good
    assert vended(record).access_key == "ASIAVENDED1"
    assert len(broker.calls) == 1
    clock.advance(minutes=2)        # 14 minutes left: botocore's advisory margin
    access = vended(record)
    assert (access.access_key, access.secret_key, access.session_token) == \
        ("ASIAVENDED2", "secret2", "token2")
    assert [(d, level) for d, level, _ in broker.calls] == [(DATASET, "read")] * 2
    assert all(at < T0 + timedelta(hours=1) for _, _, at in broker.calls)  # before expiry
    assert access.region == record.home_region and access.endpoint_url == lake.endpoint


def test_short_lived_credentials_refresh_at_the_mandatory_margin_too(lake, clock):
    broker = Broker(clock, lifetime=timedelta(minutes=30))
    vended = VendedAccess(broker, lake.endpoint, time_fetcher=clock, advisory_timeout=5 * 60,
                          mandatory_timeout=2 * 60)
    record = lake.context.metadata.get_dataset(DATASET)
    vended(record)
    clock.advance(minutes=24)
    assert vended(record).access_key == "ASIAVENDED1"
    clock.advance(minutes=5)        # one minute left: must refresh
    assert vended(record).access_key == "ASIAVENDED2"


def test_a_refused_mandatory_refresh_is_an_error_not_stale_credentials(lake, broker, clock):
    vended = VendedAccess(broker, lake.endpoint, time_fetcher=clock)
    record = lake.context.metadata.get_dataset(DATASET)
    vended(record)
    broker.refuse = NoGrantError(403, "no_grant", f"bob holds no grant to read {DATASET}")
    clock.advance(minutes=47)       # 13 minutes left: a failed advisory refresh keeps the old
    assert vended(record).access_key == "ASIAVENDED1"
    clock.advance(minutes=5)        # 8 minutes left: mandatory
    with pytest.raises(NoGrantError, match="no grant to read"):
        vended(record)


def test_a_broker_answer_without_credentials_is_refused(lake, clock):
    record = lake.context.metadata.get_dataset(DATASET)
    vended = VendedAccess(lambda d, level: {"access_key_id": "A", "expiration": "soon"},
                          lake.endpoint)
    with pytest.raises(BrokerAnswerError, match="have no secret_access_key, session_token"):
        vended(record)
    vended = VendedAccess(lambda d, level: {"access_key_id": "A", "secret_access_key": "s",
                                            "session_token": "t", "expiration": "soon"},
                          lake.endpoint)
    with pytest.raises(BrokerAnswerError, match="not an ISO-8601 time"):
        vended(record)


# -- reads -----------------------------------------------------------------------------------

def test_a_read_reaches_s3_with_the_vended_credentials_and_refreshes_them(
        lake, spark, reader, broker, clock, options_seen):
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n2,b\n")) == 0
    assert ingest(lake, spark, lake.put("d.csv", b"id,val,op\n2,B,U\n"), "--kind", "delta") == 0

    assert rows(lakeapi.read(spark, DATASET, context=reader)) == [(1, "a"), (2, "B")]
    assert {(o["aws_access_key_id"], o["aws_secret_access_key"], o["aws_session_token"])
            for o in options_seen} == {("ASIAVENDED1", "secret1", "token1")}
    assert [(d, level) for d, level, _ in broker.calls] == [(DATASET, "read")]

    clock.advance(minutes=50)
    options_seen.clear()
    assert rows(lakeapi.read(spark, DATASET, as_of="1", context=reader)) == [(1, "a"), (2, "b")]
    assert {o["aws_access_key_id"] for o in options_seen} == {"ASIAVENDED2"}


def test_metadata_calls_never_ask_the_broker(lake, spark, reader, broker):
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    [listed] = lakeapi.list_updates(DATASET, context=reader)
    assert lakeapi.get_update(DATASET, listed.update_id, context=reader).status == "complete"
    assert broker.calls == []
    detail = lakeapi.get_update(DATASET, listed.update_id, files=True, context=reader)
    assert [f.rows for f in detail.files] == [1]      # the manifest, read as the dataset
    assert len(broker.calls) == 1


def test_a_read_without_a_grant_fails_with_the_request_to_make(lake, spark, reader, broker):
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    broker.refuse = NoGrantError(403, "no_grant", f"bob holds no grant to read {DATASET}",
                                 hint=f"ask for it: edl-api grant request {DATASET} --level read")
    with pytest.raises(NoGrantError) as refused:
        lakeapi.read(spark, DATASET, context=reader)
    assert "edl-api grant request clinical_trials --level read" in refused.value.hint


def test_without_a_context_the_caller_reads_through_the_apis_broker(lake, spark, monkeypatch,
                                                                     options_seen):
    assert ingest(lake, spark, lake.put("a.csv", b"id,val\n1,a\n")) == 0
    asked = []

    def api_broker(instance, profile=None):
        asked.append((instance, profile))
        return Broker(_WallClock())

    monkeypatch.setattr("edl.utils.context.api_broker", api_broker)
    assert rows(lakeapi.read(spark, DATASET)) == [(1, "a")]
    assert asked == [("local", None)]
    assert {o["aws_access_key_id"] for o in options_seen} == {"ASIAVENDED1"}
    with pytest.raises(UsageError, match="context= or profile=, not both"):
        lakeapi.read(spark, DATASET, context=lake.context, profile="bob")


def test_a_profile_names_the_caller_of_metadata_and_broker(lake, monkeypatch):
    asked = []
    monkeypatch.setattr("edl.utils.context.api_broker",
                        lambda instance, profile=None: asked.append(profile) or Broker(Clock()))
    built = []
    original = LakeContext.for_instance.__func__

    def for_instance(cls, instance=None, role_arn=None, profile=None):
        built.append(profile)
        return dataclasses.replace(original(cls, instance, role_arn), instance="local")

    monkeypatch.setattr(LakeContext, "for_instance", classmethod(for_instance))
    lakeapi.list_updates(DATASET, profile="bob")
    assert built == ["bob"] and asked == ["bob"]


class _WallClock:
    def __call__(self) -> datetime:
        return datetime.now(UTC)
