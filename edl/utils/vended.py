"""S3 access with credentials the lake's credential broker vends, refreshed before they expire.

A user reading the lake (`lake.read` without a context, DESIGN §5, §6) reads metadata with their
own credentials and a dataset's data with the short-lived credentials the API's broker vends for
(dataset, read): users have no S3 rights of their own, and no `sts:AssumeRole`.

`VendedAccess` keeps one botocore `RefreshableCredentials` per (dataset, level) whose refresh
asks the broker again: botocore refetches once fewer than `advisory_timeout` seconds are left
(15 min by default) and insists when fewer than `mandatory_timeout` are (10 min), so credentials
are renewed before their `expiration`, never after. Each `S3Access` handed out carries a frozen
copy taken at that moment (Spark tasks run in other processes and build their own clients from
it), so a read that starts with at least the advisory margin left has that long to finish.

The broker is any callable `(dataset, level) -> answer` whose answer has the API's credential
keys (`access_key_id`, `secret_access_key`, `session_token`, `expiration`); tests hand in a
function, `LakeContext.for_reader` the lake API's credentials endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.credentials import RefreshableCredentials

from edl.errors import EdlError
from edl.utils.metadata import DatasetRecord
from edl.utils.storage import S3Access

Broker = Callable[[str, str], Mapping[str, Any]]

_KEYS = ("access_key_id", "secret_access_key", "session_token", "expiration")


class BrokerAnswerError(EdlError):
    """The broker's answer lacks credentials or a readable expiration."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class VendedAccess:
    """Dataset → `S3Access` with the broker's credentials for (dataset, `level`)."""

    def __init__(self, broker: Broker, endpoint_url: str | None, *, level: str = "read",
                 time_fetcher: Callable[[], datetime] = _utc_now,
                 advisory_timeout: int | None = None,
                 mandatory_timeout: int | None = None) -> None:
        self.broker = broker
        self.endpoint_url = endpoint_url
        self.level = level
        self._time_fetcher = time_fetcher
        self._advisory = advisory_timeout
        self._mandatory = mandatory_timeout
        self._lock = threading.Lock()
        self._credentials: dict[tuple[str, str], RefreshableCredentials] = {}

    def __call__(self, dataset: DatasetRecord) -> S3Access:
        frozen = self.credentials(dataset.dataset).get_frozen_credentials()
        return S3Access(region=dataset.home_region, endpoint_url=self.endpoint_url,
                        access_key=frozen.access_key, secret_key=frozen.secret_key,
                        session_token=frozen.token)

    def credentials(self, dataset: str, level: str | None = None) -> RefreshableCredentials:
        """The refreshing credentials of (dataset, level); the first call asks the broker."""
        key = (dataset, level or self.level)
        with self._lock:
            if key not in self._credentials:
                self._credentials[key] = self._create(*key)
            return self._credentials[key]

    def _create(self, dataset: str, level: str) -> RefreshableCredentials:
        def fetch() -> dict[str, Any]:
            return _metadata(dataset, level, self.broker(dataset, level))

        first = fetch()
        return RefreshableCredentials(
            first["access_key"], first["secret_key"], first["token"],
            _expiry(first["expiry_time"], dataset), fetch, method="edl-broker",
            time_fetcher=self._time_fetcher, advisory_timeout=self._advisory,
            mandatory_timeout=self._mandatory)


def _metadata(dataset: str, level: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """The broker's answer in the shape botocore refreshes from."""
    missing = [key for key in _KEYS if not answer.get(key)]
    if missing:
        raise BrokerAnswerError(f"the broker's credentials for {dataset} ({level}) have no "
                                f"{', '.join(missing)}",
                                hint="this is a mismatch between EDL and the API's version")
    _expiry(answer["expiration"], dataset)
    return {"access_key": answer["access_key_id"], "secret_key": answer["secret_access_key"],
            "token": answer["session_token"], "expiry_time": str(answer["expiration"])}


def _expiry(text: str, dataset: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise BrokerAnswerError(f"the broker's credentials for {dataset} expire at "
                                f"{str(text)[:40]!r}, which is not an ISO-8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
