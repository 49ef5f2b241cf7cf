"""The HTTP client of the lake's REST API: SigV4 signing, JSON, retries, pagination, errors.

Every request is signed with the caller's AWS credentials for the service `execute-api`, exactly
as API Gateway with IAM authorization expects; the local runtime checks the same signature and
maps the access key to its IAM user, so the API knows who calls in both clouds.

Transient failures (HTTP 429/502/503/504, a connection that could not be made or was reset) are
retried a bounded number of times with exponential backoff and full jitter. A POST is not
idempotent (a retried start_ingest could start two ingests), so it is retried only when the server
certainly did not act on it: 429, 503, or a connection that was never made.

Errors become `ApiError` with the HTTP status and the API's stable `{"error": {"code", "message"}}`.

`ApiClient.for_instance()` finds the API's URL and the caller's credentials for an instance; this
module imports no server code (DESIGN §9).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from edl.errors import EdlError, UsageError
from edl_api.discovery import api_location

log = logging.getLogger(__name__)

SERVICE = "execute-api"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Statuses after which the server certainly did not act on the request (safe to retry a POST).
_NOT_ACTED_STATUSES = frozenset({429, 503})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class ApiError(EdlError):
    """The API answered with an error: the HTTP status, the API's error code and its message."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{message} ({status} {code})", hint=hint)
        self.status = status
        self.code = code
        self.api_message = message
        self.exit_code = 3 if status == 404 else 2 if status == 400 else 1


class ApiConnectionError(EdlError):
    """The API could not be reached (after the retries)."""


class UploadError(EdlError):
    """A file could not be put to its presigned upload URL."""


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` tries; before try n+1 sleep a random time in
    [0, min(max_delay, base_delay * 2**n)] (full jitter), or what Retry-After asks, capped."""

    max_attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, rng: Callable[[float, float], float],
              retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(self.max_delay, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return rng(0.0, min(self.max_delay, self.base_delay * (2 ** attempt)))


class ApiClient:
    """Signed JSON requests to one API base URL (…/v1), as one caller."""

    def __init__(self, base_url: str, credentials: Any, region: str, *,
                 retry: RetryPolicy | None = None, timeout: float = 60.0,
                 connect_timeout: float = 10.0, local: bool = False,
                 aws_endpoint_url: str | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[float, float], float] = random.uniform,
                 pool: urllib3.PoolManager | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.region = region
        self.retry = retry or RetryPolicy()
        self.local = local
        # The AWS endpoint that goes with this API (the local cloud's; None in AWS), for
        # clients the caller builds with credentials the API hands out.
        self.aws_endpoint_url = aws_endpoint_url
        self._sleep = sleep
        self._rng = rng
        self._pool = pool or urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=connect_timeout, read=timeout))

    # -- building one ---------------------------------------------------------------------------

    @classmethod
    def for_instance(cls, instance_name: str, profile: str | None = None) -> ApiClient:
        """The client of an instance's API, as the caller named by `profile` (or the AWS
        environment): the URL from the local state file or from the REST API stack."""
        location = api_location(instance_name, profile)
        return cls(location.base_url, location.credentials, location.region,
                   local=location.local, connect_timeout=2.0 if location.local else 10.0,
                   aws_endpoint_url=location.aws_endpoint_url)

    # -- requests -------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One signed JSON request, retried on transient failures; the decoded JSON answer."""
        url = self.url(path, params)
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = self._send(method, url, lambda: (data, self._sign(method, url, data, headers)))
        return _decode(response, method, url)

    def paginate(self, path: str, params: Mapping[str, Any] | None = None, *,
                 max_items: int | None = None) -> Iterator[dict[str, Any]]:
        """Items of a list endpoint, page after page, following `next_token` until it is null.
        A page is `{"items": [...], "next_token": str|null}`; a page that names its list
        (`{"datasets": [...], …}`) is read too."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        seen: set[str] = set()
        count = 0
        while True:
            page = self.get(path, query)
            for item in page_items(page, path):
                yield item
                count += 1
                if max_items is not None and count >= max_items:
                    return
            token = page.get("next_token")
            if not token:
                return
            if token in seen:  # a server bug would otherwise loop for ever
                raise ApiError(200, "PaginationLoop",
                               f"GET {path} returned the same next_token twice")
            seen.add(token)
            query["next_token"] = token

    def put_file(self, url: str, file: BinaryIO, size: int, *,
                 headers: Mapping[str, str] | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        """PUT a file to a presigned URL: not signed by us, with exactly the headers the URL was
        signed with (the API names them in `headers`), retried from the start on transient
        failures."""
        headers = dict(headers or {})
        signed = parse_qs(urlsplit(url).query).get("X-Amz-SignedHeaders", [""])[0]
        missing = [h for h in signed.split(";") if h and h != "host"
                   and h not in {k.lower() for k in headers}]
        if missing:
            raise UploadError(f"the upload URL expects the headers {', '.join(missing)}, "
                              "which the API did not give",
                              hint="this is a mismatch between edl-api and the API's version")
        headers["Content-Length"] = str(size)
        start = file.tell()

        def body():
            file.seek(start)
            return (_ProgressReader(file, on_progress) if on_progress else file), headers

        response = self._send("PUT", url, body)
        if response.status >= 300:
            code, message = _s3_error(response.data)
            hint = ("the upload URL is valid for a limited time; run the ingest again"
                    if response.status == 403 else
                    "the storage service failed; run the ingest again (--debug shows more)")
            raise UploadError(f"upload failed: {response.status} {code}: {message}", hint=hint)

    # -- internals ------------------------------------------------------------------------------

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = self.base_url + "/" + path.lstrip("/")
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        return f"{url}?{urlencode(sorted(query.items()))}" if query else url

    def _sign(self, method: str, url: str, data: bytes, headers: dict[str, str]) -> dict[str, str]:
        frozen = (self.credentials.get_frozen_credentials()
                  if hasattr(self.credentials, "get_frozen_credentials") else self.credentials)
        request = AWSRequest(method=method, url=url, data=data, headers=dict(headers))
        SigV4Auth(frozen, SERVICE, self.region).add_auth(request)
        return dict(request.headers.items())

    def _send(self, method: str, url: str,
              prepare: Callable[[], tuple[Any, dict[str, str]]]) -> urllib3.BaseHTTPResponse:
        """Send with retries; `prepare` gives a fresh (body, headers) per try (a new signature
        each time, since a signature carries its time)."""
        idempotent = method in _IDEMPOTENT
        where = _without_query(url)
        for attempt in range(self.retry.max_attempts):
            last = attempt == self.retry.max_attempts - 1
            body, headers = prepare()
            try:
                response = self._pool.request(method, url, body=body, headers=headers,
                                              redirect=False, retries=False)
            except urllib3.exceptions.HTTPError as exc:
                never_sent = isinstance(exc, (urllib3.exceptions.NewConnectionError,
                                              urllib3.exceptions.ConnectTimeoutError))
                retryable = never_sent or (idempotent and _is_reset(exc))
                if last or not retryable:
                    raise self._unreachable(method, where, exc) from exc
                delay = self.retry.delay(attempt, self._rng)
                log.info("%s %s - %s; retrying in %.2fs", method, where,
                         exc.__class__.__name__, delay)
                self._sleep(delay)
                continue
            status = response.status
            log.debug("%s %s - HTTP %s (try %d)", method, where, status, attempt + 1)
            retryable = status in RETRY_STATUSES and (idempotent or status in _NOT_ACTED_STATUSES)
            if not retryable or last:
                return response
            delay = self.retry.delay(attempt, self._rng, response.headers.get("Retry-After"))
            log.info("%s %s - HTTP %s; retrying in %.2fs", method, where, status, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises on its last try

    def _unreachable(self, method: str, where: str, exc: Exception) -> ApiConnectionError:
        hint = ("is the local cloud running? start it with `edl local start`" if self.local
                else "check your network and the instance's region")
        return ApiConnectionError(f"cannot reach the API at {where} ({method}): "
                                  f"{exc.__class__.__name__}", hint=hint)


def page_items(page: dict[str, Any], path: str) -> list[Any]:
    """The items of one page: `items`, or else the page's one list (`datasets`, `updates`)."""
    if "items" in page:
        return page["items"] or []
    lists = [value for value in page.values() if isinstance(value, list)]
    if len(lists) != 1:
        raise ApiError(200, "BadResponse", f"GET {path} answered a page without its items")
    return lists[0]


class _ProgressReader:
    """A file wrapper that reports the bytes read so far (urllib3 streams a body with read())."""

    def __init__(self, file: BinaryIO, on_progress: Callable[[int], None]) -> None:
        self._file = file
        self._on_progress = on_progress
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._sent += len(chunk)
        self._on_progress(self._sent)
        return chunk


def _decode(response: urllib3.BaseHTTPResponse, method: str, url: str) -> dict[str, Any]:
    where = f"{method} {_without_query(url)}"
    try:
        payload = json.loads(response.data) if response.data else {}
    except ValueError:
        payload = None
    if 200 <= response.status < 300:
        if not isinstance(payload, dict):
            raise ApiError(response.status, "BadResponse",
                           f"{where} answered with something that is not a JSON object")
        return payload
    raise _api_error(response, payload, where)


def _api_error(response: urllib3.BaseHTTPResponse, payload: Any, where: str) -> ApiError:
    status = response.status
    code, message = f"HTTP{status}", ""
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):  # the API's own shape
            code = str(error.get("code") or code)
            message = str(error.get("message") or "")
        else:  # API Gateway's own answers: {"message": …} and an x-amzn-ErrorType header
            message = str(payload.get("message") or payload.get("Message") or "")
            code = response.headers.get("x-amzn-ErrorType", code).split(":")[0]
    elif response.data:
        message = response.data[:200].decode("utf-8", "replace").strip()
    message = message or f"{where} failed"
    hint = _HINTS.get(status)
    if status == 403 and code not in _IDENTITY_CODES:
        hint = None  # a policy decision (no grant, not an approver, ...): the message says why
    return ApiError(status, code, message, hint=hint)


# 403 codes that mean "who signed this may not", as opposed to the grants policy's own codes
_IDENTITY_CODES = {"forbidden", "Forbidden", "unsigned", "HTTP403", "AccessDeniedException",
                   "InvalidSignatureException", "MissingAuthenticationTokenException",
                   "UnrecognizedClientException", "IncompleteSignatureException"}


_HINTS = {
    403: "your identity may not do this: check --profile (or AWS_PROFILE / the AWS variables)",
    404: None,
    409: "the resource changed meanwhile or already exists; look at it and try again",
    413: "the request body is too large",
    429: "the API is throttling requests; try again in a moment",
}


def _s3_error(data: bytes) -> tuple[str, str]:
    text = data.decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    if not message:  # not S3's XML (a proxy's or an emulator's HTML page): its text, shortened
        plain = " ".join(re.sub(r"<[^>]*>", " ", text).split())
        return (code.group(1) if code else "Error",
                (plain[:160] + "…" if len(plain) > 160 else plain) or "no details")
    return code.group(1) if code else "Error", message.group(1)


def _is_reset(exc: Exception) -> bool:
    return isinstance(exc, (urllib3.exceptions.ProtocolError,
                            urllib3.exceptions.ReadTimeoutError)) or \
        isinstance(getattr(exc, "__context__", None), ConnectionResetError)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


def path_part(value: str) -> str:
    """A value quoted for use as one path segment (`/jobs/{job_id}`)."""
    if not value or value in (".", ".."):
        raise UsageError(f"invalid identifier {value!r}")
    return quote(value, safe="")
