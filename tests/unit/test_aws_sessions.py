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


def test_sessions_share_one_model_loader_whose_search_paths_stay_put():
    """Every session made here loads each service model once per process, not once per
    session; boto3 adds its data folder to the loader at every Session, only once here."""
    from edl.aws import boto3_session, get_session, shared_loader

    loader = shared_loader()
    first = boto3_session(region_name="us-east-1")
    paths = list(loader.search_paths)
    for _ in range(5):
        boto3_session(region_name="us-east-1")
    assert first._loader is loader and get_session().get_component("data_loader") is loader
    assert loader.search_paths == paths and len(set(paths)) == len(paths)
    clients = [boto3_session(region_name="us-east-1", aws_access_key_id="a",
                             aws_secret_access_key="b").client("s3") for _ in range(2)]
    model = [c.meta.service_model for c in clients]
    assert model[0]._service_description is model[1]._service_description   # loaded once
