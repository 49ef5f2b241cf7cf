"""Athena's JSON API on the local cloud's AWS endpoint (`X-Amz-Target: AmazonAthena.<Op>`).

`AthenaApi` is WSGI middleware around moto's Athena backend (`MotoService` hands it that app, as
it hands STS's to `AssumeRoleGuard`). It answers the query calls - `StartQueryExecution`,
`GetQueryExecution`, `GetQueryResults`, `StopQueryExecution`, `ListQueryExecutions`,
`BatchGetQueryExecution` - and `GetWorkGroup` (so a policy naming the workgroup's ARN works, as
in AWS, where moto would check `"*"`); every other call (`CreateWorkGroup`, `ListWorkGroups`, …)
goes on to moto. Each call is authenticated and authorised for `athena:<Op>` on its workgroup's
ARN first (`callers.py`), then handed to `service.LocalAthena`. Errors are Athena's: HTTP 400
with `__type` (`InvalidRequestException`, `AccessDeniedException`, …).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from edl.local.athena.callers import ApiError, AthenaCaller, invalid
from edl.local.athena.results import MAX_PAGE_ROWS, decode_token, encode_token
from edl.local.athena.service import Execution, LocalAthena

TARGET_PREFIX = "AmazonAthena."
SERVED = ("StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution",
          "ListQueryExecutions", "BatchGetQueryExecution", "GetWorkGroup")
_MAX_LIST_RESULTS = 50
_MAX_BATCH = 50


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
            raise invalid("QueryExecutionId is required")
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
            raise invalid(f"Query has not yet finished. Current state: {execution.state}")
        if execution.state != "SUCCEEDED":
            raise invalid(f"Query did not finish successfully. Final query state: "
                           f"{execution.state}" + (f"\n{execution.failure.reason}"
                                                   if execution.failure else ""))
        result = execution.result
        if result is None:
            raise invalid(f"the local Athena no longer holds the results of {execution.query_id}"
                           f"; read them from {execution.output_location}")
        max_results = request.get("MaxResults", MAX_PAGE_ROWS)
        if not isinstance(max_results, int) or not 1 <= max_results <= MAX_PAGE_ROWS:
            raise invalid(f"MaxResults must be between 1 and {MAX_PAGE_ROWS}")
        start = 0
        if request.get("NextToken"):
            try:
                start = decode_token(str(request["NextToken"]), execution.query_id)
            except ValueError as error:
                raise invalid(str(error)) from None
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
            raise invalid(f"MaxResults must be between 0 and {_MAX_LIST_RESULTS}")
        ids = [e.query_id for e in self.athena.executions(work_group, caller.credentials.region)]
        start = 0
        if request.get("NextToken"):
            try:
                start = decode_token(str(request["NextToken"]), work_group)
            except ValueError as error:
                raise invalid(str(error)) from None
        answer: dict[str, Any] = {"QueryExecutionIds": ids[start:start + max_results]}
        if start + max_results < len(ids):
            answer["NextToken"] = encode_token(work_group, start + max_results)
        return answer

    def _BatchGetQueryExecution(self, caller: AthenaCaller, request: dict) -> dict:
        ids = request.get("QueryExecutionIds") or []
        if not isinstance(ids, list) or not 1 <= len(ids) <= _MAX_BATCH:
            raise invalid(f"QueryExecutionIds must hold 1 to {_MAX_BATCH} ids")
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
            raise invalid("WorkGroup is required")
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
