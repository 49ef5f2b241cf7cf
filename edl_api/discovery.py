"""Where an instance's REST API is, and who calls it.

- The caller's credentials come from the same session factory every EDL command uses
  (`edl.aws.AwsSessions`): `--profile`, `AWS_PROFILE` or the AWS environment variables; on the
  local instance, profiles resolve in the local cloud's own credentials file.
- The local instance's API is the `api` service that `edl local start` records in the local state
  file (`~/.edl/local/state.json` → `services.api`).
- A cloud instance's API is API Gateway: the REST API stack `edl-<instance>-rest-api` holds one
  `AWS::ApiGateway::RestApi`, whose physical id is the ApiId, and the stage is `v1`. EDL reads
  outputs from a stack's resources (moto drops `Outputs` of stacks made by change sets, see
  edl/cloudformation/stack_client.py), so this does the same one describe call, as the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl import naming
from edl.aws import AwsSessions, Identity
from edl.config import Instance, get_config
from edl.errors import AwsAccessError, EdlError, LocalCloudError
from edl.paths import local_state_file

STAGE = "v1"
REST_API_COMPONENT = "rest-api"
REST_API_TYPE = "AWS::ApiGateway::RestApi"


class ApiNotDeployedError(EdlError):
    """The instance has no REST API stack (or it holds no RestApi)."""


@dataclass(frozen=True)
class ApiLocation:
    base_url: str
    credentials: Any  # botocore Credentials: refreshed on every request
    region: str
    local: bool
    aws_endpoint_url: str | None = None  # the local cloud's AWS endpoint; None in AWS


def api_location(instance_name: str, profile: str | None = None) -> ApiLocation:
    instance = get_config().instance(instance_name)
    # A stopped local cloud is the likeliest problem: say so before looking for its users.
    local_url = local_api_url() if instance.is_local else None
    sessions = AwsSessions(instance, Identity.from_environment(profile))
    credentials = sessions.user_session().get_credentials()
    if credentials is None:
        raise AwsAccessError("no AWS credentials found",
                             hint="pass --profile NAME or set AWS_PROFILE or the AWS_* variables")
    base_url = local_url or cloud_api_url(sessions.client("cloudformation"), instance)
    return ApiLocation(base_url, credentials, instance.default_region, instance.is_local,
                       sessions.endpoint_url)


def local_api_url() -> str:
    """The local runtime's API URL, from the state file `edl local start` writes."""
    path = local_state_file()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise LocalCloudError("the local cloud is not running",
                              hint="start it: edl local start") from None
    except (OSError, ValueError) as exc:
        raise LocalCloudError(f"cannot read the local cloud's state file {path}: {exc}",
                              hint="restart it: edl local stop; edl local start") from None
    url = (state.get("services") or {}).get("api") if isinstance(state, dict) else None
    if not url:
        raise LocalCloudError("the local cloud runs no REST API server",
                              hint="restart it with this version of EDL: "
                                   "edl local stop; edl local start")
    return url


def cloud_api_url(cloudformation, instance: Instance) -> str:
    """https://{ApiId}.execute-api.{region}.amazonaws.com/v1, the ApiId read from the stack."""
    region = instance.default_region
    stack = naming.stack_name(instance.name, REST_API_COMPONENT)
    not_deployed = ApiNotDeployedError(
        f"the REST API of instance {instance.name!r} is not deployed "
        f"(no stack {stack} in {region})",
        hint=f"deploy it: edl deploy-core --instance {instance.name}")
    try:
        resources = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if "does not exist" in error.get("Message", ""):
            raise not_deployed from None
        raise AwsAccessError(f"cannot read stack {stack}: {error.get('Code')}: "
                             f"{error.get('Message')}",
                             hint="check --profile: users need cloudformation:Describe*") from None
    except BotoCoreError as exc:
        raise AwsAccessError(f"cannot read stack {stack}: {exc}") from None
    api_ids = [r.get("PhysicalResourceId") for r in resources
               if r.get("ResourceType") == REST_API_TYPE and r.get("PhysicalResourceId")]
    if not api_ids:
        raise not_deployed
    return f"https://{api_ids[0]}.execute-api.{region}.amazonaws.com/{STAGE}"
