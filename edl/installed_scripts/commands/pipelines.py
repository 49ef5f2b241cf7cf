"""Pipeline commands: deploy-pipeline, run-pipeline, pipelines, compact (DESIGN §4)."""

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.markup import escape

from edl import naming
from edl.cloudformation.components.pipeline import (
    package_key,
    pipeline_package,
    pipeline_stacks,
)
from edl.errors import EdlError, UsageError
from edl.installed_scripts.commands.deploy import ReplaceOptions, _execute
from edl.installed_scripts.commands.options import CommonOptions
from edl.installed_scripts.factory import Factory
from edl.pipeline_config import PipelineConfig, code_hash, load_pipeline, parse_as_of
from edl.ui import UI
from edl.utils.metadata import DatasetRecord, UnknownDatasetError, plain
from edl.utils.pipelines import PipelineStore, queue_run, run_job_item
from edl.utils.tier_policy import check_output_tiers

DEPLOY_PIPELINE_HELP = """Deploy a pipeline folder (pipeline_config.yaml with pipeline.py, or .sql
files): check it (keys, run(), SQL, the datasets it names and their tiers), package it with the
edl package by content hash (an unchanged pipeline uploads nothing and updates no stack),
deploy its stack (its role, its Glue job, its schedule) and register it. On the local instance
the runtime's job runner runs it, on its trigger or with `edl run-pipeline`."""

RUN_PIPELINE_HELP = """Start a run of a deployed pipeline: its inputs as of their newest
complete updates (or --as-of ALIAS=UPDATE), its outputs written as new updates. On the local
instance the runtime's job runner runs it on its warm Spark; elsewhere its Glue job does.
--wait follows the run to its end and shows its progress."""

COMPACT_HELP = """Write one snapshot update of a dataset equal to reading it as of its newest
update (every delta applied), so that later reads start from there. Runs on the local runtime's
job runner like a pipeline; lineage names the updates it folded."""

WAIT_POLL_SECONDS = 0.1
GLUE_POLL_SECONDS = 10.0


@dataclass
class DeployPipelineOptions(ReplaceOptions, CommonOptions):
    folder: str = field(metadata={"args": ["folder"],
                                  "help": "the pipeline's folder (holds pipeline_config.yaml)"})


@dataclass
class RunPipelineOptions(CommonOptions):
    pipeline: str = field(metadata={"args": ["pipeline"], "help": "the deployed pipeline's name"})
    as_of: list[str] = field(default_factory=list, metadata={
        "args": ["--as-of"], "nargs": "+", "type": str, "extend": True,
        "metavar": "ALIAS=UPDATE", "help": "read this input as of this update (repeatable)"})
    wait: bool = field(default=False, metadata={"help": "wait for the run to end"})
    timeout: float = field(default=3600.0, metadata={
        "help": "with --wait: give up waiting after this many seconds (the run goes on)"})
    json: bool = field(default=False, metadata={"help": "print the run as JSON"})


@dataclass
class PipelinesOptions(CommonOptions):
    json: bool = field(default=False, metadata={"help": "print the pipelines as JSON"})


@dataclass
class CompactOptions(CommonOptions):
    dataset: str = field(metadata={"args": ["dataset"], "help": "the dataset to compact"})
    wait: bool = field(default=True, metadata={
        "args": ["--no-wait"], "action": "store_false",
        "help": "start the compaction and return at once"})
    timeout: float = field(default=3600.0, metadata={
        "help": "give up waiting after this many seconds (the run goes on)"})
    json: bool = field(default=False, metadata={"help": "print the run as JSON"})


# -- deploy ---------------------------------------------------------------------------------------

def checked_pipeline(folder: str, factory: Factory) -> tuple[PipelineConfig,
                                                             dict[str, DatasetRecord]]:
    """The pipeline's config, checked against the lake: its datasets exist, and no output is
    of a lower tier than an input."""
    config = load_pipeline(folder)
    store = factory.metadata()
    records, missing = {}, []
    for dataset in sorted(set(config.input_datasets()) | set(config.output_datasets())):
        try:
            records[dataset] = store.get_dataset(dataset)
        except UnknownDatasetError:
            missing.append(dataset)
    if missing:
        raise UsageError(
            f"pipeline {config.name} names dataset(s) that do not exist in instance "
            f"{factory.instance.name}: {', '.join(missing)}",
            hint="deploy them first: edl deploy-dataset NAME --tier TIER --owner OWNER")
    check_output_tiers({d: records[d].tier for d in config.input_datasets()},
                       {d: records[d].tier for d in config.output_datasets()})
    return config, records


def deploy_pipeline(options: DeployPipelineOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    config, records = checked_pipeline(options.folder, factory)
    package = pipeline_package(config)
    specs = pipeline_stacks(factory.config, factory.instance, config, records, package)
    plan = factory.stack_manager.plan(f"pipeline {config.name}", specs)
    _execute(ui, factory, plan, options.allow_replace)
    instance = factory.instance
    artifacts = naming.artifacts_bucket(factory.config.bucket_prefix, instance.name,
                                        instance.default_region)
    store = pipeline_store(factory)
    registration = {
        "pipeline": config.name, "kind": config.kind, "trigger": config.trigger.kind,
        "schedule": config.trigger.schedule or "", "description": config.description,
        "inputs": config.input_datasets(), "outputs": config.output_datasets(),
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "code_hash": code_hash(config.folder),
        "package": f"s3://{artifacts}/{package_key(config, package)}",
        "job_name": naming.pipeline_job_name(instance.name, config.name),
        "role_arn": naming.role_arn(instance.account_id,
                                    naming.pipeline_role(instance.name, config.name)),
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.put(registration)
    ui.success(f"pipeline {config.name} registered ({config.kind}, trigger "
               f"{config.trigger.describe()}): {', '.join(config.input_datasets()) or '-'} "
               f"-> {', '.join(config.output_datasets())}")
    return 0


def pipeline_store(factory: Factory) -> PipelineStore:
    dynamodb = factory.sessions.deploy_resource("dynamodb")
    return PipelineStore(dynamodb.Table(naming.table_name(factory.instance.name, "pipelines")),
                         factory.instance.name)


def jobs_table(factory: Factory):
    dynamodb = factory.sessions.deploy_resource("dynamodb")
    return dynamodb.Table(naming.table_name(factory.instance.name, "jobs"))


# -- run ------------------------------------------------------------------------------------------

def start_run(factory: Factory, item: dict) -> str | None:
    """On the local instance, queue the run's job item for the runtime's job runner; in AWS,
    start a run of the pipeline's Glue job with the same arguments; → the Glue run id."""
    if factory.instance.is_local:
        queue_run(jobs_table(factory), item)
        return None
    arguments = {key: ",".join(value) if isinstance(value, list) else str(value)
                 for key, value in item["arguments"].items() if key != "--pipeline"}
    glue = factory.sessions.deploy_client("glue")
    return glue.start_job_run(JobName=item["job_name"], Arguments=arguments)["JobRunId"]


GLUE_DONE = {"SUCCEEDED": "succeeded", "FAILED": "failed", "ERROR": "failed",
             "TIMEOUT": "failed", "STOPPED": "failed"}


def _follow_glue(ui: UI, factory: Factory, job_name: str, run_id: str, timeout: float) -> int:
    """Wait for a Glue job run to end (AWS); its state and error are Glue's."""
    glue = factory.sessions.deploy_client("glue")
    deadline = time.monotonic() + timeout
    state = ""
    while True:
        job_run = glue.get_job_run(JobName=job_name, RunId=run_id)["JobRun"]
        if job_run["JobRunState"] != state:
            state = job_run["JobRunState"]
            ui.info(f"  {job_name} run {run_id}: {state}")
        if state in GLUE_DONE:
            break
        if time.monotonic() > deadline:
            raise EdlError(f"Glue run {run_id} of {job_name} is still {state} after "
                           f"{timeout:.0f} s", hint="it goes on; see it in the Glue console")
        time.sleep(GLUE_POLL_SECONDS)
    if GLUE_DONE[state] == "failed":
        raise EdlError(f"Glue run {run_id} of {job_name} ended {state}: "
                       f"{job_run.get('ErrorMessage', 'no message')}",
                       hint="its output updates are failed and invisible; its log is in "
                       "CloudWatch (/aws-glue/jobs)")
    ui.success(f"Glue run {run_id} of {job_name} succeeded")
    return 0


def run_pipeline(options: RunPipelineOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    registration = pipeline_store(factory).get(options.pipeline)
    config = json.loads(registration["config"])
    as_of = parse_as_of(options.as_of)
    unknown = sorted(set(as_of) - set(config["inputs"]))
    if unknown:
        raise UsageError(f"--as-of names {', '.join(unknown)}, which pipeline "
                         f"{options.pipeline} has no input called",
                         hint=f"its inputs: {', '.join(config['inputs'])}")
    who = factory.sessions.caller_arn() if not factory.instance.is_local else "admin"
    item = run_job_item(options.pipeline, as_of=as_of, requested_by=who)
    item["job_name"] = registration["job_name"]
    glue_run = start_run(factory, item)
    if glue_run is not None:
        ui.info(f"Glue run {glue_run} of {item['job_name']} started (job id {item['job_id']})")
        if options.json and not options.wait:
            print(json.dumps({"job_id": item["job_id"], "glue_run_id": glue_run}))
        return _follow_glue(ui, factory, item["job_name"], glue_run, options.timeout) \
            if options.wait else 0
    ui.info(f"run {item['job_id']} of pipeline {options.pipeline} queued")
    if not options.wait:
        _print_run(ui, item, options.json)
        return 0
    return _follow(ui, factory, item["job_id"], options.timeout, options.json)


def _follow(ui: UI, factory: Factory, job_id: str, timeout: float, as_json: bool) -> int:
    table = jobs_table(factory)
    deadline = time.monotonic() + timeout
    shown = None
    while True:
        item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item") or {}
        progress = item.get("progress")
        if progress and progress != shown and progress not in ("succeeded", "failed"):
            ui.info(f"  {escape(str(progress))}")
        shown = progress
        if item.get("status") in ("succeeded", "failed"):
            break
        if time.monotonic() > deadline:
            raise EdlError(f"run {job_id} is still {item.get('status', 'queued')} after "
                           f"{timeout:.0f} s", hint="it goes on; see it with edl pipelines")
        time.sleep(WAIT_POLL_SECONDS)
    _print_run(ui, item, as_json)
    if item["status"] == "failed":
        raise EdlError(f"run {job_id} failed: {item.get('error', 'no reason recorded')}",
                       hint="its output updates are failed and invisible; fix and run again")
    return 0


def _print_run(ui: UI, item: dict, as_json: bool) -> None:
    view = {key: plain(item.get(key)) for key in (
        "job_id", "pipeline", "status", "trigger", "run_id", "inputs", "outputs", "error",
        "duration_seconds") if item.get(key) not in (None, "", [], {})}
    if as_json:
        print(json.dumps(view, indent=1, default=str))
        return
    for alias, output in (view.get("outputs") or {}).items():
        ui.success(f"{alias}: {output['dataset']} update {output['update_id']} complete, "
                   f"{output.get('rows', '?')} rows")


# -- inspect ----------------------------------------------------------------------------------------

def pipelines(options: PipelinesOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    registered = pipeline_store(factory).all()
    runs: dict[str, list[dict]] = {}
    for item in _pipeline_jobs(factory):
        runs.setdefault(item.get("pipeline", ""), []).append(item)
    for items in runs.values():
        items.sort(key=lambda i: i.get("created_at", ""), reverse=True)
    if options.json:
        print(json.dumps({"items": [
            {"pipeline": p["pipeline"], "kind": p["kind"], "trigger": p["trigger"],
             "schedule": p.get("schedule") or None, "inputs": p["inputs"],
             "outputs": p["outputs"], "code_hash": p["code_hash"],
             "deployed_at": p["deployed_at"],
             "last_runs": [plain({k: r.get(k) for k in ("job_id", "status", "created_at",
                                                          "trigger", "outputs", "error")})
                           for r in runs.get(p["pipeline"], [])[:5]]}
            for p in registered]}, indent=1, default=str))
        return 0
    if not registered:
        ui.info(f"no pipeline is deployed in {factory.instance.name}; deploy one with: "
                f"edl deploy-pipeline pipelines/example --instance {factory.instance.name}")
        return 0
    rows = []
    for p in registered:
        last = runs.get(p["pipeline"], [])[:3]
        rows.append((p["pipeline"], p["kind"],
                     p["trigger"] + (f" {p['schedule']}" if p.get("schedule") else ""),
                     ", ".join(p["inputs"]) or "-", ", ".join(p["outputs"]),
                     "\n".join(f"{r.get('created_at', '')[:19]} {r.get('status')}" for r in last)
                     or "never run"))
    ui.table(f"pipelines of {factory.instance.name}",
             ("Pipeline", "Kind", "Trigger", "Inputs", "Outputs", "Last runs"), rows)
    return 0


def _pipeline_jobs(factory: Factory) -> list[dict]:
    from boto3.dynamodb.conditions import Attr

    from edl.utils.metadata import read_all
    from edl.utils.pipelines import PIPELINE_JOB

    return read_all(jobs_table(factory).scan, FilterExpression=Attr("type").eq(PIPELINE_JOB))


# -- compact ----------------------------------------------------------------------------------------

def compact(options: CompactOptions, ui: UI) -> int:
    from edl.utils.pipelines import COMPACT_PIPELINE

    factory = Factory(options.instance, options.profile, ui)
    naming.validate_dataset_name(options.dataset)
    factory.metadata().get_dataset(options.dataset)   # a clear error for an unknown dataset
    if not factory.instance.is_local:
        raise UsageError("edl compact runs on the local instance's job runner for now",
                         hint="in AWS, run the wrapper's compaction as a Glue job: python -m "
                         "edl.core_resources.pipelines.wrapper --compact DATASET")
    item = run_job_item(COMPACT_PIPELINE, requested_by="admin")
    item["arguments"]["--compact"] = options.dataset
    item["dataset"] = options.dataset
    queue_run(jobs_table(factory), item)
    ui.info(f"compaction {item['job_id']} of {options.dataset} queued")
    if not options.wait:
        _print_run(ui, item, options.json)
        return 0
    return _follow(ui, factory, item["job_id"], options.timeout, options.json)
