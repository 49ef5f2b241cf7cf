"""Helpers the e2e tests share: clients of the running local cloud, the commands run as a user
would (subprocesses), and the ingest command run in this process (no new Spark JVM).

Fixtures are in `conftest.py`; a test module imports helpers from here, never from another test
module.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3

from edl import naming
from edl.aws import AwsSessions, read_local_profile
from edl.core_resources.pipelines.ingest.__main__ import main as ingest_main
from edl.utils import lake
from edl.utils.context import LakeContext
from edl.utils.storage import S3Access

EDL = str(Path(sys.executable).with_name("edl"))
PREFIX = "sanofi-datalake"
DROP = f"{PREFIX}-drop-local-sensitive-us-east-1"
DATA = f"{PREFIX}-local-sensitive-us-east-1"
ACCOUNT = "123456789012"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client(cloud, service: str, region: str = "us-east-1", user: str = "admin", role: bool = True):
    key, secret = read_local_profile(user)
    kwargs = dict(endpoint_url=cloud.status.endpoint_url, region_name=region)
    if not role:
        return boto3.client(service, aws_access_key_id=key, aws_secret_access_key=secret, **kwargs)
    creds = boto3.client("sts", aws_access_key_id=key, aws_secret_access_key=secret, **kwargs) \
        .assume_role(RoleArn=cloud.instance.cfn_role_arn, RoleSessionName="e2e")["Credentials"]
    return boto3.client(service, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"], **kwargs)


BIN = Path(sys.executable).parent


def run_tool(tool: str, *args: str, user: str | None = None,
             **extra_env: str) -> subprocess.CompletedProcess:
    """One of this venv's commands (`edl`, `edl-api`, `aws`) as `user` would run it: their
    local profile, and none of this process's AWS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.update(extra_env)
    if user:
        env["AWS_PROFILE"] = user
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=timeout)


def ingest_process(dataset: str, source: str, *args: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "edl.core_resources.pipelines.ingest", "--instance", "local",
               "--dataset", dataset, "--source", source, *args)


def deploy(dataset: str) -> None:
    for command in (("deploy-core", "--instance", "local"),
                    ("deploy-dataset", dataset, "--instance", "local", "--tier", "sensitive",
                     "--owner", "alice", "--key", "id", "--op-column", "op",
                     "--delete-marker", "D")):
        done = run(EDL, *command)
        assert done.returncode == 0, done.stderr


def role_arn(role: str) -> str:
    return naming.role_arn(ACCOUNT, role)


def reader(dataset: str) -> LakeContext:
    """Metadata as the caller, data through the dataset's read role.

    The role is assumed as the platform admin (break-glass): what these tests check is the read
    role's own rights and the reads, not how a user obtains the role; users go through the
    credential broker in test_access_e2e.py."""
    base = LakeContext.for_instance("local")
    sessions = AwsSessions(base.config.instance("local"))
    session = sessions.assumed_session(
        role_arn(naming.dataset_role("local", dataset, "read")), "e2e-reader")
    return dataclasses.replace(base, s3_access=lambda region: S3Access.from_session(
        session, region, sessions.endpoint_url))


def rows(spark, context: LakeContext, dataset: str, **kwargs) -> list[tuple]:
    return sorted(tuple(r) for r in lake.read(spark, dataset, context=context, **kwargs).collect())


def ingest_in_process(spark, dataset: str, source: str, *args: str) -> int:
    """The same command, run in this process as the ingest job role (no new Spark JVM)."""
    context = LakeContext.for_instance(
        "local", role_arn=role_arn(naming.ingest_job_role("local")))
    return ingest_main(["--instance", "local", "--dataset", dataset, "--source", source, *args],
                       spark=spark, context=context)


def edl_api(*args: str, user: str) -> subprocess.CompletedProcess:
    return run_tool("edl-api", *args, user=user)


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr
    return done


def refused(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode != 0, done.stdout
    for word in words:
        assert word in done.stderr, done.stderr
    return done.stderr
