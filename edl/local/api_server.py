"""The REST API on the local cloud: API Gateway's part, played by a small HTTP server.

`ApiService` listens on 127.0.0.1 (by default the AWS endpoint's port + 1) and serves
`http://127.0.0.1:<port>/<stage>`, the same shape as API Gateway's invoke URL; requests without the
stage prefix are served too. A request whose `Host` is not the loopback is refused (403) before
anything else, and no CORS header is sent (`loopback.py`: DNS rebinding and web pages). For every
other request it does what API Gateway does for a Lambda proxy integration with IAM
authorization, in this order:

1. route by `api_config.yaml`: an unknown path is 404, a known path with another method 405;
2. refuse a body over `max_body_bytes` (413) before reading it;
3. verify the SigV4 signature against the local cloud's IAM (`api_auth.py`): 403 otherwise;
4. build the REST proxy event (resource, path, method, headers, query and path parameters, body,
   `requestContext.identity` of the verified caller) and call the endpoint's handler
   `edl.core_resources.rest_api.<module>:<function>(event, context)` in-process;
5. answer with the handler's `{"statusCode", "headers", "body"}`.

Errors the server itself produces have the API's one shape, `{"error": {"code", "message"}}`,
plus API Gateway's `x-amzn-ErrorType` header. A handler module that does not exist yet is 501; a
handler that raises or returns something that is not a proxy response is 502, as API Gateway
answers for a failed Lambda. `GET /openapi.json` serves the API's OpenAPI document, unsigned.

The handlers' own AWS calls are made as the API's Lambda role (`api_context.py`), installed by the
`prepare_handlers` hook before a handler runs.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from edl import naming
from edl.api_config import ApiConfig, Endpoint, get_api_config
from edl.config import Instance
from edl.local.api_auth import (
    AuthError,
    Caller,
    KeyStore,
    MotoKeyStore,
    SignedRequest,
    SigV4Verifier,
)
from edl.local.loopback import LoopbackOnly, json_error
from edl.local.wsgi import ServerThread

log = logging.getLogger("edl.local.api")

HANDLER_PACKAGE = "edl.core_resources.rest_api"
OPENAPI_MODULE = f"{HANDLER_PACKAGE}.openapi"
LOOPBACK = "127.0.0.1"
API_GATEWAY_TIMEOUT_SECONDS = 29

Handler = Callable[[dict, Any], dict]


class HandlerNotFound(Exception):
    """The handler's module is not there (yet)."""


# -- handlers -----------------------------------------------------------------------------------

class HandlerResolver:
    """Imports `module:function` under `edl.core_resources.rest_api` on first use.

    `overrides` (spec → callable) stand in for handlers, for tests."""

    def __init__(self, package: str = HANDLER_PACKAGE,
                 overrides: Mapping[str, Handler] | None = None) -> None:
        self.package = package
        self.overrides = dict(overrides or {})
        self._cache: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def resolve(self, spec: str) -> Handler:
        if spec in self.overrides:
            return self.overrides[spec]
        with self._lock:
            if spec not in self._cache:
                self._cache[spec] = self._import(spec)
            return self._cache[spec]

    def _import(self, spec: str) -> Handler:
        module_name, _, function = spec.partition(":")
        qualified = f"{self.package}.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            # Only the handler module itself missing means "not implemented"; a module it
            # imports missing is a bug and surfaces as such.
            if exc.name in (qualified, self.package):
                raise HandlerNotFound(f"handler module {qualified} does not exist") from None
            raise
        handler = getattr(module, function, None)
        if not callable(handler):
            raise HandlerNotFound(f"{qualified} has no handler {function!r}")
        return handler


@dataclass(frozen=True)
class LambdaContext:
    """The parts of Lambda's context object handlers may read."""

    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    deadline: float
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


# -- the WSGI application ----------------------------------------------------------------------

def _json_response(start_response, status: int, body: Any,
                   headers: Mapping[str, str] | None = None) -> list[bytes]:
    payload = json.dumps(body).encode()
    _start(start_response, status, {"Content-Type": "application/json", **(headers or {})},
           payload)
    return [payload]


def _start(start_response, status: int, headers: Mapping[str, str], payload: bytes) -> None:
    from werkzeug.http import HTTP_STATUS_CODES

    reason = HTTP_STATUS_CODES.get(status, "Unknown")
    pairs = [(k, str(v)) for k, v in headers.items() if k.lower() != "content-length"]
    pairs.append(("Content-Length", str(len(payload))))
    start_response(f"{status} {reason}", pairs)


def _error(start_response, status: int, code: str, message: str,
           request_id: str) -> list[bytes]:
    return _json_response(start_response, status, {"error": {"code": code, "message": message}},
                          {"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id})


class ApiApp:
    """The WSGI application: routes, authenticates, builds the event, calls the handler."""

    def __init__(self, api: ApiConfig, instance: Instance, verifier: SigV4Verifier,
                 handlers: HandlerResolver, *,
                 prepare_handlers: Callable[[], None] | None = None,
                 after_write: Callable[[], None] | None = None,
                 extra_routes: Mapping[str, Callable[[], Any]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.after_write = after_write
        self.instance = instance
        self.verifier = verifier
        self.handlers = handlers
        self.prepare_handlers = prepare_handlers
        self.extra_routes = dict(extra_routes or {})
        self.clock = clock
        self.api_id = f"local{instance.name}"[:10]

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        from werkzeug.exceptions import RequestEntityTooLarge
        from werkzeug.wrappers import Request

        request = Request(environ)
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        path = self._strip_stage(request.path)
        method = request.method.upper()
        try:
            if method == "GET" and path in self.extra_routes:
                return _json_response(start_response, 200, self.extra_routes[path]())
            if method == "GET" and path == "/openapi.json":
                return self._openapi(start_response, request, request_id)
            endpoint, params, known = self.api.route(method, path)
            if endpoint is None:
                if known:
                    return _error(start_response, 405, "method_not_allowed",
                                  f"{method} is not allowed on {path}", request_id)
                return _error(start_response, 404, "not_found", f"no resource at {path}",
                              request_id)
            request.max_content_length = self.api.max_body_bytes
            try:
                body = request.get_data(cache=True)
            except RequestEntityTooLarge:
                return _error(start_response, 413, "payload_too_large",
                              f"the body is larger than {self.api.max_body_bytes} bytes",
                              request_id)
            try:
                caller = self.verifier.verify(self._signed_request(request, environ, body))
            except AuthError as exc:
                log.info("api - %s %s refused: %s", method, path, exc.code)
                return _error(start_response, exc.status, exc.code, exc.message, request_id)
            return self._invoke(start_response, endpoint, params, request, path, body, caller,
                                request_id)
        finally:
            log.debug("api - %s %s in %.1f ms", method, path, (time.monotonic() - started) * 1e3)

    def _strip_stage(self, path: str) -> str:
        prefix = f"/{self.api.stage}"
        if path == prefix:
            return "/"
        if path.startswith(prefix + "/"):
            return path[len(prefix):]
        return path

    @staticmethod
    def _signed_request(request, environ: dict, body: bytes) -> SignedRequest:
        # The signature covers the path and query exactly as the client sent them.
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if not raw:
            raw = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
            if environ.get("QUERY_STRING"):
                raw += "?" + environ["QUERY_STRING"]
        host = request.headers.get("Host") or environ.get("SERVER_NAME", LOOPBACK)
        return SignedRequest(method=request.method, url=f"http://{host}{raw}",
                             headers=dict(request.headers), body=body,
                             source_ip=request.remote_addr or LOOPBACK)

    def _openapi(self, start_response, request, request_id: str) -> list[bytes]:
        """The API's OpenAPI document, with this server as its one server."""
        try:
            module = importlib.import_module(OPENAPI_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name != OPENAPI_MODULE:
                raise
            return _error(start_response, 501, "not_implemented",
                          "the OpenAPI document is not available yet", request_id)
        document = dict(module.generate(self.api))
        document["servers"] = [{"url": f"http://{request.host}/{self.api.stage}",
                                "description": "the local cloud's REST API"}]
        return _json_response(start_response, 200, document)

    def event(self, endpoint: Endpoint, params: dict[str, str], request, path: str, body: bytes,
              caller: Caller, request_id: str) -> dict:
        """The REST API proxy event API Gateway builds for this request."""
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        query = {k: v[-1] for k, v in request.args.lists()}
        multi_query = {k: list(v) for k, v in request.args.lists()}
        now = self.clock()
        text, base64_encoded = None, False
        if body:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:  # API Gateway passes binary bodies base64-encoded
                text, base64_encoded = base64.b64encode(body).decode(), True
        return {
            "resource": endpoint.path,
            "path": path,
            "httpMethod": endpoint.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "body": text,
            "isBase64Encoded": base64_encoded,
            "requestContext": {
                "accountId": self.instance.account_id,
                "apiId": self.api_id,
                "resourceId": endpoint.name,
                "resourcePath": endpoint.path,
                "httpMethod": endpoint.method,
                "path": f"/{self.api.stage}{path}",
                "stage": self.api.stage,
                "requestId": request_id,
                "extendedRequestId": request_id,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "requestTime": datetime.fromtimestamp(now, UTC).strftime(
                    "%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now * 1000),
                "domainName": request.host,
                "identity": caller.identity(),
            },
        }

    def _invoke(self, start_response, endpoint: Endpoint, params: dict[str, str], request,
                path: str, body: bytes, caller: Caller, request_id: str) -> list[bytes]:
        unit = f"{endpoint.method} {endpoint.path}"
        try:
            handler = self.handlers.resolve(endpoint.handler)
        except HandlerNotFound as exc:
            log.warning("api - %s: %s", unit, exc)
            return _error(start_response, 501, "not_implemented",
                          f"{endpoint.name} is not implemented yet ({exc})", request_id)
        event = self.event(endpoint, params, request, path, body, caller, request_id)
        context = LambdaContext(
            function_name=naming.api_function(self.instance.name, endpoint.module),
            aws_request_id=request_id,
            invoked_function_arn=(f"arn:aws:lambda:{self.instance.default_region}:"
                                  f"{self.instance.account_id}:function:"
                                  f"{naming.api_function(self.instance.name, endpoint.module)}"),
            deadline=time.time() + API_GATEWAY_TIMEOUT_SECONDS)
        started = time.monotonic()
        try:
            if self.prepare_handlers is not None:
                self.prepare_handlers()
            result = handler(event, context)
            status, headers, payload = self._proxy_response(result)
        except Exception as exc:
            log.exception("api - %s: the handler failed", unit)
            return _error(start_response, 502, "handler_failed",
                          f"the handler of {endpoint.name} failed: {type(exc).__name__}: {exc}",
                          request_id)
        elapsed = time.monotonic() - started
        if elapsed > API_GATEWAY_TIMEOUT_SECONDS:
            log.warning("api - %s took %.1f s; API Gateway would have timed out", unit, elapsed)
        log.info("api - %s %s -> %d as %s (%.0f ms)", endpoint.method, path, status,
                 caller.key.arn, elapsed * 1000)
        if self.after_write is not None and endpoint.method != "GET" and status < 300:
            self.after_write()  # e.g. a job was queued: the job runner looks at once
        _start(start_response, status, {"x-amzn-RequestId": request_id, **headers}, payload)
        return [payload]

    @staticmethod
    def _proxy_response(result: Any) -> tuple[int, dict[str, str], bytes]:
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
            raise TypeError(f"not an API Gateway proxy response: {str(result)[:200]!r}")
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(name)] = ", ".join(str(v) for v in values)
        body = result.get("body") or ""
        if not isinstance(body, str):
            raise TypeError(f"the body must be a string, not {type(body).__name__}")
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        return result["statusCode"], headers, payload


# -- the service -------------------------------------------------------------------------------

class ApiService:
    """The local runtime's REST API server ("api"), in a thread of the runtime process."""

    name = "api"

    def __init__(self, instance: Instance, port: int, *, host: str = LOOPBACK,
                 api: ApiConfig | None = None, keys: KeyStore | None = None,
                 handlers: HandlerResolver | None = None,
                 prepare_handlers: Callable[[], None] | None = None,
                 after_write: Callable[[], None] | None = None,
                 extra_routes: Mapping[str, Callable[[], Any]] | None = None,
                 any_port_if_taken: bool = False) -> None:
        self.instance = instance
        self.host = host
        self.port = port
        self.any_port_if_taken = any_port_if_taken
        self.api = api or get_api_config()
        self.app = ApiApp(
            self.api, instance,
            SigV4Verifier(keys or MotoKeyStore(instance.account_id), instance.default_region),
            handlers or HandlerResolver(), prepare_handlers=prepare_handlers,
            after_write=after_write, extra_routes=extra_routes)
        self._server: ServerThread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The invoke URL, shaped as API Gateway's: `<base>/<stage>`."""
        return f"{self.base_url}/{self.api.stage}"

    def start(self) -> None:
        # Outermost: only requests addressed to the loopback, and no CORS (see loopback.py).
        front = LoopbackOnly(self.app, lambda: self.port, error_body=json_error)
        self._server = ServerThread("api", front, self.host, self.port,
                                    any_port_if_taken=self.any_port_if_taken)
        # The preferred port (AWS port + 1) may be some client's ephemeral port; clients find
        # the API's URL in the state file, so with any_port_if_taken any port will do.
        self.port = self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
