"""Athena's JSON API on the local cloud's AWS endpoint (`X-Amz-Target: AmazonAthena.<Op>`).

`AthenaApi` is WSGI middleware around moto's Athena backend (`MotoService` hands it that app, as
it hands STS's to `AssumeRoleGuard`). It answers the query calls - `StartQueryExecution`,
`GetQueryExecution`, `GetQueryResults`, `StopQueryExecution`, `ListQueryExecutions`,
`BatchGetQueryExecution` - and `GetWorkGroup` (so a policy naming the workgroup's ARN works, as
in AWS, where moto would check `"*"`); every other call (`CreateWorkGroup`, `ListWorkGroups`, …)
is moto's. Workgroups live in moto's backend, read here in-process.

Each call is verified and authorised before anything else (`AthenaCallers`): under IAM
enforcement its SigV4 signature against the local cloud's keys (`api_auth.SigV4Verifier`), then
the caller's IAM policies for `athena:<Op>` on the workgroup's ARN, evaluated by moto's own policy
code as moto evaluates every other call. A query then runs as that caller (`engine.QueryEngine`),
with the keys that signed it.

`LocalAthena` holds the executions (in memory only: they are not the lake, and a restart must
not run a query again) and runs them in a small thread pool: QUEUED → RUNNING → SUCCEEDED |
FAILED | CANCELLED. A query that succeeds writes `<OutputLocation><id>.csv` and `….csv.metadata`
with the caller's credentials: the workgroup's location when the workgroup enforces its
configuration (or the request gives none), else the request's.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from edl.local.api_auth import AuthError, MotoKeyStore, SignedRequest, SigV4Verifier
from edl.local.athena.engine import Cancellation, QueryCancelled, QueryEngine
from edl.local.athena.results import MAX_PAGE_ROWS, ResultSet, decode_token, encode_token
from edl.local.athena.sql import QueryFailure
from edl.local.athena.tables import Credentials, is_access_denied

log = logging.getLogger("edl.local.athena")

TARGET_PREFIX = "AmazonAthena."
SERVED = ("StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution",
          "ListQueryExecutions", "BatchGetQueryExecution", "GetWorkGroup")
ENGINE_VERSION = {"SelectedEngineVersion": "AUTO",
                  "EffectiveEngineVersion": "Athena engine version 3"}
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
_MAX_LIST_RESULTS = 50
_MAX_BATCH = 50
# Results kept for GetQueryResults; the CSV in S3 stays after they are dropped.
_KEPT_RESULTS = 200
_CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"},
                        connect_timeout=5, read_timeout=60)


class ApiError(Exception):
    """An error answer of Athena's API (HTTP 400 with `__type`, as Athena answers)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidRequestException", message)


# -- who calls --------------------------------------------------------------------------------

@dataclass(frozen=True)
class AthenaCaller:
    arn: str
    credentials: Credentials
    enforced: bool


def _iam_enforced() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def _environ_headers(environ: dict) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
               if key.startswith("HTTP_") and isinstance(value, str)}
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _credential_scope(authorization: str) -> list[str]:
    _, found, rest = authorization.partition("Credential=")
    return rest.split(",", 1)[0].strip().split("/") if found else []


class AthenaCallers:
    """Verifies who signed a call and whether their IAM policies allow it."""

    def __init__(self, account_id: str, enforced: Callable[[], bool] = _iam_enforced) -> None:
        self.account_id = account_id
        self.keys = MotoKeyStore(account_id)
        self.enforced = enforced

    def authenticate(self, environ: dict, body: bytes) -> AthenaCaller:
        headers = _environ_headers(environ)
        scope = _credential_scope(headers.get("Authorization", ""))
        if len(scope) != 5:
            raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token")
        access_key, region = scope[0], scope[2]
        token = headers.get("X-Amz-Security-Token")
        if not self.enforced():
            # moto takes any key until enforcement is on; so does its Athena, signing its
            # Glue and S3 calls with the caller's key id (moto checks no signature then).
            key = self.keys.find(access_key)
            secret = key.secret_access_key if key else "not-checked"
            arn = key.arn if key else f"arn:aws:iam::{self.account_id}:user/{access_key}"
            return AthenaCaller(arn, Credentials(access_key, secret, token, region), False)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        host = headers.get("Host", "127.0.0.1")
        request = SignedRequest(method=environ.get("REQUEST_METHOD", "POST"),
                                url=f"http://{host}{raw}", headers=headers, body=body,
                                source_ip=environ.get("REMOTE_ADDR", "127.0.0.1"))
        try:
            caller = SigV4Verifier(self.keys, region, service="athena").verify(request)
        except AuthError as error:
            code = {"InvalidClientTokenId": "UnrecognizedClientException"}.get(error.code,
                                                                               error.code)
            raise ApiError(code, error.message, 403 if code != "InvalidSignatureException"
                           else 400) from None
        key = caller.key
        return AthenaCaller(key.arn, Credentials(key.access_key_id, key.secret_access_key,
                                                 key.session_token, region), True)

    def authorize(self, caller: AthenaCaller, action: str, resource: str) -> None:
        """AccessDeniedException unless the caller's policies allow `athena:<action>` on the
        resource (moto's policy evaluation, the one its IAM enforcement uses)."""
        if not caller.enforced:
            return
        from moto.iam.access_control import (
            CreateAccessKeyFailure,
            IAMPolicy,
            PermissionResult,
            create_access_key,
        )

        headers = ({"X-Amz-Security-Token": caller.credentials.session_token}
                   if caller.credentials.session_token else {})
        try:
            key = create_access_key(self.account_id, "aws", caller.credentials.access_key_id,
                                    headers)
            policies = key.collect_policies()
        except CreateAccessKeyFailure:
            policies = []
        permitted = False
        for policy in policies:
            result = IAMPolicy(policy).is_action_permitted(f"athena:{action}", resource)
            if result == PermissionResult.DENIED:
                permitted = False
                break
            permitted = permitted or result == PermissionResult.PERMITTED
        if not permitted:
            log.info("athena - %s refused athena:%s on %s", caller.arn, action, resource)
            raise ApiError("AccessDeniedException",
                           f"User: {caller.arn} is not authorized to perform: athena:{action} on "
                           f"resource: {resource} because no identity-based policy allows the "
                           f"athena:{action} action")


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


class AwsClients:
    """boto3 clients for the callers' keys, kept (clients are thread-safe, and making one
    costs a tenth of a second): one session's loaders serve them all."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._session = boto3.session.Session()
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

        found = athena_backends[self.account_id][region].work_groups.get(name)
        if found is None:
            raise _invalid(f"WorkGroup {name} is not found.")
        return found

    def work_group_arn(self, name: str, region: str) -> str:
        return f"arn:aws:athena:{region}:{self.account_id}:workgroup/{name}"

    # -- executions --

    def start(self, caller: AthenaCaller, request: dict) -> str:
        query = request.get("QueryString")
        if not isinstance(query, str) or not query.strip():
            raise _invalid("QueryString must be a non-empty string")
        region = caller.credentials.region
        name = request.get("WorkGroup") or "primary"
        group = self.work_group(name, region)
        if getattr(group, "state", "ENABLED") != "ENABLED":
            raise _invalid(f"WorkGroup {name} is disabled.")
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
            raise _invalid("No output location provided. An output location is required either "
                           "through the Workgroup result configuration setting or as an API "
                           "input.")
        if not location.startswith("s3://"):
            raise _invalid(f"OutputLocation {location} is not an s3:// URL")
        return location if location.endswith("/") else location + "/"

    def _forget_old_results(self) -> None:
        kept = [e for e in self._executions.values() if e.result is not None]
        for execution in kept[:-_KEPT_RESULTS]:
            execution.result = None

    def get(self, query_id: str) -> Execution:
        with self._lock:
            execution = self._executions.get(query_id)
        if execution is None:
            raise _invalid(f"QueryExecution {query_id} was not found")
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
        try:
            s3.upload_fileobj(io.BytesIO(result.csv_bytes()), bucket, key,
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


# -- the API ----------------------------------------------------------------------------------

class AthenaApi:
    """WSGI middleware around moto's Athena backend: the calls in `SERVED` are answered here."""

    def __init__(self, app: Callable, athena: LocalAthena) -> None:
        self.app = app
        self.athena = athena

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        if operation not in SERVED:
            return self.app(environ, start_response)
        try:
            body = _read_body(environ)
            caller = self.athena.callers.authenticate(environ, body)
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise ApiError("SerializationException", "the request body is not JSON") from None
            if not isinstance(request, dict):
                raise ApiError("SerializationException", "the request body is not a JSON object")
            answer = getattr(self, f"_{operation}")(caller, request)
            return _json(start_response, "200 OK", answer)
        except ApiError as error:
            return _json(start_response, f"{error.status} {HTTPStatus(error.status).phrase}",
                         {"__type": error.code, "message": error.message,
                          "Message": error.message}, error.code)

    def _authorized(self, caller: AthenaCaller, action: str, work_group: str) -> None:
        self.athena.callers.authorize(
            caller, action, self.athena.work_group_arn(work_group, caller.credentials.region))

    def _execution(self, caller: AthenaCaller, action: str, request: dict) -> Execution:
        query_id = request.get("QueryExecutionId")
        if not isinstance(query_id, str) or not query_id:
            raise _invalid("QueryExecutionId is required")
        execution = self.athena.get(query_id)
        self._authorized(caller, action, execution.work_group)
        return execution

    def _StartQueryExecution(self, caller: AthenaCaller, request: dict) -> dict:
        self._authorized(caller, "StartQueryExecution", request.get("WorkGroup") or "primary")
        return {"QueryExecutionId": self.athena.start(caller, request)}

    def _GetQueryExecution(self, caller: AthenaCaller, request: dict) -> dict:
        execution = self._execution(caller, "GetQueryExecution", request)
        return {"QueryExecution": execution.describe()}

    def _StopQueryExecution(self, caller: AthenaCaller, request: dict) -> dict:
        self.athena.stop(self._execution(caller, "StopQueryExecution", request))
        return {}

    def _GetQueryResults(self, caller: AthenaCaller, request: dict) -> dict:
        execution = self._execution(caller, "GetQueryResults", request)
        if execution.state in ("QUEUED", "RUNNING"):
            raise _invalid(f"Query has not yet finished. Current state: {execution.state}")
        if execution.state != "SUCCEEDED":
            raise _invalid(f"Query did not finish successfully. Final query state: "
                           f"{execution.state}" + (f"\n{execution.failure.reason}"
                                                   if execution.failure else ""))
        result = execution.result
        if result is None:
            raise _invalid(f"the local Athena no longer holds the results of {execution.query_id}"
                           f"; read them from {execution.output_location}")
        max_results = request.get("MaxResults", MAX_PAGE_ROWS)
        if not isinstance(max_results, int) or not 1 <= max_results <= MAX_PAGE_ROWS:
            raise _invalid(f"MaxResults must be between 1 and {MAX_PAGE_ROWS}")
        start = 0
        if request.get("NextToken"):
            try:
                start = decode_token(str(request["NextToken"]), execution.query_id)
            except ValueError as error:
                raise _invalid(str(error)) from None
        rows, next_start = result.page(start, max_results)
        answer: dict[str, Any] = {"UpdateCount": 0, "ResultSet": {
            "Rows": rows, "ResultSetMetadata": result.metadata()}}
        if next_start is not None:
            answer["NextToken"] = encode_token(execution.query_id, next_start)
        return answer

    def _ListQueryExecutions(self, caller: AthenaCaller, request: dict) -> dict:
        work_group = request.get("WorkGroup") or "primary"
        self._authorized(caller, "ListQueryExecutions", work_group)
        max_results = request.get("MaxResults", _MAX_LIST_RESULTS)
        if not isinstance(max_results, int) or not 0 <= max_results <= _MAX_LIST_RESULTS:
            raise _invalid(f"MaxResults must be between 0 and {_MAX_LIST_RESULTS}")
        ids = [e.query_id for e in self.athena.executions(work_group, caller.credentials.region)]
        start = 0
        if request.get("NextToken"):
            try:
                start = decode_token(str(request["NextToken"]), work_group)
            except ValueError as error:
                raise _invalid(str(error)) from None
        answer: dict[str, Any] = {"QueryExecutionIds": ids[start:start + max_results]}
        if start + max_results < len(ids):
            answer["NextToken"] = encode_token(work_group, start + max_results)
        return answer

    def _BatchGetQueryExecution(self, caller: AthenaCaller, request: dict) -> dict:
        ids = request.get("QueryExecutionIds") or []
        if not isinstance(ids, list) or not 1 <= len(ids) <= _MAX_BATCH:
            raise _invalid(f"QueryExecutionIds must hold 1 to {_MAX_BATCH} ids")
        found, missing = [], []
        for query_id in ids:
            try:
                found.append(self._execution(caller, "BatchGetQueryExecution",
                                             {"QueryExecutionId": query_id}).describe())
            except ApiError as error:
                missing.append({"QueryExecutionId": query_id, "ErrorCode": error.code,
                                "ErrorMessage": error.message})
        return {"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing}

    def _GetWorkGroup(self, caller: AthenaCaller, request: dict) -> dict:
        name = request.get("WorkGroup")
        if not isinstance(name, str) or not name:
            raise _invalid("WorkGroup is required")
        self._authorized(caller, "GetWorkGroup", name)
        group = self.athena.work_group(name, caller.credentials.region)
        return {"WorkGroup": {"Name": group.name, "State": group.state,
                              "Configuration": group.configuration,
                              "Description": group.description or "",
                              "CreationTime": getattr(group, "creation_time", time.time())}}


def _read_body(environ: dict) -> bytes:
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    if stream is None:
        return b""
    body = stream.read(int(length)) if length else (
        stream.read() if environ.get("wsgi.input_terminated") else b"")
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _json(start_response: Callable, status: str, payload: dict,
          error_type: str | None = None) -> list[bytes]:
    body = json.dumps(payload, default=str).encode()
    headers = [("Content-Type", "application/x-amz-json-1.1"),
               ("Content-Length", str(len(body))), ("x-amzn-RequestId", str(uuid.uuid4()))]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    start_response(status, headers)
    return [body]
