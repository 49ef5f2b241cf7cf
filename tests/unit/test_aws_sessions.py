"""`edl.aws.AwsSessions`: a boto3 session is never used by two threads at once to make clients.

boto3 documents sessions as unsafe to share across threads while clients are created (clients are
safe once made). The stack manager deploys in a thread pool and creates clients from its workers,
so the sessions object must serialise client creation itself.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from edl.aws import AwsSessions
from edl.config import get_config


class _OverlapProbe:
    """A stand-in boto3 session that records how many threads are inside `client()` at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self._count_lock = threading.Lock()

    def _enter(self) -> None:
        with self._count_lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)

    def _leave(self) -> None:
        with self._count_lock:
            self.inside -= 1

    def client(self, service, **kwargs):
        self._enter()
        time.sleep(0.01)  # long enough for a second thread to come in if nothing stops it
        self._leave()
        return (service, kwargs["region_name"])

    resource = client


def _sessions_with(probe: _OverlapProbe) -> AwsSessions:
    sessions = AwsSessions(get_config().instance("dev01"))
    sessions._user_session = probe  # type: ignore[assignment]
    sessions._deploy_session = probe  # type: ignore[assignment]
    return sessions


def test_clients_made_from_many_threads_never_share_the_session_at_once():
    probe = _OverlapProbe()
    sessions = _sessions_with(probe)
    calls = [sessions.client, sessions.deploy_client, sessions.deploy_resource] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda make: make("s3", "eu-west-1"), calls))
    assert made == [("s3", "eu-west-1")] * len(calls)
    assert probe.most_inside == 1
