"""The local cloud's job runner: Glue's part, played with one warm Spark session.

In AWS the ingest endpoint starts a Glue job run. On the local cloud the endpoint writes the job to
the instance's jobs table (`edl-<instance>-jobs`) with status `queued`, and this service - a thread
of the runtime process - runs it:

    queued → running → succeeded | failed

It polls the table (`jobs_table.JobsTable`: a scan with a filter, the local table is small;
`wake()` makes it look at once, which the API server calls after a write), takes one job with a
conditional update (so two runners never take the same job), runs it with the same `IngestJob` Glue
runs, and writes the outcome back to the item: `update_id`, `error` when it failed, `progress` (the
job's own log lines), `started_at`, `finished_at` and `duration_seconds`. Jobs run one at a time,
so they never fight over the one Spark session, which is created once - in a background thread at
start, so `edl local start` does not wait for it - and reused by every job: a small ingest costs
seconds, not Spark's start-up.

The job item (written by the ingest handler; `job_id` is the key):

    {"job_id": "ingest-…", "status": "queued", "type": "ingest", "created_at": "…",
     "arguments": {"--dataset": "…", "--source": "…", "--kind": "snapshot", "--update": "…", …}}

`arguments` are the Glue job run's arguments, read by the ingest job's own command line
(`python -m edl.core_resources.pipelines.ingest`), so the local run and the Glue run cannot
drift apart. Items without `arguments` may give `dataset`, `source`, `kind`, `update_id`,
`requested_by` and `options` (`delimiter`, `quote`, `encoding`, `header`) instead.

Sweeps: at start and every `sweep_seconds` (30 s; the runtime takes `EDL_LOCAL_SWEEP_SECONDS`,
so that tests need not wait half a minute) the runner fails the jobs still `running` whose runner
is gone, with the reason, abandons their pending updates (failed, files removed), and then
runs the lake's own sweep (`edl.utils.sweep`: overdue pending updates, leftovers of failed ones,
Glue registrations to retry) - the work the sweeper Lambda does in AWS. Each claim records the
claiming runner as `runner_id`, `<host>:<pid>:<token>`; the local cloud is one machine, so a runner
is gone when its process no longer exists (a runtime that was stopped, restarted or killed), or
when it ran on another host or before runners recorded themselves.

Who acts: the job runs as the ingest job role (`edl-<instance>-ingest-job`, assumed as the
platform admin, as Glue runs the job as that role), or the CloudFormation role until deploy-core
has created it. The runner's own bookkeeping - reading and writing job items, which Glue's
service does in AWS - is done as the CloudFormation role, and so is the sweep (it scans the
updates table, which the ingest job role may not).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl.errors import EdlError
from edl.local.jobs_table import FAILED, SUCCEEDED, JobsTable
from edl.utils.lambdas import LAMBDA_JOB
from edl.utils.pipelines import COMPACT_PIPELINE, PIPELINE_JOB, queue_triggered_runs

log = logging.getLogger("edl.local.jobs")

# The jobs' own loggers (the ingest job's and the pipeline wrapper's) feed the job's progress.
JOB_LOGGER = "edl.core_resources.pipelines"
_FIELD_ARGUMENTS = (("dataset", "--dataset"), ("source", "--source"), ("kind", "--kind"),
                    ("update_id", "--update"), ("requested_by", "--requested-by"))


def build_warm_spark():
    """The runtime's one Spark session: local, two cores, no UI, on the loopback only."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("edl-local-jobs")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")  # no progress bars in the log
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.sql.shuffle.partitions", "2")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    _warm_workers(spark)
    return spark


def _import_task_modules(_index: int) -> int:
    import edl.core_resources.pipelines.ingest.tasks  # noqa: F401 - pyarrow, boto3 and friends

    return os.getpid()


def _warm_workers(spark) -> None:
    """Start the Python workers and import what ingest tasks import, so that the first job does
    not pay for it (workers are reused between jobs)."""
    sc = spark.sparkContext
    sc.setJobDescription("edl local runtime: warm-up")
    try:
        sc.parallelize(range(2), 2).map(_import_task_modules).collect()
    finally:
        sc.setJobDescription(None)


def ingest_arguments(item: dict) -> list[str]:
    """The ingest job's command line for a job item (its Glue arguments, or its fields)."""
    arguments = item.get("arguments")
    if isinstance(arguments, dict) and arguments:
        argv = []
        for name, value in arguments.items():
            name = name if name.startswith("--") else f"--{name}"
            if isinstance(value, bool):
                argv += [name] if value else []
            elif isinstance(value, list):
                for each in value:
                    argv += [name, str(each)]
            else:
                argv += [name, str(value)]
    else:
        argv = [arg for field, flag in _FIELD_ARGUMENTS if item.get(field)
                for arg in (flag, str(item[field]))]
        options = item.get("options") or {}
        for key in ("format", "delimiter", "quote", "encoding"):
            if options.get(key):
                argv += [f"--{key}", str(options[key])]
        if options.get("header") is False:
            argv.append("--no-header")
    if "--job-id" not in argv:
        argv += ["--job-id", item["job_id"]]
    return argv


class _ProgressLog(logging.Handler):
    """Copies the ingest job's log lines of one thread into the job item's `progress`."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.write = write
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            self.write(record.getMessage())
        except Exception:  # progress is a courtesy; the job goes on without it
            log.debug("jobs - could not write progress", exc_info=True)


class JobRunner:
    """The local runtime's job runner ("jobs"): one job at a time, one warm Spark session."""

    name = "jobs"

    def __init__(self, *, jobs: Callable[[], JobsTable], lake: Callable[[], Any],
                 spark: Callable[[], Any] = build_warm_spark, job_factory: Callable | None = None,
                 poll_seconds: float = 1.0, warm_up: bool = True, owns_spark: bool = True,
                 status_url: Callable[[], str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sweeper: Callable[[], Any] | None = None, sweep_seconds: float = 30.0,
                 pipelines: Callable[[], Any] | None = None,
                 pipeline_lake: Callable[[str | None], Any] | None = None,
                 package: Callable[[str], Any] | None = None,
                 instance_name: str = "local") -> None:
        self._jobs_factory = jobs
        self._pipelines_factory = pipelines
        self._pipelines: Any = None
        self._pipeline_lake_factory = pipeline_lake
        self._package_factory = package
        self._instance_name = instance_name
        self._sweeper_factory = sweeper
        self.sweep_seconds = sweep_seconds
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._swept_at: float | None = None
        self._lake_factory = lake
        self._spark_factory = spark
        self._job_factory = job_factory
        self.poll_seconds = poll_seconds
        self.warm_up = warm_up
        self.owns_spark = owns_spark
        self.status_url = status_url
        self.clock = clock
        self._jobs: JobsTable | None = None
        self._spark = None
        self._spark_lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._warm_thread: threading.Thread | None = None
        self._current: str | None = None
        self._finished = 0
        self._waiting_reason: str | None = None
        # Called with the (dataset, update_id, rows) a job made complete: the Lambda runner's
        # on_update invocations.
        self.after_updates: Callable[[list[tuple[str, str, Any]]], list[str]] | None = None

    @classmethod
    def for_instance(cls, instance, *, warm_up: bool = True,
                     sweep_seconds: float = 30.0) -> JobRunner:
        """The runner of the local runtime: bookkeeping as the CloudFormation role, jobs as the
        ingest job role."""
        from edl import naming
        from edl.local.roles import RoleResolver
        from edl.utils.context import LakeContext

        roles = RoleResolver(instance, naming.ingest_job_role(instance.name), purpose="jobs")
        lakes: dict[str, Any] = {}

        def jobs() -> JobsTable:
            dynamodb = roles.admin_sessions().deploy_resource("dynamodb")
            return JobsTable(dynamodb.Table(naming.table_name(instance.name, "jobs")))

        def lake():
            choice, _ = roles.choose()
            if choice.role_arn not in lakes:
                lakes[choice.role_arn] = LakeContext.for_instance(instance.name,
                                                                  role_arn=choice.role_arn)
            return lakes[choice.role_arn]

        def sweeper():
            from edl.utils.sweep import Sweeper

            # As the CloudFormation role, like the runner's bookkeeping: the sweep scans the
            # updates table, which the ingest job role may not.
            return Sweeper(LakeContext.for_instance(instance.name,
                                                    role_arn=instance.cfn_role_arn))

        pipeline_lakes: dict[str | None, Any] = {}

        def pipeline_lake(role_arn: str | None):
            """A pipeline runs as its own role (assumed as the platform admin, as Glue would
            run it as that role)."""
            if role_arn not in pipeline_lakes:
                pipeline_lakes[role_arn] = LakeContext.for_instance(instance.name,
                                                                    role_arn=role_arn)
            return pipeline_lakes[role_arn]

        def pipelines():
            from edl.utils.pipelines import PipelineStore

            dynamodb = roles.admin_sessions().deploy_resource("dynamodb")
            return PipelineStore(dynamodb.Table(naming.table_name(instance.name, "pipelines")),
                                 instance.name)

        def package(url: str):
            from edl import paths
            from edl.utils.pipelines import fetch_package

            return fetch_package(roles.admin_sessions().deploy_client("s3"), url,
                                 paths.local_dir() / "pipelines")

        return cls(jobs=jobs, lake=lake, warm_up=warm_up, sweeper=sweeper,
                   sweep_seconds=sweep_seconds, pipelines=pipelines,
                   pipeline_lake=pipeline_lake, package=package, instance_name=instance.name)

    # -- the service ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the runner's status is served (by the API server), if anywhere."""
        return self.status_url() if self.status_url is not None else ""

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
        self._thread.start()

    def _start_warm_up(self) -> None:
        """Start Spark in the background, once the lake is bootstrapped: not earlier, so that
        importing pyspark does not slow down `edl local start`."""
        if self.warm_up and self._warm_thread is None:
            self._warm_thread = threading.Thread(target=self._warm, name="jobs-spark",
                                                 daemon=True)
            self._warm_thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        if self._warm_thread is not None:
            # A Spark still starting is not waited for: its JVM ends with this process.
            self._warm_thread.join(timeout=1)
        if self._spark_lock.acquire(timeout=1):
            try:
                if self._spark is not None and self.owns_spark:
                    self._spark.stop()
                self._spark = None
            finally:
                self._spark_lock.release()

    def wake(self) -> None:
        """Look for queued jobs now (the API server calls this after a write)."""
        self._wake.set()

    def status(self) -> dict:
        return {"spark": "warm" if self._spark is not None else "cold",
                "running": self._current, "finished": self._finished,
                "waiting_for": self._waiting_reason}

    # -- the work -------------------------------------------------------------------------------

    def spark(self):
        with self._spark_lock:
            if self._spark is None:
                started = time.monotonic()
                self._spark = self._spark_factory()
                log.info("jobs - Spark session ready in %.1f s", time.monotonic() - started)
            return self._spark

    def _warm(self) -> None:
        try:
            self.spark()
        except Exception:  # the first job will try again and report why
            log.exception("jobs - could not start Spark")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = self.run_once()
                self._waiting_reason = None
            except (EdlError, ClientError, BotoCoreError) as exc:
                # Before bootstrap there are no keys, before deploy-core no jobs table.
                reason = str(exc).splitlines()[0]
                if reason != self._waiting_reason:
                    log.info("jobs - waiting: %s", reason)
                self._waiting_reason = reason
                self._jobs = None
                ran = False
            except Exception:
                log.exception("jobs - the runner failed; trying again")
                ran = False
            if not ran:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def run_once(self) -> bool:
        """Sweep if one is due, then run the oldest queued job, if there is one; True if one
        ran."""
        if self._jobs is None:
            self._jobs = self._jobs_factory()
            self._start_warm_up()
        if self._swept_at is None or self.clock() - self._swept_at >= self.sweep_seconds:
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - a failed sweep must not stop the jobs
                log.warning("jobs - sweep failed (next in %.0f s): %s", self.sweep_seconds,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        for item in self._jobs.queued():
            if item.get("type") == LAMBDA_JOB:   # the Lambda runner's
                continue
            claimed = self._jobs.claim(item["job_id"], self.runner_id)
            if claimed is not None:
                self._run(claimed)
                return True
        return False

    def sweep(self) -> list[str]:
        """Fail the jobs other runners left running, abandon their updates, and sweep the
        lake; → the ids of the jobs failed."""
        self._swept_at = self.clock()
        jobs = self._jobs or self._jobs_factory()
        sweeper = self._sweeper_factory() if self._sweeper_factory is not None else None
        reason = ("its runner stopped while it ran (the local runtime was stopped, restarted "
                  "or killed); start it again (ingest, run-pipeline or invoke-lambda)")
        failed = []
        for item in jobs.running():
            if not self._runner_gone(item.get("runner_id", "")) or \
                    not jobs.fail_abandoned(item, reason):
                continue
            failed.append(item["job_id"])
            log.warning("%s - failed: %s", item["job_id"], reason)
            if sweeper is not None:
                sweeper.abandon_job(item["job_id"], f"job {item['job_id']}: {reason}")
        if sweeper is not None:
            sweeper.sweep()
        return failed

    def _runner_gone(self, runner_id: str) -> bool:
        if runner_id == self.runner_id:
            return False
        host, _, rest = runner_id.partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return True
        try:
            os.kill(int(pid), 0)   # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _run(self, item: dict) -> None:
        job_id = item["job_id"]
        jobs = self._jobs
        if jobs is None:  # run_once opens the table before it runs anything
            raise EdlError("the job runner has no jobs table yet")
        self._current = job_id
        started = time.monotonic()
        progress = _ProgressLog(lambda text: jobs.progress(job_id, text))
        ingest_logger = logging.getLogger(JOB_LOGGER)
        previous_level = ingest_logger.level
        if ingest_logger.getEffectiveLevel() > logging.INFO:
            ingest_logger.setLevel(logging.INFO)
        ingest_logger.addHandler(progress)
        log.info("%s - running", job_id)
        try:
            fields = self._pipeline(item) if item.get("type") == PIPELINE_JOB \
                else self._ingest(item)
            status = SUCCEEDED
        except Exception as exc:
            status = FAILED
            fields = {"error": self._reason(exc)}
            events = getattr(exc, "events", None)
            if events:
                fields["openlineage"] = json.dumps(list(events))
            update_id = getattr(exc, "update_id", None) or item.get("update_id") or \
                (item.get("arguments") or {}).get("--update")
            if update_id:
                fields["update_id"] = str(update_id)
            log.warning("%s - failed: %s", job_id, fields["error"],
                        exc_info=not isinstance(exc, EdlError))
        finally:
            ingest_logger.removeHandler(progress)
            ingest_logger.setLevel(previous_level)
            self._current = None
        duration = time.monotonic() - started
        fields["duration_seconds"] = Decimal(f"{duration:.3f}")
        fields["progress"] = status
        jobs.finish(job_id, status, fields)
        self._finished += 1
        log.info("%s - %s in %.1f s", job_id, status, duration)
        if status == SUCCEEDED:
            self._trigger(item, fields)

    def _trigger(self, item: dict, fields: dict) -> None:
        """Queue the on_update runs and Lambda invocations the job's new updates start (never
        twice for one update)."""
        produced_by = item.get("pipeline") if item.get("type") == PIPELINE_JOB else None
        if produced_by == COMPACT_PIPELINE:   # the same rows again: nothing new to react to
            return
        if produced_by is not None:
            made = [(o["dataset"], o["update_id"], o.get("rows"))
                    for o in fields.get("outputs", {}).values()]
        else:
            made = [(fields["dataset"], fields["update_id"], fields.get("rows"))] \
                if fields.get("update_id") else []
        if not made:
            return
        if self.after_updates is not None:
            try:
                for job_id in self.after_updates(made):
                    log.info("%s - queued: an update it watches is complete", job_id)
            except Exception as exc:  # noqa: BLE001 - the job's outcome stands
                log.warning("jobs - could not queue the invocations %s triggers: %s",
                            item["job_id"], str(exc).splitlines()[0] if str(exc) else
                            type(exc).__name__)
        if self._pipelines_factory is None:
            return
        try:
            store = self._pipeline_store()
            for dataset, update_id, _rows in made:
                for job_id in queue_triggered_runs(store, self._jobs_table(), dataset, update_id,
                                                   produced_by=produced_by):
                    log.info("%s - queued: %s update %s is complete", job_id, dataset,
                             update_id)
        except Exception as exc:  # noqa: BLE001 - the job's outcome stands; triggers are logged
            log.warning("jobs - could not queue the runs %s triggers: %s", item["job_id"],
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _pipeline_store(self):
        """The pipelines table (made once: its session refreshes itself)."""
        if self._pipelines is None and self._pipelines_factory is not None:
            self._pipelines = self._pipelines_factory()
        return self._pipelines

    def _package(self, url: str):
        if self._package_factory is None:
            raise EdlError("this job runner cannot fetch pipeline packages")
        return self._package_factory(url)

    def _pipeline_lake(self, role_arn: str | None):
        if self._pipeline_lake_factory is None:
            return self._lake_factory()
        return self._pipeline_lake_factory(role_arn)

    def _jobs_table(self):
        jobs = self._jobs or self._jobs_factory()
        return jobs.table

    def _pipeline(self, item: dict) -> dict:
        """Run a pipeline job (a deployed pipeline, or the built-in compaction) with the
        wrapper, as the pipeline's role; → the job item's outcome fields."""
        from edl.core_resources.pipelines.wrapper.__main__ import (
            parse_args,
            pipeline_config,
            pipeline_role_arn,
        )
        from edl.core_resources.pipelines.wrapper.run import PipelineRun, RunRequest
        from edl.pipeline_config import parse_as_of

        arguments = dict(item.get("arguments") or {})
        name = item.get("pipeline") or arguments.get("--pipeline", "")
        arguments.pop("--pipeline", None)   # the wrapper takes the pipeline's folder instead
        argv = ingest_arguments({**item, "arguments": arguments})   # the same flags rule
        if "--compact" not in argv:
            if self._pipelines_factory is None:
                raise EdlError("this job runner has no pipelines table to find "
                               f"pipeline {name!r} in")
            registration = self._pipeline_store().get(name)
            folder = self._package(registration["package"])
            argv += ["--pipeline-dir", str(folder)]
        try:
            args = parse_args(["--instance", self._instance_name, *argv])
        except SystemExit:
            raise EdlError(f"job {item['job_id']} has invalid arguments: {argv}") from None
        config = pipeline_config(args)
        request = RunRequest(config, parse_as_of(args.as_of), job_id=item["job_id"],
                             requested_by=args.requested_by)
        ctx = self._pipeline_lake(pipeline_role_arn(args, config.name))
        result = PipelineRun(self.spark(), ctx).run(request)
        return {"run_id": result.run_id, "pipeline": name or config.name,
                "inputs": [i.to_record() for i in result.inputs],
                "outputs": {alias: {"dataset": u.dataset, "update_id": u.update_id,
                                    "rows": u.rows} for alias, u in result.outputs.items()},
                "openlineage": json.dumps(list(result.events))}

    def _ingest(self, item: dict) -> dict:
        from edl.core_resources.pipelines.ingest.__main__ import build_request, parse_args

        job_type = item.get("type", "ingest")
        if job_type != "ingest":
            raise EdlError(f"the local runner runs ingest jobs, not {job_type!r} jobs")
        try:
            args = parse_args(ingest_arguments(item))
        except SystemExit:
            raise EdlError(f"job {item['job_id']} has invalid arguments: "
                           f"{ingest_arguments(item)}") from None
        request = build_request(args)
        factory = self._job_factory
        if factory is None:
            from edl.core_resources.pipelines.ingest.job import IngestJob
            factory = IngestJob
        record = factory(self.spark(), self._lake_factory()).run(request)
        outcome = {"update_id": record.update_id, "dataset": record.dataset,
                   "rows": record.rows, "files": record.file_count, "bytes": record.bytes}
        if not record.catalog_registered:
            outcome["warning"] = ("the update is complete but not in the Glue catalog yet; "
                                  "the sweep registers it")
        return outcome

    @staticmethod
    def _reason(exc: BaseException) -> str:
        if isinstance(exc, EdlError):
            return str(exc)[:4000]
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"internal error: {type(exc).__name__}: {text}"[:4000]


class WakeOnJobWrite:
    """WSGI middleware in front of moto: a job item written by anyone (`edl run-pipeline`,
    `edl compact` write the jobs table directly) wakes the runner at once, as the API server
    does after its own writes, instead of at its next poll. Only DynamoDB `PutItem`s are looked
    at, by the table name in their (small) body, which is handed on unread."""

    def __init__(self, app, table: str, wake: Callable[[], None]) -> None:
        self.app = app
        self.marker = f'"{table}"'.encode()
        self.wake = wake

    def __call__(self, environ: dict, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").endswith(".PutItem"):
            import io

            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            if self.marker in body:
                try:
                    return self.app(environ, start_response)
                finally:
                    self.wake()
        return self.app(environ, start_response)

