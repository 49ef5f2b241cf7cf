"""`edl local start|status|env|stop`, run for real: a runtime process on a loopback port."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import stat
import time
import urllib.error
import urllib.request

import boto3
import pytest

from edl import paths
from edl.aws import AwsSessions, Identity
from edl.errors import AwsAccessError, LocalCloudError
from edl.local import control
from edl.local.control_api import call_control_api, read_secret
from tests.e2e.helpers import free_port


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# What outlives the runtime: the lake (`state/`) and its users' profiles, whose keys are in it.
KEPT = ["config", "credentials", "state"]


def _session_files() -> list[str]:
    folder = paths.local_dir()
    return sorted(p.name for p in folder.iterdir() if p.name != "runtime.log")


# -- the session's cloud ----------------------------------------------------------------------

def test_status_shows_the_running_cloud(local_cloud):
    status = control.status()
    url = f"http://127.0.0.1:{local_cloud.port}"
    assert status.running
    assert status.endpoint_url == url
    api = status.services["api"].removesuffix("/v1")
    assert api.startswith("http://127.0.0.1:") and api != url  # port + 1 unless that is taken
    assert status.services == {"aws": url, "api": f"{api}/v1", "jobs": f"{api}/_local/jobs",
                               "lambdas": f"{api}/_local/lambdas"}
    assert status.profiles == ("admin", "alice", "bob", "carol")
    assert status.pid and status.started_at and status.started_at <= time.time()
    assert status == local_cloud.status


def test_credentials_are_private_and_in_the_aws_formats(local_cloud):
    credentials = paths.local_credentials_file()
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert "[alice]\naws_access_key_id = AKIA" in credentials.read_text()
    config = (paths.local_dir() / "config").read_text()
    assert (f"[profile bob]\nregion = us-east-1\n"
            f"endpoint_url = http://127.0.0.1:{local_cloud.port}\n") in config


def test_a_second_start_returns_the_running_cloud(local_cloud):
    began = time.monotonic()
    again = control.start(local_cloud.instance, port=local_cloud.port)
    assert again.running and again.pid == local_cloud.status.pid
    assert again.endpoint_url == local_cloud.status.endpoint_url
    assert time.monotonic() - began < 2


def test_env_exports_make_boto3_act_as_the_user(local_cloud, monkeypatch):
    exports = control.env_exports(local_cloud.instance, "alice")
    names = []
    for line in exports.splitlines():
        keyword, assignment = shlex.split(line)
        assert keyword == "export"
        name, value = assignment.split("=", 1)
        monkeypatch.setenv(name, value)
        names.append(name)
    assert names == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                     "AWS_DEFAULT_REGION"]
    identity = boto3.client("sts").get_caller_identity()  # nothing but the environment
    assert identity["Arn"] == "arn:aws:iam::123456789012:user/alice"


def test_env_exports_name_the_known_users_for_an_unknown_one(local_cloud):
    with pytest.raises(AwsAccessError, match="mallory") as caught:
        control.env_exports(local_cloud.instance, "mallory")
    assert "admin, alice, bob, carol" in str(caught.value)


def test_the_aws_config_files_work_with_a_profile(local_cloud, monkeypatch):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(paths.local_credentials_file()))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(paths.local_dir() / "config"))
    sts = boto3.Session(profile_name="bob").client("sts")
    assert sts.get_caller_identity()["Arn"] == "arn:aws:iam::123456789012:user/bob"


def test_the_cloud_enforces_iam(local_cloud, monkeypatch):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(paths.local_credentials_file()))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(paths.local_dir() / "config"))
    s3 = boto3.Session(profile_name="carol").client("s3")
    with pytest.raises(s3.exceptions.ClientError) as caught:
        s3.create_bucket(Bucket="carol-was-here")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


def test_no_other_process_can_switch_enforcement_off_or_read_the_keys(local_cloud, monkeypatch):
    """moto's control API needs the runtime's secret, kept 0600 in the EDL home."""
    url = f"http://127.0.0.1:{local_cloud.port}"
    for path, body in (("reset-auth", b"inf"), ("data.json", None), ("reset", b"")):
        request = urllib.request.Request(f"{url}/moto-api/{path}", data=body,
                                         headers={"Content-Type": "text/plain"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    test_the_cloud_enforces_iam(local_cloud, monkeypatch)  # still on, and nothing was reset
    secret_file = paths.local_control_secret_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    # With the secret, EDL's own calls get through (data.json can fail in moto on a busy lake).
    assert b"lambda" in call_control_api(url, "config", read_secret())


def test_it_listens_on_127_0_0_1_only(local_cloud):
    with socket.create_connection(("127.0.0.1", local_cloud.port), timeout=2):
        pass
    # Every 127.x address is this machine; a server bound to 0.0.0.0 would answer on 127.0.0.2.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", local_cloud.port), timeout=2).close()
    assert not control.port_is_free(local_cloud.port)


# -- clouds of their own (each test has its own EDL home) -------------------------------------

def test_a_taken_port_is_refused_before_anything_starts(local_instance, edl_home):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(LocalCloudError) as caught:
            control.start(local_instance, port=port)
    assert str(port) in str(caught.value)
    assert "use --port N or stop what uses it" in str(caught.value)
    assert not (paths.local_dir() / "runtime.pid").exists()
    assert not control.status().running


def test_stop_removes_the_files_and_frees_the_port(local_instance, stop_local_cloud):
    port = free_port()
    control.start(local_instance, port=port)
    assert _session_files() == ["config", "control-secret", "credentials", "runtime.json",
                                "runtime.pid", "state", "state.json"]
    assert control.stop() is True
    assert _session_files() == KEPT
    assert control.port_is_free(port)
    assert control.status() == control.LocalStatus(False, None, None, {}, None, ())
    assert control.stop() is False
    with pytest.raises(LocalCloudError, match="not running"):
        control.env_exports(local_instance, "alice")


def test_the_runtime_cleans_up_after_itself_on_sigterm(local_instance, stop_local_cloud):
    status = control.start(local_instance, port=free_port())
    os.kill(status.pid, signal.SIGTERM)
    assert _wait_for(lambda: _session_files() == KEPT)
    assert _wait_for(lambda: "runtime - stopped" in (paths.local_dir() / "runtime.log").read_text())


def test_status_cleans_up_after_a_killed_runtime(local_instance, stop_local_cloud):
    port = free_port()
    status = control.start(local_instance, port=port)
    os.kill(status.pid, signal.SIGKILL)
    # Reported stopped once the process is gone (not merely silent), and its files removed.
    assert _wait_for(lambda: control.status().pid is None)
    assert not control.status().running
    assert _session_files() == KEPT
    assert _wait_for(lambda: control.port_is_free(port))


def test_a_start_that_times_out_leaves_nothing_running(local_instance, stop_local_cloud):
    port = free_port()
    with pytest.raises(LocalCloudError, match="did not answer within"):
        control.start(local_instance, port=port, timeout=0)
    assert _session_files() == []
    assert not control.status().running
    assert _wait_for(lambda: control.port_is_free(port))


def test_edl_sessions_deploy_as_the_admin_through_the_cfn_role(local_cloud, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    admin = AwsSessions(local_cloud.instance, Identity())  # no profile: the platform admin
    assert admin.caller_arn() == local_cloud.instance.platform_admin_arn
    admin.deploy_client("s3").create_bucket(Bucket="edl-e2e-deployed")
    assert "edl-e2e-deployed" in [
        b["Name"] for b in admin.client("s3").list_buckets()["Buckets"]]
    with pytest.raises(AwsAccessError, match="may not assume"):
        AwsSessions(local_cloud.instance, Identity("alice")).deploy_session()
