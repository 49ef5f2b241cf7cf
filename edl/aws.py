"""The one place that builds boto3 sessions and clients.

Identity follows AWS habits: `--profile NAME` or `AWS_PROFILE` pick it, else the usual AWS
environment variables. For the local instance, profile names resolve in the local cloud's own
credentials file (`~/.edl/local/credentials`, written by `edl local start`), and with no profile
at all the local instance acts as its platform admin.

Deploying uses a second identity: the instance's privileged CloudFormation role, assumed through
STS with credentials that refresh themselves, so an hour-long stack wait never expires mid-way.
"""

from __future__ import annotations

import configparser
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError
from botocore.loaders import Loader
from botocore.session import Session as BotocoreSession
from botocore.utils import parse_timestamp

from edl.config import Instance
from edl.errors import AwsAccessError, LocalCloudError
from edl.paths import local_config_file, local_credentials_file, local_state_file

LOCAL_ADMIN_PROFILE = "admin"
_ROLE_SESSION_SECONDS = 3600


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _UniquePaths(list):
    """A loader's search paths; each boto3 Session appends its own data folder to its loader's,
    which would grow without end on a shared loader."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


_loader: Loader | None = None
_loader_lock = threading.Lock()


def shared_loader() -> Loader:
    """The process's one botocore model loader. Each botocore session otherwise loads its own
    copy of every service model and of the endpoint data it uses (tens of thousands of dicts
    apiece), so a process that makes sessions as it goes - the local runtime, one per role and
    job - spent its time parsing JSON and collecting garbage."""
    global _loader
    with _loader_lock:
        if _loader is None:
            extra = [p for p in os.environ.get("AWS_DATA_PATH", "").split(os.pathsep) if p]
            _loader = Loader(extra_search_paths=_UniquePaths(os.path.expanduser(p)
                                                             for p in extra))
        return _loader


def get_session(session_vars: dict | None = None) -> BotocoreSession:
    """A new botocore session on the shared model loader (`shared_loader`)."""
    session = BotocoreSession(session_vars=session_vars)
    session.register_component("data_loader", shared_loader())
    return session


def boto3_session(**kwargs) -> boto3.Session:
    """`boto3.Session(**kwargs)` on a botocore session of `get_session()`."""
    return boto3.Session(botocore_session=get_session(), **kwargs)


def local_endpoint(instance: Instance) -> str:
    """The local cloud's URL: the running one's (its port may differ) or the configured one."""
    try:
        state = json.loads(local_state_file().read_text())
        return state["endpoint_url"]
    except (OSError, ValueError, KeyError):
        if instance.endpoint_url is None:
            raise LocalCloudError(f"instance {instance.name!r} has no endpoint_url",
                                  hint="give it one in account_config.yaml") from None
        return instance.endpoint_url


def read_local_profile(profile: str) -> tuple[str, str]:
    """Access key and secret of a local-cloud user, from the local credentials file."""
    path = local_credentials_file()
    parser = configparser.ConfigParser()
    if not parser.read(path):
        raise LocalCloudError(
            f"no local credentials at {path}",
            hint="start the local cloud first: edl local start",
        )
    if profile not in parser:
        known = ", ".join(parser.sections())
        raise AwsAccessError(
            f"unknown local profile {profile!r}", hint=f"the local cloud's users are: {known}"
        )
    section = parser[profile]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


@dataclass(frozen=True)
class Identity:
    """Who the caller is: a named profile, or whatever the environment says."""

    profile: str | None = None

    @classmethod
    def from_environment(cls, profile: str | None = None) -> Identity:
        return cls(profile or os.environ.get("AWS_PROFILE") or None)


class AwsSessions:
    """Sessions and clients for one instance, as the caller and as the CloudFormation role."""

    def __init__(self, instance: Instance, identity: Identity | None = None) -> None:
        self.instance = instance
        self.identity = identity or Identity.from_environment()
        self.endpoint_url = local_endpoint(instance) if instance.is_local else None
        # boto3 sessions are not thread-safe while they create clients (clients are, once made):
        # every client and resource is created under this lock. Re-entrant because
        # deploy_session() calls user_session().
        self._lock = threading.RLock()
        self._user_session: boto3.Session | None = None
        self._deploy_session: boto3.Session | None = None
        # Standard retry mode backs off exponentially on throttling and transient errors. The
        # local cloud never throttles, and a stopped one should say so at once, not after
        # seconds of backing off.
        self.client_config = Config(
            retries={"mode": "standard", "max_attempts": 3 if instance.is_local else 8},
            connect_timeout=2 if instance.is_local else 10,
            read_timeout=60,
            max_pool_connections=32,
        )

    # -- the caller ---------------------------------------------------------------------------

    def user_session(self) -> boto3.Session:
        with self._lock:
            if self._user_session is None:
                self._user_session = self._make_user_session()
            return self._user_session

    def _make_user_session(self) -> boto3.Session:
        region = self.instance.default_region
        if not self.instance.is_local:
            return boto3_session(profile_name=self.identity.profile, region_name=region)
        profile = self.identity.profile
        if profile is None and os.environ.get("AWS_ACCESS_KEY_ID"):
            return boto3_session(
                aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
                region_name=region,
            )
        name = profile or LOCAL_ADMIN_PROFILE
        key, secret = read_local_profile(name)
        # Profile names of the local instance resolve in the local cloud's own files, so
        # AWS_PROFILE=alice works without touching the user's ~/.aws.
        botocore_session = get_session()
        botocore_session.set_config_variable("config_file", str(local_config_file()))
        botocore_session.set_config_variable("credentials_file", str(local_credentials_file()))
        botocore_session.set_config_variable("profile", name)
        return boto3.Session(botocore_session=botocore_session, aws_access_key_id=key,
                             aws_secret_access_key=secret, region_name=region)

    def client(self, service: str, region: str | None = None):
        with self._lock:
            return self.user_session().client(
                service, region_name=region or self.instance.default_region,
                endpoint_url=self.endpoint_url, config=self.client_config,
            )

    # -- the privileged CloudFormation role ----------------------------------------------------

    def deploy_session(self) -> boto3.Session:
        with self._lock:
            if self._deploy_session is None:
                self._deploy_session = self._assume_cfn_role()
            return self._deploy_session

    def deploy_client(self, service: str, region: str | None = None):
        with self._lock:
            return self.deploy_session().client(
                service, region_name=region or self.instance.default_region,
                endpoint_url=self.endpoint_url, config=self.client_config,
            )

    def deploy_resource(self, service: str, region: str | None = None):
        with self._lock:
            return self.deploy_session().resource(
                service, region_name=region or self.instance.default_region,
                endpoint_url=self.endpoint_url, config=self.client_config,
            )

    def _assume_cfn_role(self) -> boto3.Session:
        return self.assumed_session(
            self.instance.cfn_role_arn, "edl-deploy", label="the CloudFormation role",
            denied_hint="only platform deployers can deploy; use their profile "
                        "(for the local cloud: --profile admin)",
        )

    def assumed_session(self, role_arn: str, session_name: str, *, label: str = "the role",
                        denied_hint: str | None = None) -> boto3.Session:
        """A session acting as `role_arn`, assumed by the caller, refreshing itself.

        The deploy role, and on the local cloud the job roles (in Glue a job simply *is* its
        role), are used this way."""
        sts = self.client("sts")

        def fetch() -> dict:
            try:
                creds = sts.assume_role(
                    RoleArn=role_arn, RoleSessionName=session_name,
                    DurationSeconds=_ROLE_SESSION_SECONDS,
                )["Credentials"]
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code in ("AccessDenied", "AccessDeniedException", "InvalidClientTokenId"):
                    raise AwsAccessError(
                        f"you may not assume {label} {role_arn} ({code})", hint=denied_hint,
                    ) from None
                raise
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        first = fetch()
        # botocore asks the time before every call to see whether to refresh; its default
        # clock reads the local time zone through dateutil, a good part of a call's cost in the
        # local runtime. The expiry is in UTC, so a UTC clock answers the same.
        credentials = RefreshableCredentials(
            first["access_key"], first["secret_key"], first["token"],
            parse_timestamp(first["expiry_time"]), refresh_using=fetch,
            method="sts-assume-role", time_fetcher=_utc_now,
        )
        botocore_session = get_session()
        botocore_session._credentials = credentials  # the documented way to hand in refreshable creds
        return boto3.Session(botocore_session=botocore_session,
                             region_name=self.instance.default_region)

    def caller_arn(self) -> str:
        return self.client("sts").get_caller_identity()["Arn"]
