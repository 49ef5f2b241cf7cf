"""Every name EDL gives to things in AWS, in one place.

The names are contracts (DESIGN §1): users, policies and other tools find buckets, roles and
tables by them, so they are computed here and nowhere else. Names that AWS limits in length
(IAM roles: 64 characters) are shortened with a stable hash rather than refused.
"""

from __future__ import annotations

import hashlib
import re

from edl.errors import NamingError

TIERS = ("internal", "restricted", "sensitive")
ACCESS_LEVELS = ("read", "write")
METADATA_TABLES = ("datasets", "updates", "grants", "audit", "jobs", "pipelines",
                   "lambdas")

_DATASET_RE = re.compile(r"[a-z][a-z0-9_]{2,62}")
_INSTANCE_RE = re.compile(r"[a-z][a-z0-9]{1,15}")
_ROLE_NAME_MAX = 64


def validate_dataset_name(name: str) -> str:
    if not _DATASET_RE.fullmatch(name or ""):
        raise NamingError(
            f"invalid dataset name {name!r}",
            hint="use 3-63 lowercase letters, digits and '_', starting with a letter "
            "(for example clinical_trials)",
        )
    if name in RESERVED_DATASET_NAMES:
        raise NamingError(
            f"dataset name {name!r} is reserved: the lake's buckets use {name}/ for their own",
            hint=f"choose another name; reserved: {', '.join(sorted(RESERVED_DATASET_NAMES))}",
        )
    return name


def validate_tier(tier: str) -> str:
    if tier not in TIERS:
        raise NamingError(f"unknown tier {tier!r}", hint=f"choose one of: {', '.join(TIERS)}")
    return tier


def validate_instance_name(name: str) -> str:
    if not _INSTANCE_RE.fullmatch(name or ""):
        raise NamingError(
            f"invalid instance name {name!r}",
            hint="use 2-16 lowercase letters and digits, starting with a letter",
        )
    return name


def data_bucket(prefix: str, instance: str, tier: str, region: str) -> str:
    return f"{prefix}-{instance}-{tier}-{region}"


def drop_bucket(prefix: str, instance: str, tier: str, region: str) -> str:
    return f"{prefix}-drop-{instance}-{tier}-{region}"


def artifacts_bucket(prefix: str, instance: str, region: str) -> str:
    return f"{prefix}-artifacts-{instance}-{region}"


def logs_bucket(prefix: str, instance: str, region: str) -> str:
    """Where the data and drop buckets of a region write their S3 access logs."""
    return f"{prefix}-logs-{instance}-{region}"


def athena_results_bucket(prefix: str, instance: str, region: str) -> str:
    """Where the region's Athena workgroups write query results, each under `<tier>/`."""
    return f"{prefix}-athena-{instance}-{region}"


def athena_results_prefix(tier: str) -> str:
    """The key prefix of a tier's query results in the results bucket (its workgroup's
    output location): what that tier's roles may read and write there."""
    return f"{tier}/"


def athena_workgroup(tier: str) -> str:
    """The tier's Athena workgroup, `edl-<tier>` (one instance per account, so no instance in
    the name: `aws athena ... --work-group edl-sensitive`)."""
    return f"edl-{tier}"


def kms_alias(instance: str, tier: str) -> str:
    return f"alias/edl-{instance}-{tier}"


def table_prefix(instance: str) -> str:
    """What every metadata table's name starts with (metadata.yaml's `TablePrefix`)."""
    return f"edl-{instance}"


def table_name(instance: str, table: str) -> str:
    if table not in METADATA_TABLES:
        raise ValueError(f"unknown metadata table {table!r}")
    return f"{table_prefix(instance)}-{table}"


def table_arns(instance: str, region: str, account_id: str, *tables: str,
               indexes: bool = True) -> tuple[str, ...]:
    """The named metadata tables of the instance (and, with `indexes`, their indexes) as IAM
    resources, so that a role gets its rights table by table."""
    arns = []
    for table in tables:
        arn = f"arn:aws:dynamodb:{region}:{account_id}:table/{table_name(instance, table)}"
        arns += [arn, f"{arn}/index/*"] if indexes else [arn]
    return tuple(arns)


def glue_database(instance: str, tier: str) -> str:
    """The tier's database of what users query: one view per dataset (`edl.utils.catalog`)."""
    return f"edl_{instance}_{tier}"


def glue_updates_database(instance: str, tier: str) -> str:
    """The tier's database of the physical tables: one per dataset, a partition per update."""
    return f"{glue_database(instance, tier)}_updates"


def glue_catalog_arns(instance: str, regions: tuple[str, ...] | list[str],
                      account_id: str) -> tuple[str, ...]:
    """The Glue catalog, the instance's databases and their tables in every region."""
    return tuple(arn for r in regions for arn in (
        f"arn:aws:glue:{r}:{account_id}:catalog",
        f"arn:aws:glue:{r}:{account_id}:database/edl_{instance}_*",
        f"arn:aws:glue:{r}:{account_id}:table/edl_{instance}_*/*"))


def glue_dataset_arns(instance: str, tier: str, dataset: str,
                      regions: tuple[str, ...] | list[str], account_id: str) -> tuple[str, ...]:
    """What querying a dataset reads of the Glue catalog in every region: the catalog, the
    tier's two databases, and the dataset's view and physical table (`dataset="*"`: every
    dataset of the tier)."""
    databases = (glue_database(instance, tier), glue_updates_database(instance, tier))
    return tuple(arn for r in regions for arn in (
        f"arn:aws:glue:{r}:{account_id}:catalog",
        *(f"arn:aws:glue:{r}:{account_id}:database/{d}" for d in databases),
        *(f"arn:aws:glue:{r}:{account_id}:table/{d}/{dataset}" for d in databases)))


def athena_workgroup_arn(region: str, account_id: str, tier: str) -> str:
    return f"arn:aws:athena:{region}:{account_id}:workgroup/{athena_workgroup(tier)}"


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key_pattern: str = "*") -> str:
    """`arn:aws:s3:::<bucket>/<key_pattern>`: objects of a bucket, or of a prefix (`data/*`)."""
    return f"arn:aws:s3:::{bucket}/{key_pattern}"


def kms_key_arn(region: str, account_id: str, key_id: str) -> str:
    return f"arn:aws:kms:{region}:{account_id}:key/{key_id}"


def stack_prefix(instance: str) -> str:
    """What the name of every stack of the instance starts with."""
    return f"edl-{instance}-"


def stack_name(instance: str, component: str, *qualifiers: str) -> str:
    """`edl-<instance>-<component>[-<qualifier>…]`; CloudFormation allows no '_' in names."""
    parts = ["edl", instance, component, *qualifiers]
    return "-".join(p.replace("_", "-") for p in parts)


def default_reader_role(instance: str) -> str:
    """The role that reads every internal-tier dataset (default_acls.yaml)."""
    return f"edl-{instance}-internal-reader"


def dataset_role(instance: str, dataset: str, level: str) -> str:
    """`edl-<instance>-<dataset>-<level>`, shortened with a hash when IAM's 64 characters are
    not enough (a long dataset name on a long instance name)."""
    return _role_name(f"edl-{instance}-", dataset, f"-{level}")


def _role_name(head: str, name: str, tail: str = "") -> str:
    """`<head><name><tail>`; past IAM's 64 characters, `name` is cut and a hash of it added."""
    whole = f"{head}{name}{tail}"
    if len(whole) <= _ROLE_NAME_MAX:
        return whole
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = _ROLE_NAME_MAX - len(f"{head}-{digest}{tail}")
    return f"{head}{name[:keep]}-{digest}{tail}"


STAGING_ROOT = "_edl_staging"
# Beside an update's parts: every file's detail, and the parts' checksums.
MANIFEST_NAME = "_edl_manifest.json"


def staging_prefix(dataset: str, update_id: str) -> str:
    """Where a pending update's files are written before it commits: outside every dataset's
    prefixes, so the dataset roles (scoped to `<dataset>/*`) never read unfinished work."""
    return f"{STAGING_ROOT}/{dataset}/{update_id}/"


def staging_raw_prefix(dataset: str, update_id: str) -> str:
    return f"{staging_prefix(dataset, update_id)}raw/"


def staging_data_prefix(dataset: str, update_id: str) -> str:
    return f"{staging_prefix(dataset, update_id)}data/"


def ingest_job_role(instance: str) -> str:
    """The role the ingest job runs as (ingest_job.yaml): the Glue job's role in the cloud, the
    role the local job runner assumes on the local cloud."""
    return f"edl-{instance}-ingest-job"


def pipeline_role(instance: str, pipeline: str) -> str:
    """The role a pipeline runs as (pipeline.yaml): read on its inputs, write on its outputs;
    shortened with a hash past IAM's 64 characters."""
    return _role_name(f"edl-{instance}-pipe-", pipeline)


def pipeline_job_name(instance: str, pipeline: str) -> str:
    """The pipeline's Glue job (pipeline.yaml)."""
    return f"edl-{instance}-pipeline-{pipeline}"


def lambda_role(instance: str, project: str) -> str:
    """The role a Lambda project runs as (lambda_project.yaml): its datasets at their levels."""
    return _role_name(f"edl-{instance}-fn-", project)


def lambda_function_name(instance: str, project: str) -> str:
    """A Lambda project's function (Lambda allows 64 characters; names are at most 51)."""
    return f"edl-{instance}-{project}"[:64]


def ingest_job_name(instance: str) -> str:
    """The Glue job that ingests sources into updates (ingest_job.yaml)."""
    return f"edl-{instance}-ingest"


def role_arn(account_id: str, role: str) -> str:
    return f"arn:aws:iam::{account_id}:role/{role}"


def glue_job_arn(region: str, account_id: str, job: str) -> str:
    return f"arn:aws:glue:{region}:{account_id}:job/{job}"


# -- the REST API and the sweeper (rest_api.yaml, sweeper.yaml) ---------------------------------

def api_name(instance: str, api: str) -> str:
    """The API Gateway REST API (`api` is api_config.yaml's `api_name`)."""
    return f"edl-{instance}-{api}"


def api_role(instance: str) -> str:
    """The REST API's Lambda role: every handler runs as it, in the cloud and locally."""
    return f"edl-{instance}-api"


# The session name the local runtime gives its session of the API role (`local/api_context.py`).
# moto matches a trust principal only as the exact caller ARN (DESIGN §8), so on the local
# instance the roles the broker assumes name this session's ARN, which is built from it.
API_SESSION_NAME = "edl-api"


def api_session_arn(instance: str, account_id: str) -> str:
    """The ARN the local runtime's API handlers call as: its session of the API role."""
    return f"arn:aws:sts::{account_id}:assumed-role/{api_role(instance)}/{API_SESSION_NAME}"


def broker_principals(instance: str, account_id: str, *, local: bool) -> tuple[str, ...]:
    """Who the credential broker is, as trust policies name it: the API role, and on the local
    instance also the exact session the runtime acts as (moto does not match a role ARN for its
    sessions). The dataset roles and the default role trust these and the platform admin."""
    api = role_arn(account_id, api_role(instance))
    return (api, api_session_arn(instance, account_id)) if local else (api,)


def brokered_role_arns(instance: str, account_id: str) -> tuple[str, ...]:
    """The roles the broker vends credentials of, as IAM resource patterns: every dataset's read
    and write role (`dataset_role`, shortened names included) and the internal default role."""
    return (role_arn(account_id, f"edl-{instance}-*-read"),
            role_arn(account_id, f"edl-{instance}-*-write"),
            role_arn(account_id, default_reader_role(instance)))


# The inline policy a cloud revoke puts on a level's role: deny sessions issued before the revoke
# (their holders of other grants fetch new credentials from the broker).
REVOKE_OLDER_SESSIONS_POLICY = "edl-revoke-older-sessions"


def user_arns(account_id: str) -> str:
    """Every IAM user of the account (the broker looks grantees up), as an IAM resource."""
    return f"arn:aws:iam::{account_id}:user/*"


def api_function_prefix(instance: str) -> str:
    return f"edl-{instance}-api"


def api_function(instance: str, module: str) -> str:
    """The Lambda function serving one handler module."""
    return f"{api_function_prefix(instance)}-{module}"


def page_token_parameter(instance: str) -> str:
    """The SSM parameter holding the key that signs page tokens (created by the handlers)."""
    return f"/edl/{instance}/page-token-key"


def ssm_parameter_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:ssm:{region}:{account_id}:parameter{name}"


def sweeper(instance: str) -> str:
    """The sweeper's Lambda function, and its role."""
    return f"edl-{instance}-sweeper"


# -- areas at the roots of the lake's buckets, and the sources the ingest API takes -------------

# The prefixes EDL itself writes at a bucket's root: the drop bucket's `uploads/`, the artifacts
# bucket's `code/`, `jobs/` and `templates/`. A dataset owns `<dataset>/` in the drop bucket, so
# a dataset named like one of them would own every other dataset's uploads (or the lake's code).
RESERVED_DATASET_NAMES = frozenset({"uploads", "code", "jobs", "templates"})

# The URL schemes `start_ingest` takes a source by (plus `http` on the local instance); the
# client's `edl-api ingest --help` says the same, from this list.
SOURCE_SCHEMES = ("s3", "https")


def drop_areas(dataset: str) -> tuple[str, str]:
    """The key prefixes of a drop bucket that belong to `dataset`: where `create_upload` puts
    files, and where systems drop files for it."""
    return f"uploads/{dataset}/", f"{dataset}/"
