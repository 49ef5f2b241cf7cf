"""The sweeper (part of `edl deploy-core`): a Lambda function on an EventBridge schedule that runs
`edl.utils.sweep` for the instance (abandoned updates, and grants past their expiry), in its
default region, with its own role.

Its code is the REST API handlers' zip (`rest_api.handler_package`: the same key, so no second
upload); the function's handler is `edl.core_resources.rest_api.sweep.handler`.
"""

from __future__ import annotations

from edl import naming
from edl.cloudformation.components.core import artifacts_bucket_ref, table_resources
from edl.cloudformation.components.rest_api import handler_package
from edl.cloudformation.plan import StackSpec, Upload
from edl.config import Instance, LakeConfig

SCHEDULE = "rate(15 minutes)"


def sweeper_stacks(config: LakeConfig, instance: Instance) -> list[StackSpec]:
    prefix, name, region = config.bucket_prefix, instance.name, instance.default_region
    account = instance.account_id
    artifacts = naming.artifacts_bucket(prefix, name, region)
    code = handler_package()
    code_key = code.key("code/rest-api", ".zip")
    buckets = [naming.data_bucket(prefix, name, tier, r)
               for r in instance.regions for tier in naming.TIERS]
    if instance.is_local:
        # moto authorises Glue calls against the resource "*" (DESIGN §8).
        catalog_arns: tuple = ("*",)
    else:
        catalog_arns = naming.glue_catalog_arns(name, instance.regions, account)
    return [StackSpec(
        name=naming.stack_name(name, "sweeper"), region=region, template="sweeper.yaml",
        parameters=(
            ("Instance", name),
            ("FunctionName", naming.sweeper(name)),
            ("RoleName", naming.sweeper(name)),
            ("TrustedPrincipalArns", (instance.platform_admin_arn,)),
            ("RecordTableArns", table_resources(instance, "datasets", "updates", indexes=False)),
            ("GrantsTableArns", table_resources(instance, "grants", indexes=False)),
            ("AuditTableArns", table_resources(instance, "audit", indexes=False)),
            ("DataBucketArns", tuple(naming.bucket_arn(b) for b in buckets)),
            ("DataObjectArns", tuple(naming.object_arn(b) for b in buckets)),
            ("CatalogResourceArns", catalog_arns),
            ("Schedule", SCHEDULE),
            ("CodeS3Bucket", artifacts_bucket_ref(instance, region)),
            ("CodeS3Key", code_key),
        ),
        uploads=(Upload(artifacts, code_key, lambda: code.data),),
    )]
