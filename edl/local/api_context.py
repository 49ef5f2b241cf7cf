"""The collaborators the REST API's handlers get on the local cloud.

In AWS a handler's Lambda function runs as the API's role (`edl-<instance>-api`, rest_api.yaml)
and builds its `ApiContext` from the environment. In the local runtime the API server calls
`LocalApiContext()` before each handler: it assumes that role as the platform admin (or, until
the role is usable, the CloudFormation role - see `roles.py`) and hands the handlers an
`ApiContext` through `edl.core_resources.rest_api.common.use_api_context`, rebuilt only when the
role changes. The page-token key comes from SSM as in AWS, or is made for this runtime.
"""

from __future__ import annotations

import logging
import os
import threading

from edl import naming
from edl.config import Instance
from edl.local.roles import RoleResolver

log = logging.getLogger("edl.local.api")


class LocalApiContext:
    """Hands the handlers an `ApiContext` acting as the API's Lambda role (or, until the REST API
    stack exists, the CloudFormation role), rebuilt when that choice changes."""

    def __init__(self, instance: Instance, role_name: str | None = None) -> None:
        self.instance = instance
        self.roles = RoleResolver(instance, role_name or naming.api_role(instance.name),
                                  purpose="api")
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            choice, changed = self.roles.choose()
            if changed:
                self._install(choice.role_arn)

    def _install(self, role_arn: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from edl.core_resources.rest_api import common
        from edl.utils.context import LakeContext

        sessions = self.roles.admin_sessions()
        # The session name is part of the caller ARN the broker's roles trust (naming.py).
        session = sessions.assumed_session(role_arn, naming.API_SESSION_NAME,
                                           label="the API's role")
        client = common.client_factory(session, sessions.endpoint_url, sessions.client_config,
                                       self.instance.default_region)

        lake = LakeContext.for_instance(self.instance.name, role_arn=role_arn)
        parameter = naming.page_token_parameter(self.instance.name)
        try:
            key = common.page_token_key_from_ssm(client("ssm", None), parameter)
        except (ClientError, BotoCoreError) as exc:
            # Page tokens then last as long as this runtime (so does everything on moto).
            log.warning("api - page-token key not in SSM (%s); using one for this runtime", exc)
            key = os.urandom(32)
        common.use_api_context(common.ApiContext(
            lake=lake, instance=self.instance, page_tokens=common.PageTokens(key), client=client))
        log.info("api - handlers act as %s", role_arn)
