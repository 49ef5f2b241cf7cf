"""Removing an instance (`edl destroy`, `edl plan destroy`): a plan like a deploy's, then its
execution.

The stacks come from the components (the core and every deployed dataset), and are deleted in
reverse dependency order: a stack goes before the stacks whose outputs it reads (`depends_on`),
stacks of one wave in parallel. Every live stack of the instance is accounted for: one that no
component describes is shown as such and deleted first (no component reads from it).

Data is kept unless asked for: buckets, keys and tables carry `DeletionPolicy: Retain`, so
deleting their stacks leaves them in place, in AWS and on moto alike (measured on moto 5.2: its
stack deletion skips resources with a Retain policy). The plan names what stays. With
`delete_data` they are removed once their stack is gone: a bucket is emptied (every version) and
deleted, a key scheduled for deletion after KMS's shortest wait (7 days), a table's deletion
protection switched off and the table deleted. Buckets that are not retained (the artifacts
bucket: deploy inputs, rebuilt by any deploy) are emptied so that their stack can be deleted.

What EDL created through APIs rather than templates goes too: the instance's Glue databases with
their tables and views (registered at ingest time, DESIGN §8), on the local instance the Athena
workgroups (which moto's CloudFormation skips), and the SSM parameters under the instance's path
(the page-token key the handlers create).

A retained resource outlives its stack, so a second destroy finds it by its name instead (an
"orphan": the instance's buckets and tables by their names in `naming`, its keys by the
description buckets.yaml gives them); `delete_data` deletes orphans too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl import naming
from edl.cloudformation.components.core import core_stacks
from edl.cloudformation.components.dataset import dataset_stack, dataset_stacks
from edl.cloudformation.plan import Action, Plan, StackSpec, in_dependency_order
from edl.cloudformation.render import parse_template
from edl.cloudformation.stack_client import StackState
from edl.cloudformation.stack_manager import StackManager
from edl.config import Instance, LakeConfig
from edl.errors import DeployError

ClientFor = Callable[[str, str], Any]
"""(service, region) -> a boto3 client acting as the deploy role."""

KEY_DELETION_DAYS = 7  # the shortest wait KMS allows


@dataclass(frozen=True)
class Resource:
    """A resource of a stack, as its deployed template and describe_stack_resources tell."""

    stack: str
    region: str
    logical_id: str
    resource_type: str
    physical_id: str

    def __str__(self) -> str:
        return f"{self.resource_type} {self.physical_id}"


@dataclass(frozen=True)
class StackDeletion:
    state: StackState
    wave: int
    known: bool
    """Whether a component describes the stack (else it is deleted in the first wave)."""
    retained: tuple[Resource, ...]
    emptied: tuple[Resource, ...]
    """Buckets that are not retained: emptied so that the stack can be deleted."""

    @property
    def name(self) -> str:
        return self.state.name


@dataclass(frozen=True)
class ApiObject:
    """Something EDL created through an API, outside CloudFormation."""

    kind: str  # "Glue database" | "Athena workgroup" | "SSM parameter"
    region: str
    name: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.region}){f', {self.detail}' if self.detail else ''}"


@dataclass(frozen=True)
class DestroyPlan:
    title: str
    stacks: tuple[StackDeletion, ...]
    api_objects: tuple[ApiObject, ...]
    orphans: tuple[Resource, ...]
    """Retained resources whose stack an earlier destroy deleted."""
    delete_data: bool

    @property
    def retained(self) -> tuple[Resource, ...]:
        return tuple(r for s in self.stacks for r in s.retained) + self.orphans

    @property
    def kept(self) -> tuple[Resource, ...]:
        """What stays after the destroy."""
        return () if self.delete_data else self.retained


def instance_specs(config: LakeConfig, instance: Instance,
                   live: dict[str, StackState]) -> list[StackSpec]:
    """The component specs of the instance as deployed: the core, and a dataset's stack for every
    dataset stack found (its name and tier read back from its parameters)."""
    specs = core_stacks(config, instance)
    for state in live.values():
        dataset = state.parameters.get("Dataset")
        if not dataset or state.name != dataset_stack(instance, dataset):
            continue
        buckets = state.parameters.get("BucketArns", "").split(",")
        tier = next((t for t in naming.TIERS if naming.bucket_arn(naming.data_bucket(
            config.bucket_prefix, instance.name, t, instance.default_region)) in buckets), None)
        if tier is not None:
            specs.extend(dataset_stacks(config, instance, dataset, tier))
    return specs


class Destroyer:
    """Plans and carries out the removal of one instance, as its deploy role."""

    def __init__(self, config: LakeConfig, instance: Instance, manager: StackManager,
                 client_for: ClientFor) -> None:
        self.config = config
        self.instance = instance
        self.manager = manager
        self.client_for = client_for

    # -- plan --------------------------------------------------------------------------------------

    def plan(self, *, delete_data: bool) -> DestroyPlan:
        live = self.manager.live_stacks()
        busy = sorted(s.name for s in live.values() if s.in_progress)
        if busy:
            raise DeployError(f"stack(s) busy: {', '.join(busy)}; nothing was deleted",
                              hint="wait for the running operations to finish, then run it again")
        specs = in_dependency_order(instance_specs(self.config, self.instance, live))
        waves = _deletion_waves(specs)
        unknown = sorted(set(live) - set(waves))
        stacks = [self._deletion(live[name], 0, known=False) for name in unknown]
        first = 1 if unknown else 0
        for spec in sorted((s for s in specs if s.name in live),
                           key=lambda s: (waves[s.name], s.name)):
            stacks.append(self._deletion(live[spec.name], first + waves[spec.name], known=True))
        title = f"destroy {self.instance.name}" + (" (and its data)" if delete_data else "")
        in_stacks = {r.physical_id for s in stacks for r in s.retained}
        orphans = tuple(r for r in self._data_resources() if r.physical_id not in in_stacks)
        return DestroyPlan(title, tuple(stacks), tuple(self._api_objects()), orphans, delete_data)

    def kept_data_in_the_way(self, plan: Plan) -> list[Resource]:
        """Buckets and tables kept by an earlier destroy that the plan's creates would collide
        with (a new stack cannot take over a resource by name; CloudFormation would have to
        import it). Only read when the plan creates a stack that holds retained resources."""
        creates = [s for s in plan.stacks if s.action in (Action.CREATE, Action.RECREATE)
                   and any(r.get("DeletionPolicy") == "Retain" for r in (parse_template(
                       s.template.body, s.template.name).get("Resources") or {}).values())]
        if not creates:
            return []
        in_stacks = {r.physical_id for state in plan.live.values()
                     for r in self._deletion(state, 0, known=True).retained}
        return [r for r in self._data_resources(keys=False) if r.physical_id not in in_stacks]

    def _deletion(self, state: StackState, wave: int, *, known: bool) -> StackDeletion:
        client = self.manager.client(state.region)
        template = client.template(state.name)
        declared = template.get("Resources") or {}
        retained, emptied = [], []
        for logical, physical in client.resources(state.name).items():
            kind = (declared.get(logical) or {}).get("Type", "")
            if not physical:
                continue
            resource = Resource(state.name, state.region, logical, kind, physical)
            if (declared.get(logical) or {}).get("DeletionPolicy") == "Retain":
                retained.append(resource)
            elif kind == "AWS::S3::Bucket":
                emptied.append(resource)
        return StackDeletion(state, wave, known, tuple(retained), tuple(emptied))

    def _data_resources(self, *, keys: bool = True) -> list[Resource]:
        """The instance's data resources that exist, found by name (see the module doc)."""
        prefix, name = self.config.bucket_prefix, self.instance.name
        found: list[Resource] = []
        for region in self.instance.regions:
            s3 = self.client_for("s3", region)
            buckets = [naming.logs_bucket(prefix, name, region),
                       naming.athena_results_bucket(prefix, name, region)] + [
                bucket for tier in naming.TIERS for bucket in (
                    naming.data_bucket(prefix, name, tier, region),
                    naming.drop_bucket(prefix, name, tier, region))]
            for bucket in buckets:
                try:
                    s3.head_bucket(Bucket=bucket)
                except ClientError as exc:
                    if exc.response["Error"]["Code"] in ("404", "NoSuchBucket", "NotFound"):
                        continue
                    raise _api_failure(f"look for bucket {bucket}", region, exc) from exc
                found.append(Resource("", region, "", "AWS::S3::Bucket", bucket))
            if keys:
                found.extend(self._keys(region))
        dynamodb = self.client_for("dynamodb", self.instance.default_region)
        for table in naming.METADATA_TABLES:
            table_name = naming.table_name(name, table)
            try:
                dynamodb.describe_table(TableName=table_name)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    continue
                raise _api_failure(f"look for table {table_name}", self.instance.default_region,
                                   exc) from exc
            found.append(Resource("", self.instance.default_region, "", "AWS::DynamoDB::Table",
                                  table_name))
        return found

    def _local_workgroups(self, region: str) -> list[ApiObject]:
        athena = self.client_for("athena", region)
        wanted = {naming.athena_workgroup(tier) for tier in naming.TIERS}
        try:
            groups = athena.list_work_groups().get("WorkGroups", [])
        except (ClientError, BotoCoreError) as exc:
            raise _api_failure("list Athena workgroups", region, exc) from exc
        return [ApiObject("Athena workgroup", region, g["Name"]) for g in groups
                if g["Name"] in wanted]

    def _keys(self, region: str) -> list[Resource]:
        """The tier keys of the instance in a region that are not already scheduled for
        deletion: buckets.yaml describes each as the key "for <its data bucket> and ..."."""
        kms = self.client_for("kms", region)
        mine = tuple(f" for {naming.data_bucket(self.config.bucket_prefix, self.instance.name, t, region)} "
                     for t in naming.TIERS)
        found = []
        try:
            for page in kms.get_paginator("list_keys").paginate():
                for key in page["Keys"]:
                    meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
                    if meta.get("KeyState") == "Enabled" and \
                            any(m in meta.get("Description", "") for m in mine):
                        found.append(Resource("", region, "", "AWS::KMS::Key", key["KeyId"]))
        except ClientError as exc:
            raise _api_failure("list KMS keys", region, exc) from exc
        return found

    def _api_objects(self) -> list[ApiObject]:
        found: list[ApiObject] = []
        path = naming.page_token_parameter(self.instance.name).rsplit("/", 1)[0]
        for region in self.instance.regions:
            glue = self.client_for("glue", region)
            databases = [db for tier in naming.TIERS for db in (
                naming.glue_database(self.instance.name, tier),
                naming.glue_updates_database(self.instance.name, tier))]
            for database in databases:
                try:
                    tables = [t["Name"] for page in glue.get_paginator("get_tables").paginate(
                        DatabaseName=database) for t in page["TableList"]]
                except ClientError as exc:
                    if exc.response["Error"]["Code"] == "EntityNotFoundException":
                        continue
                    raise _api_failure("read the Glue catalog", region, exc) from exc
                found.append(ApiObject("Glue database", region, database,
                                       f"{len(tables)} table(s)"))
            if self.instance.is_local:   # made through Athena there (local_workgroups.py)
                found.extend(self._local_workgroups(region))
            ssm = self.client_for("ssm", region)
            try:
                names = [p["Name"] for page in ssm.get_paginator("get_parameters_by_path").paginate(
                    Path=path, Recursive=True) for p in page["Parameters"]]
            except (ClientError, BotoCoreError) as exc:
                raise _api_failure("list SSM parameters", region, exc) from exc
            found.extend(ApiObject("SSM parameter", region, name) for name in names)
        return found

    # -- execute -----------------------------------------------------------------------------------

    def execute(self, plan: DestroyPlan, report: Callable[[str], None]) -> None:
        for wave in sorted({s.wave for s in plan.stacks}):
            group = [s for s in plan.stacks if s.wave == wave]
            for deletion in group:
                for bucket in deletion.emptied:
                    self._empty_bucket(bucket)
            self.manager.delete_stacks([s.state for s in group])
            report(f"deleted {len(group)} stack(s): {', '.join(s.name for s in group)}")
            if plan.delete_data:
                for deletion in group:
                    for resource in deletion.retained:
                        self._delete_retained(resource)
                        report(f"deleted {resource}")
        for obj in plan.api_objects:
            self._delete_api_object(obj)
            report(f"deleted {obj}")
        if plan.delete_data:
            for resource in plan.orphans:
                self._delete_retained(resource)
                report(f"deleted {resource}")

    def _empty_bucket(self, bucket: Resource) -> None:
        s3 = self.client_for("s3", bucket.region)
        try:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket.physical_id):
                doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                          for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                for start in range(0, len(doomed), 1000):
                    s3.delete_objects(Bucket=bucket.physical_id,
                                      Delete={"Objects": doomed[start:start + 1000], "Quiet": True})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchBucket":
                raise _api_failure(f"empty bucket {bucket.physical_id}", bucket.region, exc) from exc

    def _delete_retained(self, resource: Resource) -> None:
        region = resource.region
        try:
            if resource.resource_type == "AWS::S3::Bucket":
                self._empty_bucket(resource)
                self.client_for("s3", region).delete_bucket(Bucket=resource.physical_id)
            elif resource.resource_type == "AWS::KMS::Key":
                self.client_for("kms", region).schedule_key_deletion(
                    KeyId=resource.physical_id, PendingWindowInDays=KEY_DELETION_DAYS)
            elif resource.resource_type == "AWS::DynamoDB::Table":
                dynamodb = self.client_for("dynamodb", region)
                dynamodb.update_table(TableName=resource.physical_id,
                                      DeletionProtectionEnabled=False)
                dynamodb.delete_table(TableName=resource.physical_id)
            else:
                raise DeployError(f"{resource}: EDL does not know how to delete this type",
                                  hint="delete it by hand")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchBucket", "NotFoundException",
                                                 "ResourceNotFoundException"):
                return  # already gone
            raise _api_failure(f"delete {resource}", region, exc) from exc

    def _delete_api_object(self, obj: ApiObject) -> None:
        try:
            if obj.kind == "Glue database":
                self.client_for("glue", obj.region).delete_database(Name=obj.name)
            elif obj.kind == "Athena workgroup":
                self.client_for("athena", obj.region).delete_work_group(
                    WorkGroup=obj.name, RecursiveDeleteOption=True)
            else:
                self.client_for("ssm", obj.region).delete_parameter(Name=obj.name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("EntityNotFoundException", "ParameterNotFound"):
                return
            raise _api_failure(f"delete {obj}", obj.region, exc) from exc


def _deletion_waves(specs: Sequence[StackSpec]) -> dict[str, int]:
    """Wave of each stack: 0 for stacks nothing reads from, then each stack one wave after the
    last stack that reads from it. `specs` are in dependency order."""
    readers: dict[str, list[str]] = {s.name: [] for s in specs}
    for spec in specs:
        for dependency in spec.depends_on:
            readers.setdefault(dependency, []).append(spec.name)
    waves: dict[str, int] = {}
    for spec in reversed(specs):
        waves[spec.name] = 1 + max((waves[r] for r in readers[spec.name]), default=-1)
    return waves


def _api_failure(what: str, region: str, exc: Exception) -> DeployError:
    return DeployError(f"destroy could not {what} in {region}: {exc}",
                       hint="run it again once the cause is fixed; what was deleted stays deleted")
