"""One dataset (`edl deploy-dataset`): its roles, one per access level, each allowed exactly the
dataset's prefixes in its tier's data bucket of every region and the tier's KMS keys; the write
level may also drop files into the dataset's areas of the tier's drop buckets (the areas the
ingest API accepts as the dataset's own), which is what "write" means: may ingest.

The roles are IAM, so global: the stack lives in the instance's default region. They trust only
the credential broker and the platform admin (`rest_api.broker_trust`), so users obtain them
through the broker after a grant. The dataset's record (tier, owner, delta convention) is
written to the metadata table once the stack is done.
"""

from __future__ import annotations

from edl import naming
from edl.cloudformation.components.core import key_arn, query_rights
from edl.cloudformation.components.rest_api import broker_trust
from edl.cloudformation.plan import StackSpec
from edl.config import Instance, LakeConfig


def dataset_stack(instance: Instance, dataset: str) -> str:
    return naming.stack_name(instance.name, "dataset", dataset)


def dataset_stacks(config: LakeConfig, instance: Instance, dataset: str,
                   tier: str) -> list[StackSpec]:
    naming.validate_dataset_name(dataset)
    naming.validate_tier(tier)
    buckets = [naming.data_bucket(config.bucket_prefix, instance.name, tier, r)
               for r in instance.regions]
    drops = [naming.drop_bucket(config.bucket_prefix, instance.name, tier, r)
             for r in instance.regions]
    return [StackSpec(
        name=dataset_stack(instance, dataset), region=instance.default_region,
        template="folder_acls.yaml",
        parameters=(
            ("Dataset", dataset),
            ("ReadRoleName", naming.dataset_role(instance.name, dataset, "read")),
            ("WriteRoleName", naming.dataset_role(instance.name, dataset, "write")),
            ("TrustedPrincipalArns", broker_trust(instance)),
            ("BucketArns", tuple(naming.bucket_arn(b) for b in buckets)),
            ("ObjectArns", tuple(naming.object_arn(b, f"{dataset}/*") for b in buckets)),
            ("DropBucketArns", tuple(naming.bucket_arn(b) for b in drops)),
            ("DropObjectArns", tuple(naming.object_arn(b, f"{area}*") for b in drops
                                     for area in naming.drop_areas(dataset))),
            ("KeyArns", tuple(key_arn(instance, tier, r) for r in instance.regions)),
            *query_rights(config, instance, tier, dataset),
        ),
    )]
