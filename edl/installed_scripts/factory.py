"""Builds what a command needs from its common options: config, instance, sessions, managers.

Nothing else in the command layer builds boto3 sessions or clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from edl import naming
from edl.aws import AwsSessions, Identity
from edl.cloudformation.destroy import Destroyer
from edl.cloudformation.local_trust import LocalTrustRefresh
from edl.cloudformation.local_workgroups import LocalWorkGroups
from edl.cloudformation.stack_client import StackClient
from edl.cloudformation.stack_manager import StackManager
from edl.config import Instance, LakeConfig, get_config
from edl.ui import UI
from edl.utils.metadata import MetadataStore


@dataclass
class Factory:
    instance_name: str
    profile: str | None = None
    ui: UI = field(default_factory=UI)

    @cached_property
    def config(self) -> LakeConfig:
        return get_config()

    @cached_property
    def instance(self) -> Instance:
        return self.config.instance(self.instance_name)

    @cached_property
    def sessions(self) -> AwsSessions:
        return AwsSessions(self.instance, Identity.from_environment(self.profile))

    def stack_client(self, region: str) -> StackClient:
        return StackClient(
            self.sessions.deploy_client("cloudformation", region),
            region,
            s3=lambda: self.sessions.deploy_client("s3", region),
            artifacts_bucket=naming.artifacts_bucket(self.config.bucket_prefix,
                                                     self.instance.name, region),
            on_event=self.ui.stack_event,
        )

    @cached_property
    def stack_manager(self) -> StackManager:
        return StackManager(self.config, self.instance, self.stack_client)

    def local_trust(self) -> LocalTrustRefresh:
        """Sets the local cloud's role trust policies that moto left as they were."""
        return LocalTrustRefresh(self.stack_manager, self.sessions.deploy_client("iam"))

    def local_workgroups(self) -> LocalWorkGroups:
        """Creates the local cloud's Athena workgroups that moto's CloudFormation skips."""
        return LocalWorkGroups(self.stack_manager,
                               lambda region: self.sessions.deploy_client("athena", region))

    @cached_property
    def destroyer(self) -> Destroyer:
        return Destroyer(self.config, self.instance, self.stack_manager,
                         lambda service, region: self.sessions.deploy_client(service, region))

    def metadata(self) -> MetadataStore:
        """The metadata tables, written as the deploy role (deploy-dataset records datasets)."""
        return MetadataStore(self.sessions.deploy_resource("dynamodb"), self.instance.name)
