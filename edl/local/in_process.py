"""The runtime's own AWS calls reach its moto app without a socket.

The runtime process hosts the AWS endpoint and, beside it, the REST API's handlers, the job
runner and the sweep, which call that endpoint through boto3 like any client. Over HTTP each such
call costs a connection's worth of work on both sides (about 4.5 ms on the development machine,
against 2 ms for the call itself), and a credential vend makes four. `serve_in_process(url, app)`
hands requests addressed to `url` from this process straight to the WSGI app that the endpoint
serves - the same object the server thread calls, outermost middleware first - so the loopback
check, the presigned-URL and copy-source checks, moto's IAM enforcement and the state journal
see these requests exactly as they see one from the socket. Only the socket is skipped.

It works as moto's own in-process mock does: a `before-send` handler in botocore's built-in
handlers, so every botocore session made after `install()` has it (and boto3's default session,
if one was made before); a request for any other URL
(or made in another process: Spark's Python workers, `edl-api`) goes over HTTP as before.
`EDL_LOCAL_IN_PROCESS=0` switches it off, for a packet capture of everything.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

_apps: dict[str, Any] = {}      # "http://127.0.0.1:4566" -> the WSGI app served there
_lock = threading.Lock()
_installed = False
_PRESERVED_NAMES = "moto.preserved_header_names"   # moto keeps x-amz-meta-a_b spelled so


def enabled() -> bool:
    return os.environ.get("EDL_LOCAL_IN_PROCESS", "1") != "0"


def install() -> None:
    """Give every botocore session made from now on the route (it serves nothing until
    `serve_in_process`): call it before making the clients that should use it."""
    if not enabled():
        return
    with _lock:
        _install()


def serve_in_process(url: str, app: Any) -> None:
    """From now on, this process's boto3 requests for `url` go to `app` directly (from the
    sessions made after `install()`)."""
    if not enabled():
        return
    with _lock:
        _install()
        _apps[url.rstrip("/")] = app


def withdraw(url: str) -> None:
    with _lock:
        _apps.pop(url.rstrip("/"), None)


def _install() -> None:
    global _installed
    if _installed:
        return
    import boto3
    from botocore.handlers import BUILTIN_HANDLERS

    BUILTIN_HANDLERS.append(("before-send", dispatch))
    if boto3.DEFAULT_SESSION is not None:   # made before: `boto3.client()` uses it
        boto3.DEFAULT_SESSION.events.register("before-send", dispatch)
    _installed = True


def dispatch(request: Any, **_: Any) -> Any:
    """botocore's `before-send`: the response of the app serving the request's URL, or None
    (botocore then sends it over HTTP)."""
    if not _apps:
        return None
    parts = urlsplit(request.url)
    app = _apps.get(f"{parts.scheme}://{parts.netloc}")
    if app is None:
        return None
    return _call(app, request, parts)


def _call(app: Any, request: Any, parts: Any) -> Any:
    from botocore.awsrequest import AWSResponse, HeadersDict

    body = _body_bytes(request.body)
    raw_uri = parts.path + (f"?{parts.query}" if parts.query else "")
    host, _, port = parts.netloc.rpartition(":")
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0), "wsgi.url_scheme": parts.scheme,
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "REQUEST_METHOD": request.method, "SCRIPT_NAME": "",
        "PATH_INFO": _wsgi_str(unquote(parts.path or "/")),
        "QUERY_STRING": _wsgi_str(parts.query),
        "REQUEST_URI": _wsgi_str(raw_uri), "RAW_URI": _wsgi_str(raw_uri),
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": 0,
        "SERVER_NAME": host, "SERVER_PORT": port, "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": parts.netloc, "CONTENT_LENGTH": str(len(body)),
    }
    preserved: dict[str, str] = {}
    for name, value in request.headers.items():
        name = name.decode() if isinstance(name, bytes) else name
        value = value.decode() if isinstance(value, bytes) else value
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        if "_" in name:   # as moto's request handler does: only S3 metadata keeps them
            if not name.lower().startswith("x-amz-meta-"):
                continue
            preserved[key] = name
        if key in ("CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
            continue      # the whole body is handed over, with its own length
        environ[key] = f"{environ[key]},{value}" if key in environ and key != "HTTP_HOST" \
            else value
    environ[_PRESERVED_NAMES] = preserved

    status: list[str] = []
    headers = HeadersDict()

    def start_response(line: str, header_list: list[tuple[str, str]], exc_info: Any = None):
        status[:] = [line]
        headers.clear()
        for name, value in header_list:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return lambda _data: None

    chunks = app(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return AWSResponse(request.url, int(status[0].split(" ", 1)[0]), headers,
                       _RawResponse(content))


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    data = body.read()   # a file or botocore's aws-chunked wrapper: what the socket would get
    return data.encode() if isinstance(data, str) else data


def _wsgi_str(text: str) -> str:
    """WSGI's native strings: the UTF-8 bytes read as latin-1, as werkzeug's server makes them."""
    return text.encode("utf-8").decode("latin-1")


class _RawResponse(io.BytesIO):
    """What botocore reads a response body from: `read()` for streams, `stream()` otherwise."""

    def stream(self, amt: int | None = None, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(amt or 65536):
            yield chunk
