"""The REST API (part of `edl deploy-core`): API Gateway and the Lambda functions generated from
api_config.yaml, with the handler package uploaded to the artifacts bucket."""

from __future__ import annotations

from edl.cloudformation.stack_manager import StackSpec
from edl.config import Instance, LakeConfig


def rest_api_stacks(config: LakeConfig, instance: Instance) -> list[StackSpec]:
    return []
