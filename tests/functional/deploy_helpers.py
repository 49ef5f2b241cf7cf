"""Helpers of the `cloud` fixture (in `conftest.py`): a local cloud inside the test process, moto's
threaded server on a loopback port bootstrapped like `edl local start` does (CloudFormation role,
admin, alice/bob/carol, IAM enforcement on), reset before each test. The `edl` commands run
in-process against it through the same code path as on a user's machine: the EDL home's state and
credentials files point them at it.
"""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass

import boto3

from edl.config import Instance
from edl.installed_scripts.dl import main


def free_port() -> int:
    """A loopback port nobody listens on right now (for a server a test starts itself)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: bytes, content_type: str) -> None:
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


def edl(*args: str) -> int:
    """Run the `edl` command in-process, as a user would type it."""
    return main(list(args))
