"""The REST API (part of `edl deploy-core`): API Gateway and the Lambda functions generated from
api_config.yaml, in the instance's default region, with the handlers' code uploaded to the
artifacts bucket there.

The code is one zip for every function: the `edl` package plus the pure-Python part of PyYAML
(the only import of the handlers that Lambda's Python runtime lacks; boto3 it has), packaged
reproducibly (`packaging.py`) under a key holding its hash, so an unchanged API costs neither an
upload nor a stack update. Deploy code packages the handlers as files and never imports them.

The API's role is also the credential broker (DESIGN §5): the roles it vends credentials of trust
it (`broker_trust`), and it may assume exactly those.
"""

from __future__ import annotations

import functools

from edl import naming
from edl.api_config import get_api_config
from edl.cloudformation import packaging
from edl.cloudformation.components.core import artifacts_bucket_ref, key_arn, table_resources
from edl.cloudformation.plan import OutputRef, ParamValue, StackSpec, Upload
from edl.config import Instance, LakeConfig


@functools.lru_cache(maxsize=1)
def handler_package() -> packaging.Package:
    return packaging.build_zip({**packaging.edl_files(), **packaging.yaml_files()})


def rest_api_stack(instance: Instance) -> str:
    return naming.stack_name(instance.name, "rest-api")


def broker_trust(instance: Instance) -> tuple[ParamValue, ...]:
    """Whom the roles the broker vends trust: `naming.broker_principals` and the platform admin
    (break-glass). The API role's ARN is read from the REST API stack, so a stack that trusts it
    deploys after the role exists (IAM refuses a trust policy naming a role that does not)."""
    # The first principal is the API role's ARN: the same string, read from the stack.
    sessions = naming.broker_principals(instance.name, instance.account_id,
                                        local=instance.is_local)[1:]
    api_role = OutputRef(rest_api_stack(instance), "Role",
                         naming.role_arn(instance.account_id, "{}"))
    return (api_role, *sessions, instance.platform_admin_arn)


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
        # moto authorises SSM and IAM's user calls against the resource "*" (it computes no
        # parameter or user ARN), so a policy naming the exact ARNs would deny every call there.
        parameter_arn = user_arns = "*"
    else:
        parameter_arn = naming.ssm_parameter_arn(region, account, parameter)
        user_arns = naming.user_arns(account)
    return [StackSpec(
        name=rest_api_stack(instance), region=region, template="rest_api.yaml",
        parameters=(
            ("Instance", name),
            ("ApiName", naming.api_name(name, api.api_name)),
            ("StageName", api.stage),
            ("FunctionNamePrefix", naming.api_function_prefix(name)),
            ("RoleName", naming.api_role(name)),
            ("TrustedPrincipalArns", (instance.platform_admin_arn,)),
            ("RecordTableArns", table_resources(instance, "datasets", "updates", "jobs")),
            ("GrantsTableArns", table_resources(instance, "grants")),
            ("AuditTableArns", table_resources(instance, "audit")),
            ("PipelinesTableArns", table_resources(instance, "pipelines", indexes=False)),
            ("BrokeredRoleArns", naming.brokered_role_arns(name, account)),
            ("UserArns", user_arns),
            ("UploadObjectArns", tuple(uploads)),
            ("KeyArns", tuple(key_arn(instance, t, r)
                              for r in instance.regions for t in naming.TIERS)),
            ("ManifestObjectArns", tuple(manifests)),
            ("IngestJobArn", naming.glue_job_arn(region, account, naming.ingest_job_name(name))),
            ("PipelineJobArns", naming.glue_job_arn(region, account,
                                                    naming.pipeline_job_name(name, "*"))),
            ("PageTokenParameterName", parameter),
            ("PageTokenParameterArn", parameter_arn),
            ("CodeS3Bucket", artifacts_bucket_ref(instance, region)),
            ("CodeS3Key", code_key),
        ),
        uploads=(Upload(artifacts, code_key, lambda: code.data),),
    )]
