"""Lambda project commands: deploy-lambda, invoke-lambda, lambdas (DESIGN §4)."""

import base64
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape

from edl import naming
from edl.cloudformation.components.lambda_project import (
    lambda_package,
    lambda_stacks,
    package_key,
)
from edl.errors import EdlError, UsageError
from edl.installed_scripts.commands.deploy import ReplaceOptions, _execute
from edl.installed_scripts.commands.options import CommonOptions
from edl.installed_scripts.commands.pipelines import jobs_table
from edl.installed_scripts.factory import Factory
from edl.lambda_config import LambdaConfig, code_hash, load_lambda
from edl.ui import UI
from edl.utils.lambdas import LAMBDA_JOB, LambdaStore, invocation_item
from edl.utils.metadata import DatasetRecord, UnknownDatasetError, plain, read_all
from edl.utils.pipelines import queue_run

DEPLOY_LAMBDA_HELP = """Deploy a Lambda project folder (lambda_config.yaml and the handler's
code): check it (keys, the handler, limits, trigger, the datasets it names), package it with
the edl package by content hash (an unchanged project uploads nothing and updates no stack),
deploy its stack (its role with exactly its datasets' rights, its function, its trigger) and
register it. On the local instance the runtime runs the handler, on its trigger or with
`edl invoke-lambda`."""

INVOKE_LAMBDA_HELP = """Invoke a deployed Lambda project's function with an event (a JSON file,
`-` for stdin, or {} without --event) and print what it returned. On the local instance the
runtime's Lambda runner runs the handler as the project's role; elsewhere Lambda does. Exit code
1 when the handler raised or timed out (its error and log tail are shown)."""

WAIT_POLL_SECONDS = 0.1


@dataclass
class DeployLambdaOptions(ReplaceOptions, CommonOptions):
    folder: str = field(metadata={"args": ["folder"],
                                  "help": "the project's folder (holds lambda_config.yaml)"})


@dataclass
class InvokeLambdaOptions(CommonOptions):
    project: str = field(metadata={"args": ["project"],
                                   "help": "the deployed Lambda project's name"})
    event: str = field(default="", metadata={
        "help": "the event: a JSON file, or - to read it from stdin (default: {})"})
    no_wait: bool = field(default=False, metadata={
        "args": ["--no-wait", "--async"],
        "help": "queue the invocation (InvocationType Event) and return at once"})
    timeout: float = field(default=960.0, metadata={
        "help": "give up waiting after this many seconds (the invocation goes on)"})
    json: bool = field(default=False, metadata={"help": "print the invocation as JSON"})


@dataclass
class LambdasOptions(CommonOptions):
    json: bool = field(default=False, metadata={"help": "print the projects as JSON"})


# -- deploy ---------------------------------------------------------------------------------------

def checked_project(folder: str, factory: Factory) -> tuple[LambdaConfig,
                                                            dict[str, DatasetRecord]]:
    """The project's config, checked against the lake: the datasets it names exist."""
    config = load_lambda(folder)
    store = factory.metadata()
    records, missing = {}, []
    for dataset in sorted(config.datasets):
        try:
            records[dataset] = store.get_dataset(dataset)
        except UnknownDatasetError:
            missing.append(dataset)
    if missing:
        raise UsageError(
            f"Lambda project {config.name} names dataset(s) that do not exist in instance "
            f"{factory.instance.name}: {', '.join(missing)}",
            hint="deploy them first: edl deploy-dataset NAME --tier TIER --owner OWNER")
    return config, records


def lambda_store(factory: Factory) -> LambdaStore:
    dynamodb = factory.sessions.deploy_resource("dynamodb")
    return LambdaStore(dynamodb.Table(naming.table_name(factory.instance.name, "lambdas")),
                       factory.instance.name)


def deploy_lambda(options: DeployLambdaOptions, ui: UI) -> int:
    factory = Factory(options.instance, options.profile, ui)
    config, records = checked_project(options.folder, factory)
    package = lambda_package(config)
    specs = lambda_stacks(factory.config, factory.instance, config, records, package)
    plan = factory.stack_manager.plan(f"Lambda project {config.name}", specs)
    _execute(ui, factory, plan, options.allow_replace)
    instance = factory.instance
    artifacts = naming.artifacts_bucket(factory.config.bucket_prefix, instance.name,
                                        instance.default_region)
    lambda_store(factory).put({
        "name": config.name, "instance": instance.name, "description": config.description,
        "function_name": naming.lambda_function_name(instance.name, config.name),
        "handler": config.handler, "runtime": config.runtime, "timeout": config.timeout,
        "memory": config.memory, "datasets": config.datasets,
        "environment": config.environment, "trigger": config.trigger.kind,
        "watches": list(config.trigger.datasets), "schedule": config.trigger.schedule or "",
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "code_hash": code_hash(config.folder),
        "package": f"s3://{artifacts}/{package_key(config, package)}",
        "role_arn": naming.role_arn(instance.account_id,
                                    naming.lambda_role(instance.name, config.name)),
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    uses = ", ".join(f"{d} ({level})" for d, level in sorted(config.datasets.items())) or "-"
    ui.success(f"Lambda project {config.name} registered (trigger "
               f"{config.trigger.describe()}; datasets {uses})")
    return 0


# -- invoke ---------------------------------------------------------------------------------------

def _read_event(source: str) -> Any:
    if not source:
        return {}
    where = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--event {source}: {exc.strerror}",
                         hint="give a JSON file, or - to read the event from stdin") from None
    try:
        return json.loads(text or "{}")
    except ValueError as exc:
        raise UsageError(f"the event in {where} is not JSON: {exc}",
                         hint='e.g. {"detail": {"dataset": "clinical_trials"}}') from None


def invoke_lambda(options: InvokeLambdaOptions, ui: UI) -> int:
    event = _read_event(options.event)
    factory = Factory(options.instance, options.profile, ui)
    registration = lambda_store(factory).get(options.project)
    if not factory.instance.is_local:
        return _invoke_in_aws(ui, factory, registration, event, options)
    item = invocation_item(options.project, event, requested_by="admin")
    queue_run(jobs_table(factory), item)
    if options.no_wait:
        ui.info(f"invocation {item['job_id']} of {options.project} queued")
        if options.json:
            print(json.dumps({"job_id": item["job_id"], "status": "queued"}))
        return 0
    done = _follow(factory, item["job_id"], options.timeout)
    return _show(ui, done, options.json)


def _follow(factory: Factory, job_id: str, timeout: float) -> dict:
    table = jobs_table(factory)
    deadline = time.monotonic() + timeout
    while True:
        item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item") or {}
        if item.get("status") in ("succeeded", "failed"):
            return item
        if time.monotonic() > deadline:
            raise EdlError(f"invocation {job_id} is still {item.get('status', 'queued')} "
                           f"after {timeout:.0f} s",
                           hint="it goes on; is the local cloud running? edl local status")
        time.sleep(WAIT_POLL_SECONDS)


def _show(ui: UI, item: dict, as_json: bool) -> int:
    result = json.loads(item["result"]) if item.get("result") else None
    view = {"job_id": item["job_id"], "lambda": item.get("lambda"), "status": item["status"],
            "result": result, "error": item.get("error"), "error_type": item.get("error_type"),
            "request_id": item.get("request_id"),
            "duration_seconds": plain(item.get("duration_seconds")), "log": item.get("log")}
    if as_json:
        print(json.dumps({k: v for k, v in view.items() if v is not None}, indent=1,
                         default=str))
    elif item["status"] == "succeeded":
        print(json.dumps(result, indent=1, default=str))
    if item["status"] != "succeeded":
        if not as_json and item.get("log"):
            ui.info(escape(item["log"].rstrip()))
        raise EdlError(f"invocation {item['job_id']} of {item.get('lambda')} failed: "
                       f"{item.get('error', 'no reason recorded')}",
                       hint="its log is above (--json shows it whole)")
    return 0


def _invoke_in_aws(ui: UI, factory: Factory, registration: dict, event: Any,
                   options: InvokeLambdaOptions) -> int:
    client = factory.sessions.client("lambda")
    answer = client.invoke(FunctionName=registration["function_name"],
                           InvocationType="Event" if options.no_wait else "RequestResponse",
                           LogType="None" if options.no_wait else "Tail",
                           Payload=json.dumps(event).encode())
    if options.no_wait:
        ui.info(f"invocation of {registration['function_name']} accepted")
        return 0
    log_text = base64.b64decode(answer.get("LogResult", "")).decode("utf-8", "replace")
    payload = json.loads(answer["Payload"].read() or b"null")
    failed = "FunctionError" in answer
    item = {"job_id": answer["ResponseMetadata"].get("RequestId", ""),
            "lambda": registration["name"], "status": "failed" if failed else "succeeded",
            "log": log_text, "request_id": answer["ResponseMetadata"].get("RequestId")}
    if failed:
        item.update(error=f"{payload.get('errorType')}: {payload.get('errorMessage')}",
                    error_type=payload.get("errorType"))
    else:
        item["result"] = json.dumps(payload)
    return _show(ui, item, options.json)


# -- inspect ----------------------------------------------------------------------------------------

def lambdas(options: LambdasOptions, ui: UI) -> int:
    from boto3.dynamodb.conditions import Attr

    factory = Factory(options.instance, options.profile, ui)
    registered = lambda_store(factory).all()
    runs: dict[str, list[dict]] = {}
    if factory.instance.is_local:
        for item in read_all(jobs_table(factory).scan,
                             FilterExpression=Attr("type").eq(LAMBDA_JOB)):
            runs.setdefault(item.get("lambda", ""), []).append(item)
    for items in runs.values():
        items.sort(key=lambda i: i.get("created_at", ""), reverse=True)
    if options.json:
        print(json.dumps({"items": [
            {"name": p["name"], "function_name": p["function_name"], "handler": p["handler"],
             "trigger": p["trigger"], "watches": p.get("watches", []),
             "schedule": p.get("schedule") or None, "datasets": p.get("datasets", {}),
             "code_hash": p["code_hash"], "deployed_at": p["deployed_at"],
             "last_invocations": [plain({k: r.get(k) for k in (
                 "job_id", "status", "created_at", "trigger", "error")})
                 for r in runs.get(p["name"], [])[:5]]}
            for p in registered]}, indent=1, default=str))
        return 0
    if not registered:
        ui.info(f"no Lambda project is deployed in {factory.instance.name}; deploy one with: "
                f"edl deploy-lambda projects/example_lambda --instance {factory.instance.name}")
        return 0
    rows = []
    for p in registered:
        trigger = {"on_update": f"on_update {', '.join(p.get('watches', []))}",
                   "schedule": f"schedule {p.get('schedule')}"}.get(p["trigger"], p["trigger"])
        last = runs.get(p["name"], [])[:3]
        rows.append((p["name"], p["handler"], trigger,
                     ", ".join(f"{d} ({lv})" for d, lv in sorted(p.get("datasets", {}).items()))
                     or "-",
                     "\n".join(f"{r.get('created_at', '')[:19]} {r.get('status')}" for r in last)
                     or ("never invoked" if factory.instance.is_local else "see CloudWatch")))
    ui.table(f"Lambda projects of {factory.instance.name}",
             ("Project", "Handler", "Trigger", "Datasets", "Last invocations"), rows)
    return 0
