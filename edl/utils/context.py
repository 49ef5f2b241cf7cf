"""The one factory that gives lake code its AWS collaborators for an instance.

`LakeContext.for_instance("local")` builds them from `edl.aws.AwsSessions` (the local endpoint and
credentials are handled there) as the caller or a role: what jobs, handlers and the sweep use.
`LakeContext.for_reader("local", profile="bob")` is a user reading: metadata with the user's own
credentials, each dataset's data with credentials the API's broker vends for (dataset, read)
(`edl.utils.vended`), refreshed before they expire. Tests build a `LakeContext` directly from
moto clients, or hand `for_reader` a broker of their own.

How a dataset's data is reached is `data_access(dataset)`: the context's `dataset_access` where
it has one (a reader's), else `s3_access(dataset.home_region)`, so a context built by hand with
only `s3_access` reads as before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from edl.config import LakeConfig, get_config
from edl.errors import UsageError
from edl.naming import data_bucket
from edl.utils.metadata import DatasetRecord, MetadataStore
from edl.utils.storage import S3Access
from edl.utils.updates import UpdateStore
from edl.utils.vended import Broker, VendedAccess


class _Lazy:
    """A boto3 resource made on first use: making DynamoDB's costs ~0.1 s of loading models,
    which a context that never reads metadata (a query planned through the API) need not pay."""

    def __init__(self, make: Callable[[], object]) -> None:
        self._make = make
        self._made: object | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        if self._made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._make()
        return getattr(self._made, name)


def resolve_instance(instance: str | None) -> str:
    name = instance or os.environ.get("EDL_INSTANCE")
    if not name:
        raise UsageError("no instance given",
                         hint="pass instance=... or set EDL_INSTANCE (e.g. EDL_INSTANCE=local)")
    return name


@dataclass
class LakeContext:
    instance: str
    config: LakeConfig
    metadata: MetadataStore
    updates: UpdateStore
    s3_access: Callable[[str], S3Access]   # region → how tasks reach S3 there
    glue: Callable[[str], object]          # region → a Glue client
    is_local: bool = False
    # dataset → how tasks reach that dataset's data; None: s3_access(its home region)
    dataset_access: Callable[[DatasetRecord], S3Access] | None = None
    endpoint_url: str | None = None        # the local cloud's AWS endpoint; None in AWS
    events: Callable[[str], object] | None = None   # region → an EventBridge client

    def data_access(self, dataset: DatasetRecord) -> S3Access:
        """How to reach `dataset`'s data (its parts, its manifests)."""
        if self.dataset_access is not None:
            return self.dataset_access(dataset)
        return self.s3_access(dataset.home_region)

    @classmethod
    def for_instance(cls, instance: str | None = None, role_arn: str | None = None,
                     profile: str | None = None) -> LakeContext:
        """Clients for `instance`, as the caller (`profile`, else the AWS environment) or,
        given `role_arn`, as that role (assumed by the caller, with refreshing credentials): on
        the local cloud the job runner runs the ingest job as its role, like Glue does in AWS."""
        from edl.aws import AwsSessions, Identity

        config = get_config()
        inst = config.instance(resolve_instance(instance))
        sessions = AwsSessions(inst, Identity.from_environment(profile))
        if role_arn:
            session = sessions.assumed_session(role_arn, "edl-ingest", label="the job role")
        else:
            session = sessions.user_session()
        dynamodb = _Lazy(lambda: session.resource("dynamodb", region_name=inst.default_region,
                                                  endpoint_url=sessions.endpoint_url,
                                                  config=sessions.client_config))
        return cls(
            instance=inst.name, config=config,
            metadata=MetadataStore(dynamodb, inst.name),
            updates=UpdateStore(dynamodb, inst.name),
            s3_access=lambda region: S3Access.from_session(
                session, inst.check_region(region), sessions.endpoint_url),
            glue=lambda region: session.client("glue", region_name=inst.check_region(region),
                                               endpoint_url=sessions.endpoint_url,
                                               config=sessions.client_config),
            is_local=inst.is_local,
            endpoint_url=sessions.endpoint_url,
            events=lambda region: session.client("events",
                                                 region_name=inst.check_region(region),
                                                 endpoint_url=sessions.endpoint_url,
                                                 config=sessions.client_config),
        )

    @classmethod
    def for_reader(cls, instance: str | None = None, profile: str | None = None, *,
                   broker: Broker | None = None, level: str = "read") -> LakeContext:
        """A user reading the lake: metadata as the caller (`profile`, else the AWS
        environment), data with the broker's credentials for (dataset, `level`), fetched on
        first use and refreshed before they expire. `broker` defaults to the lake API's
        credentials endpoint, as the same caller."""
        base = cls.for_instance(instance, profile=profile)
        vend = broker or api_broker(base.instance, profile)
        return replace(base, dataset_access=VendedAccess(vend, base.endpoint_url, level=level))

    def data_bucket(self, dataset: DatasetRecord) -> str:
        return data_bucket(self.config.bucket_prefix, self.instance, dataset.tier,
                           dataset.home_region)


def api_broker(instance: str, profile: str | None = None) -> Broker:
    """The lake API's credentials endpoint as a broker, as the caller named by `profile`. The
    client library (`edl_api`, in the same package) is imported and its client built on the
    first vend only: cloud code never reads as a user, and metadata-only calls need no API."""
    api = None
    lock = threading.Lock()

    def vend(dataset: str, level: str) -> dict:
        nonlocal api
        from edl_api.client import ApiClient
        from edl_api.lake_api import LakeApi

        with lock:
            if api is None:
                api = LakeApi(ApiClient.for_instance(instance, profile))
        return api.get_credentials(dataset, level)

    return vend
