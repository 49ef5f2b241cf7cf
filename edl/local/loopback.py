"""Only the machine's own clients may use the local cloud: the Host check, and no CORS.

The runtime's servers listen on 127.0.0.1, yet a web page open in a browser on the same machine
can still reach them. Cross-origin, a page may send requests but not read the answers unless the
server allows it with CORS headers - and moto allows every origin (flask-cors on every backend).
Through DNS rebinding, a page can also make its own host name resolve to 127.0.0.1 and then read
everything as same-origin; its requests still carry its own name in the `Host` header.

`LoopbackOnly` sits outermost in front of each of the runtime's servers (the AWS endpoint and the
REST API) and closes both ways:

- a request whose `Host` is not a loopback name (`127.0.0.1`, `localhost` or a name under it,
  which browsers resolve to the loopback themselves, `[::1]`) with the server's own port is
  refused with 403 before anything runs;
- no `Access-Control-*` header leaves the server: no client of the local cloud is a web page, so
  none needs CORS, and without it no page can read an answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from xml.sax.saxutils import escape

log = logging.getLogger("edl.local.loopback")

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_CORS_PREFIX = "access-control-"

# (code, message) -> (content type, body) of the refusal, in the shape the server's clients read.
ErrorBody = Callable[[str, str], tuple[str, bytes]]


def xml_error(code: str, message: str) -> tuple[str, bytes]:
    """An AWS-style XML error, as the AWS SDKs parse from the local endpoint."""
    return "application/xml", (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error>").encode()


def json_error(code: str, message: str) -> tuple[str, bytes]:
    """The REST API's one error shape."""
    return "application/json", json.dumps({"error": {"code": code, "message": message}}).encode()


def is_loopback_host(host: str, port: int) -> bool:
    """Whether a `Host` header names the loopback and this port: `127.0.0.1:4566`, `localhost:4566`,
    `bucket.localhost:4566`, `[::1]:4566`. Without a port it means port 80."""
    value = host.strip().lower()
    if value.startswith("["):  # an IPv6 literal: [::1]:4566
        literal, _, rest = value.partition("]")
        name, port_text = literal + "]", rest
        if port_text and not port_text.startswith(":"):
            return False
        port_text = port_text[1:]
    else:
        name, _, port_text = value.partition(":")
    if (port_text or "80") != str(port):
        return False
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


class LoopbackOnly:
    """WSGI middleware: refuses requests not addressed to the loopback, strips CORS headers."""

    def __init__(self, app, port: Callable[[], int], error_body: ErrorBody = xml_error) -> None:
        self.app = app
        self.port = port          # the port the server listens on, known once it is bound
        self.error_body = error_body

    def __call__(self, environ: dict, start_response):
        host = environ.get("HTTP_HOST", "")
        if not is_loopback_host(host, self.port()):
            log.warning("loopback - refused a request for Host %r", host[:100])
            content_type, body = self.error_body(
                "ForbiddenHost",
                f"the local cloud answers only requests addressed to 127.0.0.1:{self.port()} "
                f"(or localhost), not to Host {host[:100]!r}; use the endpoint in "
                "`edl local status`")
            start_response("403 Forbidden", [("Content-Type", content_type),
                                             ("Content-Length", str(len(body)))])
            return [body]

        def without_cors(status: str, headers: list[tuple[str, str]], exc_info=None):
            kept = [(name, value) for name, value in headers
                    if not name.lower().startswith(_CORS_PREFIX)]
            return start_response(status, kept, exc_info)

        return self.app(environ, without_cors)
