"""The one factory that gives lake code its AWS collaborators for an instance.

`LakeContext.for_instance("local")` builds them from `edl.aws.AwsSessions` (the local endpoint and
credentials are handled there); tests build a `LakeContext` directly from moto clients.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from edl.config import LakeConfig, get_config
from edl.errors import UsageError
from edl.naming import data_bucket
from edl.utils.metadata import DatasetRecord, MetadataStore
from edl.utils.storage import S3Access
from edl.utils.updates import UpdateStore


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

    @classmethod
    def for_instance(cls, instance: str | None = None,
                     role_arn: str | None = None) -> LakeContext:
        """Clients for `instance`, as the caller or, given `role_arn`, as that role (assumed by
        the caller, with refreshing credentials): on the local cloud the job runner runs the
        ingest job as its role, like Glue does in AWS."""
        from edl.aws import AwsSessions

        config = get_config()
        inst = config.instance(resolve_instance(instance))
        sessions = AwsSessions(inst)
        if role_arn:
            session = sessions.assumed_session(role_arn, "edl-ingest", label="the job role")
        else:
            session = sessions.user_session()
        dynamodb = session.resource("dynamodb", region_name=inst.default_region,
                                    endpoint_url=sessions.endpoint_url,
                                    config=sessions.client_config)
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
        )

    def data_bucket(self, dataset: DatasetRecord) -> str:
        return data_bucket(self.config.bucket_prefix, self.instance, dataset.tier,
                           dataset.home_region)
