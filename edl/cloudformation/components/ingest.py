"""The ingest job (part of `edl deploy-core`): the Glue Spark job, its role, and the job code it
runs, uploaded to the artifacts bucket."""

from __future__ import annotations

from edl.cloudformation.stack_manager import StackSpec
from edl.config import Instance, LakeConfig


def ingest_stacks(config: LakeConfig, instance: Instance) -> list[StackSpec]:
    return []
