"""A local cloud inside the test process: moto's threaded server on a loopback port, bootstrapped
like `edl local start` does (CloudFormation role, admin, alice/bob/carol, IAM enforcement on),
reset before each test. The `edl` commands run in-process against it through the same code path
as on a user's machine: the EDL home's state and credentials files point them at it.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from edl.config import Instance, get_config
from edl.installed_scripts.dl import main
from edl.local.bootstrap import bootstrap
from edl.paths import local_credentials_file, local_state_file


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: bytes, content_type: str) -> None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@dataclass
class Cloud:
    url: str
    instance: Instance
    keys: dict[str, tuple[str, str]]

    def client(self, service: str, user: str = "admin", region: str = "us-east-1"):
        key, secret = self.keys[user]
        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def as_deployer(self, service: str, region: str = "us-east-1"):
        """A client acting as the CloudFormation role, for checks that need wide read rights."""
        creds = self.client("sts").assume_role(RoleArn=self.instance.cfn_role_arn,
                                               RoleSessionName="test")["Credentials"]
        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"])


@pytest.fixture(scope="session")
def moto_server():
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def cloud(moto_server, edl_home, monkeypatch):
    """A freshly reset and bootstrapped local cloud, with this test's EDL home pointing at it."""
    _post(f"{moto_server}/moto-api/reset-auth", b"inf", "text/plain")  # auth off to reset
    _post(f"{moto_server}/moto-api/reset", b"", "application/json")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    instance = get_config().instance("local")
    result = bootstrap(instance, moto_server)
    Path(local_state_file()).parent.mkdir(parents=True, exist_ok=True)
    local_state_file().write_text(json.dumps({"endpoint_url": moto_server}))
    local_credentials_file().write_text("".join(
        f"[{u.profile}]\naws_access_key_id = {u.access_key_id}\n"
        f"aws_secret_access_key = {u.secret_access_key}\n\n" for u in result.users))
    yield Cloud(moto_server, instance,
                {u.profile: (u.access_key_id, u.secret_access_key) for u in result.users})
    # moto's auth switch is process-wide: leave it off for the other in-process moto tests.
    _post(f"{moto_server}/moto-api/reset-auth", b"inf", "text/plain")


def edl(*args: str) -> int:
    """Run the `edl` command in-process, as a user would type it."""
    return main(list(args))
