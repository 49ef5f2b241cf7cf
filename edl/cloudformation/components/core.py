"""The core of an instance (`edl deploy-core`).

Per region: the artifacts and access-log buckets, then one stack per tier with its KMS key, data
bucket and drop bucket, then the Athena workgroups of every tier and their results bucket. In the default region: the metadata tables, and the role that reads every
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


# Query results are working copies: deleted after this many days.
RESULTS_EXPIRATION_DAYS = 30
# A query that would scan more than this is cancelled by Athena (100 GiB, about $0.50).
BYTES_SCANNED_CUTOFF = 100 * 2**30


def athena_stack(instance: Instance, region: str) -> str:
    return naming.stack_name(instance.name, "athena", region)


def query_rights(config: LakeConfig, instance: Instance, tier: str,
                 dataset: str) -> tuple[tuple[str, tuple | str], ...]:
    """The parameters that let a role query `dataset` (`"*"`: every dataset of the tier): its
    tier's workgroups, the Glue items of the dataset (or "*" on the local instance, where moto
    authorises Glue against "*", DESIGN §8), and the tier's prefix of the results buckets."""
    results = [naming.athena_results_bucket(config.bucket_prefix, instance.name, r)
               for r in instance.regions]
    prefix = naming.athena_results_prefix(tier)
    catalog: tuple = ("*",) if instance.is_local else naming.glue_dataset_arns(
        instance.name, tier, dataset, instance.regions, instance.account_id)
    return (
        ("WorkGroupArns", tuple(naming.athena_workgroup_arn(r, instance.account_id, tier)
                                for r in instance.regions)),
        ("CatalogResourceArns", catalog),
        ("ResultsBucketArns", tuple(naming.bucket_arn(b) for b in results)),
        ("ResultsObjectArns", tuple(naming.object_arn(b, f"{prefix}*") for b in results)),
        ("ResultsPrefix", prefix),
    )


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
            name=athena_stack(instance, region), region=region, template="athena.yaml",
            parameters=(
                ("ResultsBucketName", naming.athena_results_bucket(prefix, name, region)),
                ("LogsBucketName", OutputRef(artifacts_stack(instance, region), "LogsBucket")),
                ("ResultsExpirationDays", str(RESULTS_EXPIRATION_DAYS)),
                ("BytesScannedCutoffPerQuery", str(BYTES_SCANNED_CUTOFF)),
                *((f"{tier.capitalize()}{key}", value) for tier in naming.TIERS
                  for key, value in (
                      ("WorkGroupName", naming.athena_workgroup(tier)),
                      ("OutputLocation", f"s3://{naming.athena_results_bucket(prefix, name, region)}"
                                         f"/{naming.athena_results_prefix(tier)}"),
                      ("KeyArn", key_arn(instance, tier, region)))),
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
            *query_rights(config, instance, "internal", "*"),
        ),
    ))
    ingest_stacks, rest_api_stacks, sweeper_stacks = _later_components()
    return (specs + ingest_stacks(config, instance) + rest_api_stacks(config, instance)
            + sweeper_stacks(config, instance))
