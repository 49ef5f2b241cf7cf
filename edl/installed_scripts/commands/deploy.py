"""Deploy commands: deploy-core, deploy-dataset, plan/diff, status, destroy."""

import sys
import time
from dataclasses import dataclass, field, replace
from typing import List, Optional

from edl import naming
from edl.cloudformation.components.core import core_stacks
from edl.cloudformation.components.dataset import dataset_stacks
from edl.cloudformation.stack_manager import Action, Plan
from edl.errors import UsageError
from edl.installed_scripts.commands.options import CommonOptions
from edl.installed_scripts.factory import Factory
from edl.ui import UI
from edl.utils.metadata import DatasetRecord, DeltaConvention, UnknownDatasetError

DEPLOY_CORE_HELP = """Deploy the instance's core stacks: per region the artifacts and log buckets
and, per tier, a KMS key with the data and drop buckets; in the default region the metadata tables
and the role that reads every internal-tier dataset. Unchanged stacks are left alone."""

DEPLOY_DATASET_HELP = """Deploy one dataset: its read and write roles, limited to the dataset's
prefixes in its tier's buckets, and its record (tier, owner, delta convention) in the metadata."""

PLAN_HELP = """Show what `edl deploy-core` or `edl deploy-dataset NAME …` would do, stack by stack:
create, update, recreate or unchanged, with the reason. Takes the deploy command's options.
Changes nothing."""


@dataclass
class DeployCoreOptions(CommonOptions):
    pass


@dataclass
class DeployDatasetOptions(CommonOptions):
    dataset: str = field(metadata={"args": ["dataset"], "help": "the dataset's name"})
    tier: str = field(metadata={"help": "internal, restricted or sensitive",
                                "choices": naming.TIERS})
    owner: str = field(metadata={"help": "the dataset's owner (a user name)"})
    description: str = field(default="", metadata={"help": "what the dataset holds"})
    key: List[str] = field(default_factory=list, metadata={
        "args": ["--key"], "nargs": "+", "type": str, "extend": True,
        "help": "a key column of the delta convention (repeat for several)"})
    op_column: Optional[str] = field(default=None, metadata={
        "help": "the delta column that says what happened to a row"})
    delete_marker: Optional[str] = field(default=None, metadata={
        "help": "the op-column value that marks a deleted row"})


@dataclass
class StatusOptions(CommonOptions):
    pass


@dataclass
class DestroyOptions(CommonOptions):
    yes: bool = field(default=False, metadata={"help": "do not ask for confirmation"})


# -- deploy --------------------------------------------------------------------------------------

def _show_plan(ui: UI, plan: Plan) -> None:
    colours = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.RECREATE: "red",
               Action.UNCHANGED: "dim"}
    ui.table(plan.title, ("Stack", "Region", "Action", "Why"),
             ((s.name, s.spec.region, f"[{colours[s.action]}]{s.action.value}[/]", s.reason)
              for s in plan.stacks))
    counts = plan.counts()
    ui.info(", ".join(f"{n} to {a}" if a != "unchanged" else f"{n} unchanged"
                      for a, n in counts.items() if n))


def _execute(ui: UI, factory: Factory, plan: Plan) -> None:
    if not plan.changes:
        ui.success(f"{plan.title}: up to date ({len(plan.stacks)} stacks unchanged)")
        return
    _show_plan(ui, plan)
    started = time.monotonic()
    results = factory.stack_manager.execute(plan)
    changed = sum(1 for r in results if r.changed)
    ui.success(f"{plan.title}: {changed} stack(s) deployed, "
               f"{len(plan.stacks) - len(plan.changes)} unchanged, "
               f"in {time.monotonic() - started:.1f}s")


def _core_plan(factory: Factory) -> Plan:
    specs = core_stacks(factory.config, factory.instance)
    return factory.stack_manager.plan(f"core of {factory.instance.name}", specs)


def _dataset_record(options: DeployDatasetOptions, factory: Factory) -> DatasetRecord:
    naming.validate_dataset_name(options.dataset)
    naming.validate_tier(options.tier)
    if (options.op_column or options.delete_marker) and not options.key:
        raise UsageError("a delta convention needs its key columns",
                         hint="add --key COLUMN (one or more)")
    if options.delete_marker and not options.op_column:
        raise UsageError("--delete-marker needs --op-column (the column that holds it)")
    delta = DeltaConvention(tuple(options.key), options.op_column, options.delete_marker) \
        if options.key else None
    return DatasetRecord(dataset=options.dataset, tier=options.tier, owner=options.owner,
                         home_region=factory.instance.default_region,
                         description=options.description, delta=delta)


def _dataset_plan(record: DatasetRecord, factory: Factory) -> Plan:
    specs = dataset_stacks(factory.config, factory.instance, record.dataset, record.tier)
    return factory.stack_manager.plan(f"dataset {record.dataset} ({record.tier})", specs)


def deploy_core(options: DeployCoreOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    _execute(ui, factory, _core_plan(factory))
    return 0


def deploy_dataset(options: DeployDatasetOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    record = _dataset_record(options, factory)
    plan = _dataset_plan(record, factory)  # fails first, naming what is missing, if core is not there
    store = factory.metadata()
    try:
        existing = store.get_dataset(record.dataset)
    except UnknownDatasetError:
        existing = None
    if existing and existing.tier != record.tier:
        raise UsageError(
            f"dataset {record.dataset} is in tier {existing.tier}, not {record.tier}",
            hint="a dataset cannot change tier: create a new dataset and copy the data over",
        )
    _execute(ui, factory, plan)
    if existing:
        record = replace(record, created_at=existing.created_at)
    store.put_dataset(record)
    ui.success(f"dataset {record.dataset} recorded (tier {record.tier}, owner {record.owner})")
    return 0


def plan_only(options, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    if isinstance(options, DeployDatasetOptions):
        plan = _dataset_plan(_dataset_record(options, factory), factory)
    else:
        plan = _core_plan(factory)
    _show_plan(ui, plan)
    return 0


# -- inspect and remove --------------------------------------------------------------------------

def status(options: StatusOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    manager = factory.stack_manager
    stacks = sorted(manager.live_stacks().values(), key=lambda s: (s.region, s.name))
    if not stacks:
        ui.info(f"instance {factory.instance.name} has no stacks; "
                f"deploy with: edl deploy-core --instance {factory.instance.name}")
        return 0
    rows = []
    for state in stacks:
        outputs = manager.outputs(state) if not state.in_progress else {}
        rows.append((state.name, state.region, state.status,
                     state.updated.strftime("%Y-%m-%d %H:%M:%S") if state.updated else "",
                     "\n".join(f"{k}={v}" for k, v in sorted(outputs.items()))))
    ui.table(f"stacks of {factory.instance.name}",
             ("Stack", "Region", "Status", "Updated", "Outputs"), rows)
    return 0


# Deleted in this order: what depends on others first.
_DESTROY_ORDER = ("dataset", "sweeper", "rest-api", "ingest-job", "default-acls", "metadata",
                  "buckets", "artifacts")


def destroy(options: DestroyOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    name = factory.instance.name
    manager = factory.stack_manager
    stacks = list(manager.live_stacks().values())
    if not stacks:
        ui.info(f"instance {name} has no stacks; nothing to destroy")
        return 0
    if not options.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to destroy instance {name} without confirmation",
                             hint="pass --yes to confirm")
        ui.info(f"This deletes {len(stacks)} stacks of instance {name} and every object in its "
                "buckets.")
        if input(f"Type the instance name ({name}) to confirm: ").strip() != name:
            ui.info("Not confirmed; nothing was deleted.")
            return 1
    for kind in _DESTROY_ORDER:
        group = [s for s in stacks if s.name.startswith(f"edl-{name}-{kind}")]
        if not group:
            continue
        for state in group:
            _empty_buckets(factory, state)
        manager.delete_stacks(group)
        ui.success(f"deleted {len(group)} {kind} stack(s)")
    return 0


def _empty_buckets(factory: Factory, state) -> None:
    """Delete every object version in the stack's buckets, so the stack can be deleted."""
    cfn = factory.sessions.deploy_client("cloudformation", state.region)
    s3 = factory.sessions.deploy_client("s3", state.region)
    resources = cfn.describe_stack_resources(StackName=state.name)["StackResources"]
    for resource in resources:
        if resource.get("ResourceType") != "AWS::S3::Bucket" or not resource.get("PhysicalResourceId"):
            continue
        bucket = resource["PhysicalResourceId"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for start in range(0, len(doomed), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start:start + 1000],
                                                         "Quiet": True})
