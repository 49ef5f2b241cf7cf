"""The API's errors: one family, one JSON shape (`{"error": {"code", "message"}}`), and the
mapping of the lake's own failures (and AWS throttling) to HTTP statuses. 500 is for bugs only;
`common.endpoint` logs those."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl.errors import NamingError
from edl.utils.grants import DuplicateGrantError, GrantStateError, UnknownGrantError
from edl.utils.metadata import UnknownDatasetError
from edl.utils.pipelines import UnknownPipelineError
from edl.utils.tier_policy import PolicyRefusal
from edl.utils.updates import UnknownUpdateError, UpdateStateError

JSON_HEADERS = {"Content-Type": "application/json"}
_THROTTLED = {"ThrottlingException", "ProvisionedThroughputExceededException",
              "RequestLimitExceeded", "TooManyRequestsException", "SlowDown"}


class HttpError(Exception):
    """What a handler answers with when a request fails: an HTTP status and `{"error": {code,
    message}}`. (The client's error for such an answer is `edl_api.client.ApiError`.)"""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, *,
                 subjects: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        # The datasets a refusal is about when the request's path names none (a pipeline run's
        # outputs): the audit log records it under each of them.
        self.subjects = subjects


class BadRequest(HttpError):
    status, code = 400, "bad_request"


class Forbidden(HttpError):
    status, code = 403, "forbidden"


class NotFound(HttpError):
    status, code = 404, "not_found"


class MethodNotAllowed(HttpError):
    status, code = 405, "method_not_allowed"


class Conflict(HttpError):
    status, code = 409, "conflict"


class PayloadTooLarge(HttpError):
    status, code = 413, "payload_too_large"


class Throttled(HttpError):
    status, code = 429, "throttled"


class Unavailable(HttpError):
    status, code = 503, "unavailable"


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict:
    return {"statusCode": status, "headers": {**JSON_HEADERS, **(headers or {})},
            "body": json.dumps(body, separators=(",", ":"), default=str)}


def error_response(error: HttpError) -> dict:
    return response(error.status, {"error": {"code": error.code, "message": error.message}})


def map_exception(exc: Exception) -> HttpError | None:
    """The API error for a known failure from the lake's code or AWS; None for a bug."""
    if isinstance(exc, (UnknownDatasetError, UnknownUpdateError)):
        return NotFound(exc.message)
    if isinstance(exc, UnknownGrantError):
        return NotFound(exc.message, code="unknown_grant")
    if isinstance(exc, UnknownPipelineError):
        return NotFound(exc.message, code="unknown_pipeline")
    if isinstance(exc, UpdateStateError):
        return Conflict(exc.message)
    if isinstance(exc, GrantStateError):
        return Conflict(exc.message, code="wrong_state")
    if isinstance(exc, DuplicateGrantError):
        return Conflict(exc.message, code="duplicate_grant")
    if isinstance(exc, PolicyRefusal):
        kind = {400: BadRequest, 403: Forbidden, 404: NotFound, 409: Conflict}[exc.status]
        return kind(exc.message if not exc.hint else f"{exc.message} ({exc.hint})",
                    code=exc.code)
    if isinstance(exc, NamingError):
        return BadRequest(exc.message, code="invalid_name")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _THROTTLED:
            return Throttled("the lake is busy; retry shortly")
    if isinstance(exc, BotoCoreError) and "connect" in type(exc).__name__.lower():
        return Unavailable("a service the lake depends on cannot be reached; retry shortly")
    return None
