"""The REST API (part of `edl deploy-core`): API Gateway and the Lambda functions generated from
api_config.yaml, in the instance's default region, with the handlers' code uploaded to the
artifacts bucket there.

The code is one zip for every function: the `edl` package plus the pure-Python part of PyYAML
(the only import of the handlers that Lambda's Python runtime lacks; boto3 it has), packaged
reproducibly (`packaging.py`) under a key holding its hash, so an unchanged API costs neither an
upload nor a stack update. Deploy code packages the handlers as files and never imports them.
"""

from __future__ import annotations

import functools
from pathlib import Path

from edl import naming
from edl.api_config import get_api_config
from edl.cloudformation import packaging
from edl.cloudformation.components.core import artifacts_bucket_ref, key_arn
from edl.cloudformation.plan import StackSpec, Upload
from edl.config import Instance, LakeConfig


def _yaml_files() -> dict[str, bytes]:
    import yaml

    root = Path(yaml.__file__).parent
    return {name: data for name, data in packaging.tree_files(root, "yaml").items()
            if name.endswith(".py")}  # the C extension is built for this machine, not Lambda


@functools.lru_cache(maxsize=1)
def handler_package() -> packaging.Package:
    return packaging.build_zip({**packaging.edl_files(), **_yaml_files()})


def rest_api_stacks(config: LakeConfig, instance: Instance) -> list[StackSpec]:
    prefix, name, region = config.bucket_prefix, instance.name, instance.default_region
    account = instance.account_id
    api = get_api_config()
    artifacts = naming.artifacts_bucket(prefix, name, region)
    code = handler_package()
    code_key = code.key("code/rest-api", ".zip")
    uploads = [naming.object_arn(naming.drop_bucket(prefix, name, tier, r), "uploads/*")
               for r in instance.regions for tier in naming.TIERS]
    manifests = [naming.object_arn(naming.data_bucket(prefix, name, tier, r),
                                   f"*/data/*/{naming.MANIFEST_NAME}")
                 for r in instance.regions for tier in naming.TIERS]
    parameter = naming.page_token_parameter(name)
    if instance.is_local:
        # moto authorises DynamoDB and SSM calls against the resource "*" (it computes no table
        # or parameter ARN), so a policy naming the exact ARNs would deny every call there.
        metadata_arns: tuple = ("*",)
        parameter_arn = "*"
    else:
        metadata_arns = naming.table_arns(name, region, account)
        parameter_arn = naming.ssm_parameter_arn(region, account, parameter)
    return [StackSpec(
        name=naming.stack_name(name, "rest-api"), region=region, template="rest_api.yaml",
        parameters=(
            ("Instance", name),
            ("ApiName", naming.api_name(name, api.api_name)),
            ("StageName", api.stage),
            ("FunctionNamePrefix", naming.api_function_prefix(name)),
            ("RoleName", naming.api_role(name)),
            ("TrustedPrincipalArns", (instance.platform_admin_arn,)),
            ("MetadataResourceArns", metadata_arns),
            ("UploadObjectArns", tuple(uploads)),
            ("KeyArns", tuple(key_arn(instance, t, r)
                              for r in instance.regions for t in naming.TIERS)),
            ("ManifestObjectArns", tuple(manifests)),
            ("IngestJobArn", naming.glue_job_arn(region, account, naming.ingest_job_name(name))),
            ("PageTokenParameterName", parameter),
            ("PageTokenParameterArn", parameter_arn),
            ("CodeS3Bucket", artifacts_bucket_ref(instance, region)),
            ("CodeS3Key", code_key),
        ),
        uploads=(Upload(artifacts, code_key, lambda: code.data),),
    )]
