"""The local cloud, started for real: one for the whole session, always stopped at teardown.

Its EDL home is the session's, not the per-test home of `tests/conftest.py`: a test that uses
`local_cloud` runs with `EDL_HOME` pointing at it, so the commands and `edl.aws` find the running
cloud exactly as they would on a user's machine.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edl.config import Instance, get_config
from edl.local import control
from tests.e2e.helpers import free_port


@dataclass(frozen=True)
class LocalCloud:
    home: Path
    port: int
    instance: Instance
    status: control.LocalStatus


@pytest.fixture(scope="session")
def local_instance() -> Instance:
    return get_config().instance("local")


@contextmanager
def started_local_cloud(tmp_path_factory, instance: Instance, *, spark: bool = True):
    """A fresh local cloud in an EDL home of its own, stopped on leaving."""
    home = tmp_path_factory.mktemp("edl-local-home")
    no_aws = tmp_path_factory.mktemp("no-aws")
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDL_HOME", str(home))
        mp.setenv("AWS_CONFIG_FILE", str(no_aws / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_aws / "credentials"))
        # The runtime sweeps every 3 s, not 30: a test of what the sweep does waits that long.
        mp.setenv("EDL_LOCAL_SWEEP_SECONDS", "3")
        if not spark:
            mp.setenv("EDL_LOCAL_SPARK_WARMUP", "0")
        try:
            # Persistence is not what these clouds are for (test_local_state_e2e.py tests it).
            status = control.start(instance, port=port, ephemeral=True)
            yield LocalCloud(home, port, instance, status)
        finally:
            mp.setenv("EDL_HOME", str(home))  # tests' monkeypatching is undone by now; be sure
            control.stop()


@pytest.fixture(scope="session")
def _session_local_cloud(tmp_path_factory, local_instance):
    with started_local_cloud(tmp_path_factory, local_instance) as cloud:
        yield cloud


@pytest.fixture
def local_cloud(_session_local_cloud, edl_home, monkeypatch) -> LocalCloud:
    """The session's running local cloud, with this test's `EDL_HOME` pointing at it."""
    monkeypatch.setenv("EDL_HOME", str(_session_local_cloud.home))
    return _session_local_cloud


@pytest.fixture
def free_port_number() -> int:
    return free_port()


@pytest.fixture
def stop_local_cloud(edl_home):
    """For a test that starts its own local cloud (in its own EDL home): stopped at teardown."""
    yield
    control.stop(timeout=5)
