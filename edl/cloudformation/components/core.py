"""The core of an instance (`edl deploy-core`).

Per region: the artifacts and access-log buckets, then one stack per tier with its KMS key, data
bucket and drop bucket. In the default region: the metadata tables, and the role that reads every
internal-tier dataset (which trusts the credential broker: it deploys after the REST API). The order follows from the outputs each stack reads (`OutputRef`): a tier's
buckets log into the artifacts stack's log bucket, the reader role takes the internal keys of
every region.
"""

from __future__ import annotations

from edl import naming
from edl.cloudformation.plan import OutputRef, StackSpec
from edl.config import Instance, LakeConfig


def _later_components():
    # Imported here: these modules build on the helpers above (buckets_stack, key_arn).
    from edl.cloudformation.components.ingest import ingest_stacks
    from edl.cloudformation.components.rest_api import rest_api_stacks
    from edl.cloudformation.components.sweeper import sweeper_stacks
    return ingest_stacks, rest_api_stacks, sweeper_stacks


def artifacts_stack(instance: Instance, region: str) -> str:
    return naming.stack_name(instance.name, "artifacts", region)


def buckets_stack(instance: Instance, tier: str, region: str) -> str:
    return naming.stack_name(instance.name, "buckets", tier, region)


def artifacts_bucket_ref(instance: Instance, region: str, format: str = "{}") -> OutputRef:
    """The region's artifacts bucket, from its stack: what reads it deploys after it."""
    return OutputRef(artifacts_stack(instance, region), "ArtifactsBucket", format)


def key_arn(instance: Instance, tier: str, region: str) -> OutputRef:
    """The tier's KMS key ARN in a region, from its buckets stack."""
    return OutputRef(buckets_stack(instance, tier, region), "KeyId",
                     naming.kms_key_arn(region, instance.account_id, "{}"))


def table_resources(instance: Instance, *tables: str, indexes: bool = True) -> tuple[str, ...]:
    """The IAM resources of the named metadata tables: their exact ARNs, or "*" on the local
    instance, where moto authorises DynamoDB calls against "*" (it computes no table ARN, so a
    policy naming the tables would deny every call there - DESIGN §8)."""
    if instance.is_local:
        return ("*",)
    return naming.table_arns(instance.name, instance.default_region, instance.account_id,
                             *tables, indexes=indexes)


def core_stacks(config: LakeConfig, instance: Instance) -> list[StackSpec]:
    prefix = config.bucket_prefix
    name = instance.name
    specs: list[StackSpec] = []
    for region in instance.regions:
        specs.append(StackSpec(
            name=artifacts_stack(instance, region), region=region, template="artifacts.yaml",
            parameters=(
                ("ArtifactsBucketName", naming.artifacts_bucket(prefix, name, region)),
                ("LogsBucketName", naming.logs_bucket(prefix, name, region)),
            ),
        ))
        for tier in naming.TIERS:
            specs.append(StackSpec(
                name=buckets_stack(instance, tier, region), region=region, template="buckets.yaml",
                parameters=(
                    ("Tier", tier),
                    ("DataBucketName", naming.data_bucket(prefix, name, tier, region)),
                    ("DropBucketName", naming.drop_bucket(prefix, name, tier, region)),
                    ("LogsBucketName", OutputRef(artifacts_stack(instance, region), "LogsBucket")),
                    ("KeyAliasName", naming.kms_alias(name, tier)),
                ),
            ))
    specs.append(StackSpec(
        name=naming.stack_name(name, "metadata"), region=instance.default_region,
        template="metadata.yaml", parameters=(("TablePrefix", naming.table_prefix(name)),),
    ))
    from edl.cloudformation.components.rest_api import broker_trust

    internal_buckets = [naming.data_bucket(prefix, name, "internal", r) for r in instance.regions]
    specs.append(StackSpec(
        name=naming.stack_name(name, "default-acls"), region=instance.default_region,
        template="default_acls.yaml",
        parameters=(
            ("RoleName", naming.default_reader_role(name)),
            ("TrustedPrincipalArns", broker_trust(instance)),
            ("BucketArns", tuple(naming.bucket_arn(b) for b in internal_buckets)),
            ("ObjectArns", tuple(naming.object_arn(b) for b in internal_buckets)),
            ("WorkingAreaObjectArns", tuple(naming.object_arn(b, "_*") for b in internal_buckets)),
            ("KeyArns", tuple(key_arn(instance, "internal", r) for r in instance.regions)),
        ),
    ))
    ingest_stacks, rest_api_stacks, sweeper_stacks = _later_components()
    return (specs + ingest_stacks(config, instance) + rest_api_stacks(config, instance)
            + sweeper_stacks(config, instance))
