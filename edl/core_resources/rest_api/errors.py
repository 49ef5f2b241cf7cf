"""The API's errors: one family, one JSON shape (`{"error": {"code", "message"}}`), and the
mapping of the lake's own failures (and AWS throttling) to HTTP statuses. 500 is for bugs only;
`common.endpoint` logs those."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edl.errors import NamingError
from edl.utils.metadata import UnknownDatasetError
from edl.utils.updates import UnknownUpdateError, UpdateStateError

JSON_HEADERS = {"Content-Type": "application/json"}
_THROTTLED = {"ThrottlingException", "ProvisionedThroughputExceededException",
              "RequestLimitExceeded", "TooManyRequestsException", "SlowDown"}


class ApiError(Exception):
    """A failure the caller caused or must know about; becomes `{"error": {code, message}}`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class Throttled(ApiError):
    status, code = 429, "throttled"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict:
    return {"statusCode": status, "headers": {**JSON_HEADERS, **(headers or {})},
            "body": json.dumps(body, separators=(",", ":"), default=str)}


def error_response(error: ApiError) -> dict:
    return response(error.status, {"error": {"code": error.code, "message": error.message}})


def map_exception(exc: Exception) -> ApiError | None:
    """The API error for a known failure from the lake's code or AWS; None for a bug."""
    if isinstance(exc, (UnknownDatasetError, UnknownUpdateError)):
        return NotFound(exc.message)
    if isinstance(exc, UpdateStateError):
        return Conflict(exc.message)
    if isinstance(exc, NamingError):
        return BadRequest(exc.message, code="invalid_name")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _THROTTLED:
            return Throttled("the lake is busy; retry shortly")
    if isinstance(exc, BotoCoreError) and "connect" in type(exc).__name__.lower():
        return Unavailable("a service the lake depends on cannot be reached; retry shortly")
    return None
