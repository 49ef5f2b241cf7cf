"""The local cloud's Lambda runner: Lambda's part for Lambda projects, and EventBridge's for
schedules.

moto stores Lambda functions but does not run them here (no Docker, DESIGN §8). This service of
the runtime does, as Lambda would:

- It takes the jobs table's queued items of `type: lambda` (written by `edl invoke-lambda`, by
  the job runner when a watched dataset gets a complete update, and by the schedule below) with
  a conditional claim, and runs each in its own process (`lambda_host.py`) with the event in
  the item, the project's code from its deployed package, its environment, and the credentials
  of its role (`edl-<instance>-fn-<name>`, assumed as the platform admin: the handler has
  exactly the rights it has in AWS). The process is ended at the project's timeout.
- The outcome goes back into the item: `result` (the handler's answer, JSON), or `error`,
  `error_type` and `stack_trace`; `log` (the last 4 KB of what it printed and logged, with
  Lambda's START/END/REPORT lines) and `duration_seconds`.
- Up to `max_concurrent` invocations run at once, beside the job runner's Spark jobs: a Lambda
  never waits for an ingest.
- Every `schedule_seconds` it queues what the schedules of Lambda projects (EventBridge rules
  in AWS) and of pipelines (Glue triggers) make due, from the runtime's start on: one job id
  per project and minute, so a restart never runs one twice. Times missed while the runtime was
  down are not made up, as EventBridge does not make them up either.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl.errors import EdlError
from edl.local.jobs_table import FAILED, SUCCEEDED, JobsTable
from edl.utils.lambdas import (
    LAMBDA_JOB,
    LambdaStore,
    queue_scheduled_invocation,
    queue_triggered_invocations,
)
from edl.utils.pipelines import queue_run, run_job_item
from edl.utils.schedules import next_fire

log = logging.getLogger("edl.local.lambdas")

LOG_TAIL_BYTES = 4096
# The environment an invocation does not inherit from the runtime: the runtime's own AWS
# identity and settings, and EDL's.
_NOT_INHERITED = ("AWS_", "EDL_INSTANCE", "PYSPARK_", "SPARK_", "PYTHONPATH")


class LambdaRunner:
    """The local runtime's Lambda runner ("lambdas")."""

    name = "lambdas"

    def __init__(self, *, jobs: Callable[[], JobsTable], lambdas: Callable[[], LambdaStore],
                 credentials: Callable[[str, str, int], dict[str, str]],
                 package: Callable[[str], Path], account_id: str, region: str,
                 endpoint_url: Callable[[], str], pipelines: Callable[[], Any] | None = None,
                 poll_seconds: float = 1.0, schedule_seconds: float = 10.0,
                 max_concurrent: int = 4,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._jobs_factory = jobs
        self._lambdas_factory = lambdas
        self._pipelines_factory = pipelines
        self._credentials = credentials
        self._package = package
        self.account_id = account_id
        self.region = region
        self._endpoint_url = endpoint_url
        self.poll_seconds = poll_seconds
        self.schedule_seconds = schedule_seconds
        self.now = now
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._jobs: JobsTable | None = None
        self._lambdas: LambdaStore | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._started_at = now()
        self._scheduled_until: dict[str, datetime] = {}
        self._scheduled_at: float | None = None
        self._finished = 0
        self.status_url: Callable[[], str] | None = None

    @classmethod
    def for_instance(cls, instance, *, schedule_seconds: float = 10.0) -> LambdaRunner:
        """The runner of the local runtime: bookkeeping as the platform admin's CloudFormation
        role, invocations as each project's role."""
        from edl import naming, paths
        from edl.aws import local_endpoint
        from edl.local.roles import RoleResolver
        from edl.utils.pipelines import PipelineStore, fetch_package

        roles = RoleResolver(instance, naming.ingest_job_role(instance.name), purpose="lambdas")

        def table(name: str):
            return roles.admin_sessions().deploy_resource("dynamodb").Table(
                naming.table_name(instance.name, name))

        def credentials(role_arn: str, session_name: str, seconds: int) -> dict[str, str]:
            sts = roles.admin_sessions().client("sts")
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name,
                                    DurationSeconds=seconds)["Credentials"]
            return {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                    "AWS_SESSION_TOKEN": creds["SessionToken"]}

        def package(url: str) -> Path:
            return fetch_package(roles.admin_sessions().deploy_client("s3"), url,
                                 paths.local_dir() / "lambdas", folder="project")

        return cls(jobs=lambda: JobsTable(table("jobs")),
                   lambdas=lambda: LambdaStore(table("lambdas"), instance.name),
                   pipelines=lambda: PipelineStore(table("pipelines"), instance.name),
                   credentials=credentials, package=package, account_id=instance.account_id,
                   region=instance.default_region,
                   endpoint_url=lambda: local_endpoint(instance),
                   schedule_seconds=schedule_seconds)

    # -- the service ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the runner's status is served (by the API server), if anywhere."""
        return self.status_url() if self.status_url is not None else ""

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="lambdas", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        with self._lock:
            for process in self._running.values():
                process.kill()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def wake(self) -> None:
        self._wake.set()

    def status(self) -> dict:
        with self._lock:
            running = sorted(self._running)
        return {"running": running, "finished": self._finished}

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        waiting = None
        while not self._stopping.is_set():
            try:
                self.run_once()
                waiting = None
            except (EdlError, ClientError, BotoCoreError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if reason != waiting:   # before bootstrap or deploy-core: no tables yet
                    log.info("lambdas - waiting: %s", reason)
                waiting = reason
                self._jobs = self._lambdas = None
            except Exception:
                log.exception("lambdas - the runner failed; trying again")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def run_once(self, *, wait: bool = False) -> list[str]:
        """Queue what schedules make due, then start every queued invocation a slot is free
        for; → the job ids started (with `wait`, run to their end before returning)."""
        if self._jobs is None:
            self._jobs = self._jobs_factory()
            self._lambdas = self._lambdas_factory()
        if self._scheduled_at is None or \
                time.monotonic() - self._scheduled_at >= self.schedule_seconds:
            self._scheduled_at = time.monotonic()
            self.queue_due()
        started, threads = [], []
        for item in self._jobs.queued():
            if item.get("type") != LAMBDA_JOB or not self._slots.acquire(blocking=False):
                continue
            claimed = self._jobs.claim(item["job_id"], self.runner_id)
            if claimed is None:
                self._slots.release()
                continue
            thread = threading.Thread(target=self._invoke_in_slot, args=(claimed,),
                                      name=f"lambda-{item['job_id']}", daemon=True)
            thread.start()
            started.append(item["job_id"])
            threads.append(thread)
        if wait:
            for thread in threads:
                thread.join()
        return started

    def queue_due(self) -> list[str]:
        """Queue the invocations and pipeline runs whose schedule time has come since the last
        look (or since the runtime started); → their job ids."""
        now = self.now()
        queued = []
        jobs = self._jobs or self._jobs_factory()
        lambdas = self._lambdas or self._lambdas_factory()
        for registration in lambdas.scheduled():
            for at in self._due(f"lambda:{registration['name']}", registration, now):
                job_id = queue_scheduled_invocation(jobs.table, registration, at=at,
                                                    account=self.account_id,
                                                    region=self.region)
                if job_id:
                    queued.append(job_id)
        if self._pipelines_factory is not None:
            for registration in self._pipelines_factory().all():
                if registration.get("trigger") != "schedule" or not registration.get("schedule"):
                    continue
                for at in self._due(f"pipeline:{registration['pipeline']}", registration, now):
                    item = run_job_item(
                        registration["pipeline"], trigger=f"schedule {registration['schedule']}",
                        job_id=f"pipeline-{registration['pipeline']}-at-{at:%Y%m%dT%H%M}",
                        requested_by="schedule")
                    if queue_run(jobs.table, item):
                        queued.append(item["job_id"])
        for job_id in queued:
            log.info("%s - queued by its schedule", job_id)
        return queued

    def _due(self, key: str, registration: dict, now: datetime) -> list[datetime]:
        anchor = _parse_time(registration.get("deployed_at")) or self._started_at
        after = self._scheduled_until.get(key, max(self._started_at, anchor))
        due: list[datetime] = []
        at = next_fire(registration["schedule"], after, anchor)
        while at is not None and at <= now and len(due) < 60:
            due.append(at)
            at = next_fire(registration["schedule"], at, anchor)
        self._scheduled_until[key] = now
        return due

    def on_updates(self, made: list[tuple[str, str, int | None]]) -> list[str]:
        """Queue the invocations that complete updates `(dataset, update_id, rows)` trigger
        (the job runner calls this after a job committed them); → their job ids."""
        jobs = self._jobs or self._jobs_factory()
        lambdas = self._lambdas or self._lambdas_factory()
        queued = []
        for dataset, update_id, rows in made:
            queued += queue_triggered_invocations(lambdas, jobs.table, account=self.account_id,
                                                  region=self.region, dataset=dataset,
                                                  update_id=update_id, rows=rows)
        if queued:
            self.wake()
        return queued

    # -- one invocation -------------------------------------------------------------------------

    def _invoke_in_slot(self, item: dict) -> None:
        try:
            self.invoke(item)
        except Exception:
            log.exception("%s - could not finish the invocation", item["job_id"])
        finally:
            self._slots.release()

    def invoke(self, item: dict) -> dict:
        """Run one claimed invocation and write its outcome; → the outcome's fields."""
        job_id = item["job_id"]
        jobs = self._jobs or self._jobs_factory()
        started = time.monotonic()
        try:
            fields = self._run_handler(item)
        except Exception as exc:  # noqa: BLE001 - the invocation fails, saying why
            reason = str(exc) if isinstance(exc, EdlError) else \
                f"internal error: {type(exc).__name__}: {exc}"
            fields = {"error": reason[:4000], "error_type": "Runtime.EdlError"}
        status = FAILED if "error" in fields else SUCCEEDED
        fields["duration_seconds"] = Decimal(f"{time.monotonic() - started:.3f}")
        fields["progress"] = status
        jobs.finish(job_id, status, fields)
        self._finished += 1
        log.info("%s - %s in %.1f s%s", job_id, status, time.monotonic() - started,
                 f": {fields['error']}" if status == FAILED else "")
        return fields

    def _run_handler(self, item: dict) -> dict:
        lambdas = self._lambdas or self._lambdas_factory()
        registration = lambdas.get(item["lambda"])
        code = self._package(registration["package"])
        timeout = int(registration["timeout"])
        request_id = str(uuid.uuid4())
        env = self._environment(registration, request_id, timeout)
        with tempfile.TemporaryDirectory(prefix="edl-lambda-") as work:
            result_file = Path(work) / "result.json"
            process = subprocess.Popen(
                [sys.executable, "-m", "edl.local.lambda_host", "--code", str(code),
                 "--handler", registration["handler"], "--result", str(result_file),
                 "--timeout", str(timeout)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=env, cwd=work)
            with self._lock:
                self._running[item["job_id"]] = process
            try:
                output, _ = process.communicate(item.get("event", "{}").encode(),
                                                timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
                timed_out = True
            finally:
                with self._lock:
                    self._running.pop(item["job_id"], None)
            fields: dict[str, Any] = {"request_id": request_id, "log": _tail(output)}
            if timed_out:
                fields.update(error=f"Task timed out after {timeout} seconds",
                              error_type="Sandbox.Timedout")
                return fields
            try:
                answer = json.loads(result_file.read_text())
            except (OSError, ValueError):
                fields.update(error=f"the handler's process ended (exit code "
                              f"{process.returncode}) without an answer",
                              error_type="Runtime.ExitError")
                return fields
        if "errorMessage" in answer:
            fields.update(error=f"{answer.get('errorType')}: {answer['errorMessage']}"[:4000],
                          error_type=answer.get("errorType", ""),
                          stack_trace=json.dumps(answer.get("stackTrace", []))[:8000])
        else:
            fields["result"] = json.dumps(answer.get("result"))
        return fields

    def _environment(self, registration: dict, request_id: str, timeout: int) -> dict[str, str]:
        name, function = registration["name"], registration["function_name"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env.update(self._credentials(registration["role_arn"],
                                     f"lambda-{name}-{secrets.token_hex(3)}"[:64],
                                     max(900, min(3600, timeout + 60))))
        env.update({
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self._endpoint_url(), "EDL_INSTANCE": registration["instance"],
            "AWS_LAMBDA_FUNCTION_NAME": function, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(registration["memory"]),
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{request_id}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{registration['runtime']}",
            "EDL_FUNCTION_ARN": f"arn:aws:lambda:{self.region}:{self.account_id}:function:"
                                f"{function}",
            "_HANDLER": registration["handler"], "_X_AMZN_REQUEST_ID": request_id, "TZ": "UTC",
            "PYTHONUNBUFFERED": "1",
        })
        env.update({str(k): str(v) for k, v in (registration.get("environment") or {}).items()})
        return env


def _tail(output: bytes) -> str:
    text = output[-LOG_TAIL_BYTES:].decode("utf-8", errors="replace")
    return text if len(output) <= LOG_TAIL_BYTES else "…" + text


def _parse_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
