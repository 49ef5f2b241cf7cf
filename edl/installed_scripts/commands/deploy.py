"""Deploy commands: deploy-core, deploy-dataset, plan/diff, status, destroy."""

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Optional

from rich.markup import escape

from edl import naming
from edl.cloudformation.components.core import core_stacks
from edl.cloudformation.components.dataset import dataset_stacks
from edl.cloudformation.destroy import DestroyPlan
from edl.cloudformation.plan import Action, Plan, PlannedStack
from edl.errors import DeployError, UsageError
from edl.installed_scripts.commands.options import CommonOptions
from edl.installed_scripts.factory import Factory
from edl.ui import UI
from edl.utils.metadata import DatasetRecord, DeltaConvention, UnknownDatasetError

DEPLOY_CORE_HELP = """Deploy the instance's core stacks: per region the artifacts and log buckets
and, per tier, a KMS key with the data and drop buckets; in the default region the metadata tables
and the role that reads every internal-tier dataset. Unchanged stacks are left alone."""

DEPLOY_DATASET_HELP = """Deploy one dataset: its read and write roles, limited to the dataset's
prefixes in its tier's buckets, and its record (tier, owner, delta convention) in the metadata."""

PLAN_HELP = """Show what `edl deploy-core`, `edl deploy-dataset NAME …` or `edl destroy` would do,
stack by stack: create, update, recreate, unchanged or blocked, with the reason, the retained
resources (data) an update would replace, and the command that recovers a blocked stack; for
destroy, the order of deletion and what is kept. Takes the command's options. Changes nothing."""

DESTROY_HELP = """Delete every stack of the instance, in reverse dependency order, and what EDL
created outside CloudFormation (Glue databases and tables, SSM parameters). Data buckets, drop
buckets, log buckets, KMS keys and metadata tables are kept (and listed) unless --delete-data.
Asks for the instance name first; for a non-local instance only the typed name or
--confirm NAME confirms, never --yes."""


@dataclass(kw_only=True)
class ReplaceOptions:
    allow_replace: list[str] = field(default_factory=list, metadata={
        "args": ["--allow-replace"], "nargs": "+", "type": str, "extend": True,
        "metavar": "STACK.RESOURCE",
        "help": "let the deploy replace this retained resource (data) that `edl plan` lists; "
                "the old one stays behind, the stack gets a new empty one (repeat for several)"})


@dataclass
class DeployCoreOptions(ReplaceOptions, CommonOptions):
    pass


@dataclass
class DeployDatasetOptions(ReplaceOptions, CommonOptions):
    dataset: str = field(metadata={"args": ["dataset"], "help": "the dataset's name"})
    tier: str = field(metadata={"help": "internal, restricted or sensitive",
                                "choices": naming.TIERS})
    owner: str = field(metadata={"help": "the dataset's owner (a user name)"})
    description: str = field(default="", metadata={"help": "what the dataset holds"})
    key: list[str] = field(default_factory=list, metadata={
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
    yes: bool = field(default=False, metadata={
        "help": "do not ask for confirmation (the local instance only)"})
    confirm: Optional[str] = field(default=None, metadata={
        "metavar": "INSTANCE", "help": "confirm by naming the instance to destroy"})
    delete_data: bool = field(default=False, metadata={
        "help": "also empty and delete the data, drop and log buckets, schedule the KMS keys "
                "for deletion and delete the metadata tables"})


# -- deploy --------------------------------------------------------------------------------------

def _why(stack: PlannedStack) -> str:
    lines = [stack.reason]
    lines += [f"REPLACES {r.name} ({r.resource_type}): {r.why}" for r in stack.replacements]
    if stack.recovery:
        lines.append(f"to recover: {stack.recovery}")
    return escape("\n".join(lines))


def _show_plan(ui: UI, plan: Plan) -> None:
    colours = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.RECREATE: "red",
               Action.UNCHANGED: "dim", Action.BLOCKED: "bold red"}
    ui.table(plan.title, ("Stack", "Region", "Action", "Why"),
             ((s.name, s.spec.region, f"[{colours[s.action]}]{s.action.value}[/]", _why(s))
              for s in plan.stacks))
    counts = plan.counts()
    ui.info(", ".join(f"{n} to {a}" if a != "unchanged" else f"{n} unchanged"
                      for a, n in counts.items() if n))


def _execute(ui: UI, factory: Factory, plan: Plan, allow_replace: list[str]) -> None:
    _deploy(ui, factory, plan, allow_replace)
    if factory.instance.is_local:
        for role in factory.local_trust().refresh(plan):
            ui.info(f"role {role}: trust policy brought up to date through IAM")
        for workgroup in factory.local_workgroups().ensure(plan):
            ui.info(f"workgroup {workgroup}: created through the Athena API")


def _deploy(ui: UI, factory: Factory, plan: Plan, allow_replace: list[str]) -> None:
    if not plan.changes and not allow_replace:
        ui.success(f"{plan.title}: up to date ({len(plan.stacks)} stacks unchanged)")
        return
    _show_plan(ui, plan)
    in_the_way = factory.destroyer.kept_data_in_the_way(plan)
    if in_the_way:
        raise DeployError(
            f"{len(in_the_way)} bucket(s) or table(s) kept by an earlier `edl destroy` have the "
            f"names new stacks would create: {', '.join(r.physical_id for r in in_the_way)}; "
            "nothing was deployed",
            hint="copy out what you need, then delete them with `edl destroy --instance "
                 f"{factory.instance.name} --delete-data`; EDL does not import existing "
                 "resources into new stacks")
    started = time.monotonic()
    results = factory.stack_manager.execute(plan, frozenset(allow_replace))
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
    _execute(ui, factory, _core_plan(factory), options.allow_replace)
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
    _execute(ui, factory, plan, options.allow_replace)
    if existing:
        record = replace(record, created_at=existing.created_at)
    store.put_dataset(record)
    ui.success(f"dataset {record.dataset} recorded (tier {record.tier}, owner {record.owner})")
    return 0


def plan_only(options, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    if isinstance(options, DestroyOptions):
        _show_destroy_plan(ui, factory.destroyer.plan(delete_data=options.delete_data))
        return 0
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


def _show_destroy_plan(ui: UI, plan: DestroyPlan) -> None:
    rows = []
    for stack in plan.stacks:
        notes = [] if stack.known else ["not part of any EDL component"]
        if stack.retained:
            verb = "then deletes" if plan.delete_data else "keeps"
            notes.append(f"{verb} " + ", ".join(map(str, stack.retained)))
        if stack.emptied:
            notes.append("empties " + ", ".join(r.physical_id for r in stack.emptied))
        rows.append((str(stack.wave + 1), stack.name, stack.state.region, stack.state.status,
                     escape("\n".join(notes))))
    for obj in plan.api_objects:
        rows.append(("last", obj.name, obj.region, obj.kind, escape(obj.detail)))
    for orphan in plan.orphans:
        rows.append(("last" if plan.delete_data else "-", orphan.physical_id, orphan.region,
                     orphan.resource_type, "its stack is gone; "
                     + ("deleted" if plan.delete_data else "kept")))
    ui.table(plan.title, ("Wave", "Deletes", "Region", "Status / kind", "Notes"), rows)
    kept = len(plan.kept)
    ui.info(f"{len(plan.stacks)} stack(s) and {len(plan.api_objects)} object(s) outside "
            f"CloudFormation to delete; " + (f"{kept} retained resource(s) kept "
                                              "(--delete-data deletes them)" if kept
                                              else "nothing kept"))


def _confirmed_by_options(options: DestroyOptions, factory: Factory) -> bool:
    """Local: --yes or --confirm local. Any other instance: --confirm NAME only; --yes alone
    never destroys it. Checked before anything is read, so a wrong option costs nothing."""
    name = factory.instance.name
    if options.confirm is not None:
        if options.confirm != name:
            raise UsageError(f"--confirm {options.confirm} does not name instance {name}",
                             hint=f"pass --confirm {name} to destroy it")
        return True
    if options.yes and not factory.instance.is_local:
        raise UsageError(f"--yes does not confirm destroying instance {name}",
                         hint=f"type the name when asked, or pass --confirm {name}")
    if options.yes:
        return True
    if not sys.stdin.isatty():
        hint = "pass --yes (or --confirm local)" if factory.instance.is_local \
            else f"pass --confirm {name}"
        raise UsageError(f"refusing to destroy instance {name} without confirmation", hint=hint)
    return False


def destroy(options: DestroyOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    name = factory.instance.name
    confirmed = _confirmed_by_options(options, factory)
    destroyer = factory.destroyer
    plan = destroyer.plan(delete_data=options.delete_data)
    if not plan.stacks and not plan.api_objects and not (plan.delete_data and plan.orphans):
        ui.info(f"instance {name} has no stacks; nothing to destroy"
                + (f" (it keeps {len(plan.kept)} retained resource(s): --delete-data deletes "
                   "them)" if plan.kept else ""))
        return 0
    _show_destroy_plan(ui, plan)
    if not confirmed and input(f"Type the instance name ({name}) to confirm: ").strip() != name:
        ui.info("Not confirmed; nothing was deleted.")
        return 1
    destroyer.execute(plan, ui.success)
    if plan.kept:
        ui.info(f"kept {len(plan.kept)} retained resource(s) with their data: "
                + ", ".join(map(str, plan.kept)))
        ui.info(f"  to delete them too: edl destroy --instance {name} --delete-data")
    ui.success(f"instance {name} destroyed")
    return 0
