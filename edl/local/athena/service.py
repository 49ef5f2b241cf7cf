"""The local Athena's query executions, and the pool that runs them.

`LocalAthena.start` takes a query as its caller sent it (`api.AthenaApi`): the workgroup (moto's,
read in-process) gives the result location when it enforces its configuration or the request
gives none, else the request's; then the query waits in a small thread pool: QUEUED → RUNNING →
SUCCEEDED | FAILED | CANCELLED. It runs as its caller (`engine.QueryEngine`); a query that
succeeds writes `<OutputLocation><id>.csv` and `….csv.metadata` with the caller's credentials,
and its result is kept for `GetQueryResults` (the newest few hundred; the CSV stays in S3).
A query that scans more than the workgroup's `BytesScannedCutoffPerQuery` is cancelled.

Executions live in memory only: they are not the lake, and a restart must not run a query again.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from edl.aws import boto3_session
from edl.local.athena.callers import AthenaCaller, AthenaCallers, invalid
from edl.local.athena.engine import Cancellation, QueryCancelled, QueryEngine
from edl.local.athena.results import ResultSet
from edl.local.athena.sql import QueryFailure
from edl.local.athena.tables import Credentials, is_access_denied

log = logging.getLogger("edl.local.athena")

ENGINE_VERSION = {"SelectedEngineVersion": "AUTO",
                  "EffectiveEngineVersion": "Athena engine version 3"}
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
# Results kept for GetQueryResults; the CSV in S3 stays after they are dropped.
_KEPT_RESULTS = 200
_CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"},
                        connect_timeout=5, read_timeout=60)


# -- executions -------------------------------------------------------------------------------

@dataclass
class Execution:
    query_id: str
    query: str
    work_group: str
    region: str
    database: str | None
    catalog: str
    output_location: str
    caller: AthenaCaller
    cutoff_bytes: int | None
    submitted: float = field(default_factory=time.time)
    state: str = "QUEUED"
    started: float | None = None
    completed: float | None = None
    failure: QueryFailure | None = None
    cancel_reason: str | None = None
    bytes_scanned: int = 0
    engine_millis: int = 0
    result: ResultSet | None = None
    cancellation: Cancellation = field(default_factory=Cancellation)

    def describe(self) -> dict[str, Any]:
        """The `QueryExecution` structure of `GetQueryExecution`."""
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": self.submitted}
        if self.completed is not None:
            status["CompletionDateTime"] = self.completed
        if self.failure is not None:
            status["StateChangeReason"] = self.failure.reason
            status["AthenaError"] = {"ErrorCategory": 2 if self.failure.user_error else 1,
                                     "ErrorType": 1006 if self.failure.user_error else 401,
                                     "Retryable": False, "ErrorMessage": self.failure.reason}
        elif self.cancel_reason:
            status["StateChangeReason"] = self.cancel_reason
        end = self.completed or time.time()
        queued = (self.started or end) - self.submitted
        context: dict[str, str] = {"Catalog": self.catalog}
        if self.database:
            context["Database"] = self.database
        return {
            "QueryExecutionId": self.query_id,
            "Query": self.query,
            "StatementType": "DML",
            "SubstatementType": "SELECT",
            "ResultConfiguration": {"OutputLocation": self.output_location},
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": context,
            "Status": status,
            "Statistics": {
                "EngineExecutionTimeInMillis": self.engine_millis,
                "DataScannedInBytes": self.bytes_scanned,
                "TotalExecutionTimeInMillis": int((end - self.submitted) * 1000),
                "QueryQueueTimeInMillis": int(queued * 1000),
                "ServicePreProcessingTimeInMillis": 0,
                "QueryPlanningTimeInMillis": 0,
                "ServiceProcessingTimeInMillis": 0,
                "ResultReuseInformation": {"ReusedPreviousResult": False},
            },
            "WorkGroup": self.work_group,
            "EngineVersion": dict(ENGINE_VERSION),
        }


_SINGLE_PUT_BYTES = 64 * 1024 * 1024


class AwsClients:
    """boto3 clients for the callers' keys, kept (clients are thread-safe, and making one
    costs a tenth of a second): one session's loaders serve them all."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._session = boto3_session()
        self._clients: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, service: str, endpoint: str, credentials: Credentials) -> Any:
        key = (service, endpoint, credentials)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = self._session.client(
                service, endpoint_url=endpoint, region_name=credentials.region,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token, config=_CLIENT_CONFIG)
            self._clients[key] = client
            while len(self._clients) > self.size:
                self._clients.popitem(last=False)
            return client


class LocalAthena:
    """The executions and the pool that runs them, for one AWS endpoint."""

    def __init__(self, endpoint: Callable[[], str], account_id: str, workers: int = 2,
                 engine: QueryEngine | None = None,
                 client: Callable[[str, str, Credentials], Any] | None = None) -> None:
        self.endpoint = endpoint
        self.account_id = account_id
        self.client = client = client or AwsClients()
        self.engine = engine or QueryEngine(
            endpoint, lambda credentials: client("glue", endpoint(), credentials))
        self.callers = AthenaCallers(account_id)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="athena")
        self._executions: OrderedDict[str, Execution] = OrderedDict()
        self._lock = threading.Lock()

    # -- workgroups (moto's) --

    def work_group(self, name: str, region: str) -> Any:
        from moto.athena.models import athena_backends

        try:
            found = athena_backends[self.account_id][region].work_groups.get(name)
        except KeyError:  # a region moto does not know
            found = None
        if found is None:
            raise invalid(f"WorkGroup {name} is not found.")
        return found

    def work_group_arn(self, name: str, region: str) -> str:
        return f"arn:aws:athena:{region}:{self.account_id}:workgroup/{name}"

    # -- executions --

    def start(self, caller: AthenaCaller, request: dict) -> str:
        query = request.get("QueryString")
        if not isinstance(query, str) or not query.strip():
            raise invalid("QueryString must be a non-empty string")
        region = caller.credentials.region
        name = request.get("WorkGroup") or "primary"
        group = self.work_group(name, region)
        if getattr(group, "state", "ENABLED") != "ENABLED":
            raise invalid(f"WorkGroup {name} is disabled.")
        configuration = group.configuration or {}
        location = self._output_location(configuration, request.get("ResultConfiguration"))
        context = request.get("QueryExecutionContext") or {}
        cutoff = configuration.get("BytesScannedCutoffPerQuery")
        query_id = str(uuid.uuid4())
        execution = Execution(
            query_id=query_id, query=query, work_group=name, region=region,
            database=context.get("Database"), catalog=context.get("Catalog") or "AwsDataCatalog",
            output_location=f"{location}{query_id}.csv",
            caller=caller, cutoff_bytes=int(cutoff) if cutoff else None)
        with self._lock:
            self._executions[query_id] = execution
            self._forget_old_results()
        self._pool.submit(self._run, execution)
        log.info("athena - %s queued in %s by %s", query_id, name, caller.arn)
        return query_id

    @staticmethod
    def _output_location(configuration: dict, requested: dict | None) -> str:
        enforced = configuration.get("EnforceWorkGroupConfiguration", True)
        group_location = (configuration.get("ResultConfiguration") or {}).get("OutputLocation")
        asked = (requested or {}).get("OutputLocation")
        location = group_location if (enforced and group_location) else (asked or group_location)
        if not location:
            raise invalid("No output location provided. An output location is required either "
                           "through the Workgroup result configuration setting or as an API "
                           "input.")
        if not location.startswith("s3://"):
            raise invalid(f"OutputLocation {location} is not an s3:// URL")
        return location if location.endswith("/") else location + "/"

    def _forget_old_results(self) -> None:
        kept = [e for e in self._executions.values() if e.result is not None]
        for execution in kept[:-_KEPT_RESULTS]:
            execution.result = None

    def get(self, query_id: str) -> Execution:
        with self._lock:
            execution = self._executions.get(query_id)
        if execution is None:
            raise invalid(f"QueryExecution {query_id} was not found")
        return execution

    def executions(self, work_group: str, region: str) -> list[Execution]:
        """Newest first, as Athena lists them."""
        with self._lock:
            found = [e for e in self._executions.values()
                     if e.work_group == work_group and e.region == region]
        return list(reversed(found))

    def stop(self, execution: Execution) -> None:
        if execution.state in TERMINAL:
            return
        execution.cancel_reason = "Query was cancelled by user"
        execution.cancellation.cancel()
        if execution.state == "QUEUED":   # the pool will skip it
            self._finish(execution, "CANCELLED")

    def _finish(self, execution: Execution, state: str) -> None:
        with self._lock:
            if execution.state in TERMINAL:
                return
            execution.completed = time.time()
            execution.state = state

    def _run(self, execution: Execution) -> None:
        with self._lock:
            if execution.state != "QUEUED":
                return
            execution.state = "RUNNING"
            execution.started = time.time()
        try:
            outcome = self.engine.run(execution.query, execution.database,
                                      execution.caller.credentials, execution.cancellation)
            execution.bytes_scanned = outcome.bytes_scanned
            execution.engine_millis = outcome.engine_millis
            if execution.cutoff_bytes and outcome.bytes_scanned > execution.cutoff_bytes:
                execution.cancel_reason = ("Query cancelled: it scanned more than the "
                                           "workgroup's limit of "
                                           f"{execution.cutoff_bytes} bytes")
                self._finish(execution, "CANCELLED")
                return
            result = ResultSet(outcome.table)
            execution.cancellation.check()
            self._write_result(execution, result)
            execution.result = result
            self._finish(execution, "SUCCEEDED")
            log.info("athena - %s succeeded: %s rows, %s bytes scanned", execution.query_id,
                     result.rows, outcome.bytes_scanned)
        except QueryCancelled:
            self._finish(execution, "CANCELLED")
            log.info("athena - %s cancelled", execution.query_id)
        except QueryFailure as failure:
            execution.failure = failure
            self._finish(execution, "FAILED")
            log.info("athena - %s failed: %s", execution.query_id, failure.reason)
        except Exception as error:  # a bug here must fail the query, not hang it in RUNNING
            log.exception("athena - %s failed unexpectedly", execution.query_id)
            execution.failure = QueryFailure("GENERIC_INTERNAL_ERROR",
                                             f"{type(error).__name__}: {error}", user_error=False)
            self._finish(execution, "FAILED")

    def _write_result(self, execution: Execution, result: ResultSet) -> None:
        bucket, _, key = execution.output_location.removeprefix("s3://").partition("/")
        s3 = self.client("s3", self.endpoint(), execution.caller.credentials)
        body = result.csv_bytes()
        try:
            if len(body) <= _SINGLE_PUT_BYTES:   # one request, no transfer threads to start
                s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv")
            else:
                s3.upload_fileobj(io.BytesIO(body), bucket, key,
                                  ExtraArgs={"ContentType": "text/csv"})
            s3.put_object(Bucket=bucket, Key=f"{key}.metadata", Body=result.metadata_bytes())
        except (ClientError, BotoCoreError) as error:
            if is_access_denied(error):
                raise QueryFailure("PERMISSION_DENIED", "Access denied when writing output to "
                                   f"url: {execution.output_location}") from None
            raise QueryFailure("GENERIC_INTERNAL_ERROR", "the result could not be written to "
                               f"{execution.output_location}: {error}", user_error=False) from None

    def close(self) -> None:
        with self._lock:
            running = [e for e in self._executions.values() if e.state not in TERMINAL]
        for execution in running:
            self.stop(execution)
        self._pool.shutdown(wait=True, cancel_futures=True)
