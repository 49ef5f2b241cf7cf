"""What every handler shares: request parsing and validation, the handler decorator, pagination,
and the collaborators handlers work with (`ApiContext`). The caller and the one authorization
check are in `access`, the error family and its JSON shape in `errors`, page tokens in `paging`;
handlers import all of it from here.

A handler module defines plain functions decorated with `@endpoint("<name in api_config>")`:

    @endpoint("get_dataset")
    def get_dataset(request: Request, api: ApiContext) -> dict: ...

The decorator turns it into the Lambda handler `(event, context) -> response`: it checks the
event against the endpoint's spec in `api_config.yaml` (method, path parameters, query, body,
size), finds the caller in `event["requestContext"]["identity"]` (API Gateway fills it when the
method uses IAM authorization; the local runtime fills it from the request's SigV4 key), calls
the function, and maps what it returns or raises to the API Gateway proxy response
`{"statusCode", "headers", "body"}`. Errors have one shape, `{"error": {"code", "message"}}`;
500 is for bugs only, and those are logged with their traceback.

Collaborators come in through `ApiContext`: in Lambda it is built once per container from the
environment (`EDL_INSTANCE`); the local runtime and tests hand their own in with
`use_api_context()`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config

from edl import naming
from edl.api_config import ApiConfig, Endpoint, Field, get_api_config
from edl.config import Instance
from edl.core_resources.rest_api.access import Caller, authorize, caller_from_event
from edl.core_resources.rest_api.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    HttpError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Throttled,
    Unavailable,
    error_response,
    map_exception,
    response,
)
from edl.core_resources.rest_api.paging import PageTokens, page_token_key_from_ssm
from edl.errors import NamingError
from edl.utils.audit import AuditLog
from edl.utils.context import LakeContext
from edl.utils.grants import GrantStore
from edl.utils.metadata import plain

# Handlers, the local runtime and tests import these from here: the module is the handlers' one
# entry to what they share (errors, the caller, authorization and page tokens live beside it).
__all__ = [
    "S3_PRESIGN_CONFIG",
    "ApiContext",
    "BadRequest",
    "Caller",
    "Conflict",
    "Forbidden",
    "HttpError",
    "MethodNotAllowed",
    "NotFound",
    "PageTokens",
    "PayloadTooLarge",
    "Request",
    "Throttled",
    "Unavailable",
    "api_context",
    "authorize",
    "caller_from_event",
    "endpoint",
    "error_response",
    "load_api_config",
    "map_exception",
    "module_handler",
    "page_token_key_from_ssm",
    "parse_request",
    "plain",
    "read_page",
    "response",
    "use_api_context",
]

log = logging.getLogger("edl.rest_api")

PAGE_TOKEN_PARAMETER_ENV = "EDL_PAGE_TOKEN_PARAMETER"
# Presigned upload URLs: SigV4 (required by KMS-encrypted buckets) and path-style, which works
# for bucket names with dots and against the local cloud's endpoint alike.
S3_PRESIGN_CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"})


def load_api_config() -> ApiConfig:
    """The endpoints (`api_config.yaml`), loaded once per process."""
    return get_api_config()


# -- collaborators -----------------------------------------------------------------------------

@dataclass
class ApiContext:
    """What handlers work with: the lake's metadata, and clients by region."""

    lake: LakeContext
    instance: Instance
    page_tokens: PageTokens
    client: Callable[[str, str | None], Any]   # (service, region or None) → boto3 client
    now: Callable[[], float] = time.time
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    @property
    def api(self) -> ApiConfig:
        return load_api_config()

    def jobs_table(self):
        return self.lake.metadata.table("jobs")

    def grants(self) -> GrantStore:
        return GrantStore(self.lake.metadata.table("grants"), clock=self.now)

    def audit(self) -> AuditLog:
        return AuditLog(self.lake.metadata.table("audit"), clock=self.now)

    @classmethod
    def from_environment(cls) -> ApiContext:
        """Lambda: the instance from `$EDL_INSTANCE`, AWS through the function's role, and the
        page-token key from the SSM parameter named by `$EDL_PAGE_TOKEN_PARAMETER`."""
        from edl.aws import AwsSessions

        lake = LakeContext.for_instance(None)
        instance = lake.config.instance(lake.instance)
        sessions = AwsSessions(instance)
        client = client_factory(sessions.user_session(), sessions.endpoint_url,
                                sessions.client_config, instance.default_region)

        parameter = os.environ.get(PAGE_TOKEN_PARAMETER_ENV) or \
            naming.page_token_parameter(instance.name)
        key = page_token_key_from_ssm(client("ssm", None), parameter)
        return cls(lake=lake, instance=instance, page_tokens=PageTokens(key), client=client)


def client_factory(session, endpoint_url: str | None, config,
                   default_region: str) -> Callable[[str, str | None], Any]:
    """`(service, region or None) -> client`, each made once; S3 clients presign the way the
    handlers' upload URLs need (SigV4, path-style)."""
    clients: dict[tuple[str, str | None], Any] = {}
    lock = threading.Lock()

    def client(service: str, region: str | None = None):
        with lock:
            if (service, region) not in clients:
                merged = config.merge(S3_PRESIGN_CONFIG) if service == "s3" else config
                clients[(service, region)] = session.client(
                    service, region_name=region or default_region,
                    endpoint_url=endpoint_url, config=merged)
            return clients[(service, region)]

    return client


_context: ApiContext | None = None
_context_lock = threading.Lock()


def use_api_context(context: ApiContext | None) -> None:
    """Hand in the collaborators (the local runtime, tests); None goes back to the environment."""
    global _context
    with _context_lock:
        _context = context


def api_context() -> ApiContext:
    global _context
    with _context_lock:
        if _context is None:
            _context = ApiContext.from_environment()
        return _context


# -- requests ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    endpoint: Endpoint
    caller: Caller
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]

    def dataset_name(self) -> str:
        return self.path["dataset"]


def parse_request(endpoint: Endpoint, event: dict, config: ApiConfig) -> Request:
    """Check the event against the endpoint's spec; every failure is a 4xx `HttpError`."""
    method = (event.get("httpMethod") or "").upper()
    if method != endpoint.method:
        raise MethodNotAllowed(f"{method or 'this method'} is not allowed on {endpoint.path} "
                               f"(use {endpoint.method})")
    caller = caller_from_event(event)
    path = _path_params(endpoint, event.get("pathParameters") or {})
    query = _query(endpoint, event.get("queryStringParameters") or {},
                   event.get("multiValueQueryStringParameters") or {})
    body = _body(endpoint, event, config.max_body_bytes)
    return Request(endpoint=endpoint, caller=caller, path=path, query=query, body=body)


def _path_params(endpoint: Endpoint, given: dict) -> dict[str, str]:
    names = [p.name for p in endpoint.path_params]
    if set(given) != set(names):
        raise BadRequest(f"path parameters {sorted(given)} do not match {endpoint.path}")
    values = {}
    for param in endpoint.path_params:
        value = given[param.name]
        if not isinstance(value, str):
            raise BadRequest(f"path parameter {param.name} must be text")
        if param.name == "dataset":
            try:
                naming.validate_dataset_name(value)
            except NamingError as exc:
                raise BadRequest(f"{exc.message}: {exc.hint}", code="invalid_name") from None
        elif param.pattern and not re.fullmatch(param.pattern, value):
            raise BadRequest(f"invalid {param.name} {value[:80]!r} ({param.description})")
        values[param.name] = value
    return values


def _query(endpoint: Endpoint, single: dict, multi: dict) -> dict[str, Any]:
    known = {f.name: f for f in endpoint.query}
    unknown = sorted(set(single) - set(known))
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}"
                         + (f" (known: {', '.join(known)})" if known else ""),
                         code="unknown_field")
    for name, values in multi.items():
        if isinstance(values, list) and len(values) > 1:
            raise BadRequest(f"query parameter {name} given more than once")
    return {name: _check_value(known[name], value, where="query parameter", text=True)
            for name, value in single.items()}


def _body(endpoint: Endpoint, event: dict, max_bytes: int) -> dict[str, Any]:
    raw = event.get("body")
    if not endpoint.body:
        if raw not in (None, "", "{}"):
            raise BadRequest(f"{endpoint.method} {endpoint.path} takes no body")
        return {}
    if raw is None or raw == "":
        if not any(f.required for f in endpoint.body):
            return {}   # every field optional (a reason to approve): no body is an empty one
        raise BadRequest("the request needs a JSON body", code="missing_body")
    if not isinstance(raw, str):
        raise BadRequest("the body must be JSON text")
    size = len(raw.encode("utf-8", "surrogatepass"))
    if event.get("isBase64Encoded"):
        size = len(raw) * 3 // 4
    if size > max_bytes:
        raise PayloadTooLarge(f"the body has {size} bytes; at most {max_bytes} are accepted")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("the body is not valid base64-encoded UTF-8") from None
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON ({str(exc)[:120]})",
                         code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    known = {f.name: f for f in endpoint.body}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)} (known: {', '.join(known)})",
                         code="unknown_field")
    missing = [f.name for f in endpoint.body if f.required and data.get(f.name) is None]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}", code="missing_field")
    return {name: _check_value(known[name], value, where="field")
            for name, value in data.items() if value is not None}


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _check_value(spec: Field, value: Any, *, where: str, text: bool = False) -> Any:
    label = f"{where} {spec.name}"
    if spec.type == "integer":
        if text:
            if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,9}", value):
                raise BadRequest(f"{label} must be an integer")
            value = int(value)
        elif not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"{label} must be an integer")
        if spec.minimum is not None and value < spec.minimum:
            raise BadRequest(f"{label} must be at least {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            raise BadRequest(f"{label} must be at most {spec.maximum}")
        return value
    if spec.type == "boolean":
        if text:
            if value not in ("true", "false"):
                raise BadRequest(f"{label} must be true or false")
            return value == "true"
        if not isinstance(value, bool):
            raise BadRequest(f"{label} must be true or false")
        return value
    if spec.type == "map":
        if not isinstance(value, dict):
            raise BadRequest(f"{label} must be a JSON object")
        for key, item in value.items():
            if not isinstance(item, str) or (spec.pattern and not re.fullmatch(spec.pattern, item)):
                raise BadRequest(f"{label}: the value of {key[:40]!r} is not valid "
                                 f"({spec.description})")
        return dict(value)
    if not isinstance(value, str):
        raise BadRequest(f"{label} must be a string")
    if spec.enum and value not in spec.enum:
        raise BadRequest(f"{label} must be one of {', '.join(spec.enum)}, not {value[:40]!r}")
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        raise BadRequest(f"{label} is not valid ({spec.description})")
    return value


# -- the handler decorator ---------------------------------------------------------------------

Handler = Callable[[Request, ApiContext], Any]


def endpoint(name: str) -> Callable[[Handler], Callable[[dict, Any], dict]]:
    """Make `(request, api) -> body | (status, body)` the Lambda handler of endpoint `name`."""
    spec = load_api_config().endpoint(name)

    def wrap(function: Handler) -> Callable[[dict, Any], dict]:
        @functools.wraps(function)
        def handler(event: dict, context: Any = None) -> dict:
            unit = f"{spec.method} {spec.path}"
            try:
                request = parse_request(spec, event or {}, load_api_config())
                result = function(request, api_context())
            except HttpError as exc:
                log.info("%s - %d %s: %s", unit, exc.status, exc.code, exc.message)
                return error_response(exc)
            except Exception as exc:
                mapped = map_exception(exc)
                if mapped is None:
                    log.exception("%s - internal error", unit)
                    return response(500, {"error": {
                        "code": "internal", "message": "internal error; it has been logged"}})
                log.info("%s - %d %s: %s", unit, mapped.status, mapped.code, mapped.message)
                return error_response(mapped)
            status, body = result if isinstance(result, tuple) else (200, result)
            return response(status, body)

        handler.endpoint = spec  # type: ignore[attr-defined]
        return handler

    return wrap


def module_handler(module: str) -> Callable[[dict, Any], dict]:
    """The Lambda entry point of a handler module (one function per module): it serves the
    module's endpoints, chosen by the event's resource path and method."""
    short = module.rsplit(".", 1)[-1]
    endpoints = [e for e in load_api_config().endpoints if e.module == short]

    def handler(event: dict, context: Any = None) -> dict:
        resource = (event or {}).get("resource") or ""
        method = ((event or {}).get("httpMethod") or "").upper()
        served = [e for e in endpoints if e.path == resource]
        for spec in served:
            if spec.method == method:
                return getattr(sys.modules[module], spec.function)(event, context)
        error = MethodNotAllowed(f"{method} is not allowed on {resource}") if served \
            else NotFound(f"no endpoint {resource!r}")
        return error_response(error)

    return handler


# -- pagination --------------------------------------------------------------------------------

def read_page(api: ApiContext, request: Request, scope: str,
              fetch: Callable[..., dict], key_names: tuple[str, ...]) -> tuple[list[dict], str | None]:
    """One page of a DynamoDB scan or query: `fetch(**kwargs)` is called with `Limit` and
    `ExclusiveStartKey` until the page is full or the listing ends. Returns the items and the
    signed token of the next page (None at the end)."""
    config = api.api
    limit = request.query.get("limit", config.page_size_default)
    limit = max(1, min(limit, config.page_size_max))
    token = request.query.get("next_token")
    start = api.page_tokens.decode(scope, token) if token else None
    if start is not None and set(start) != set(key_names):
        raise BadRequest("invalid page token", code="invalid_page_token")
    items: list[dict] = []
    while len(items) < limit:
        kwargs: dict[str, Any] = {"Limit": limit - len(items)}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = fetch(**kwargs)
        items.extend(page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    next_token = api.page_tokens.encode(scope, {k: str(start[k]) for k in key_names}) \
        if start else None
    return items, next_token
