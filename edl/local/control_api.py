"""moto's control API (`/moto-api/*`) behind a per-runtime secret.

moto serves, unauthenticated, a dump of its whole state with every secret key
(`/moto-api/data.json`), a reset of everything (`/moto-api/reset`), the switch of IAM enforcement
(`/moto-api/reset-auth`), its configuration, its request recorder and more. On the local cloud
any process of the machine - any user, any web page's requests - could otherwise read every key or
switch enforcement off, and the lake would be no lake.

So each runtime start draws a new secret (`new_secret`), written only its owner can read in the
EDL home (`edl.paths.local_control_secret_file()`, mode 0600), and `ControlApiGuard` wraps moto's
control-API backend itself - not a path prefix, so every way moto's dispatcher has of reaching that
backend is covered: a request without the header `X-Edl-Local-Secret` holding the secret gets 403.
EDL's own callers (the runtime's configuration, the health check of `control.py`, the bootstrap's
enforcement switch, tests) go through `call_control_api`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import urllib.request
from pathlib import Path

from edl import paths
from edl.local.loopback import xml_error

log = logging.getLogger("edl.local.control_api")

SECRET_HEADER = "X-Edl-Local-Secret"
_SECRET_ENVIRON = "HTTP_" + SECRET_HEADER.upper().replace("-", "_")
CONTROL_BACKENDS = ("moto_api",)  # moto's backend names start so: "moto_api", "moto_api._internal"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def write_secret(secret: str, path: Path | None = None) -> Path:
    """Keep the runtime's secret where only its owner can read it (0600)."""
    path = path or paths.local_control_secret_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.write_private(path, secret + "\n")
    return path


def read_secret(path: Path | None = None) -> str | None:
    """The running runtime's secret, or None when there is none (no runtime, or not ours)."""
    try:
        return (path or paths.local_control_secret_file()).read_text().strip() or None
    except OSError:
        return None


def is_control_backend(service: str) -> bool:
    return str(service).startswith(CONTROL_BACKENDS)


class ControlApiGuard:
    """WSGI middleware around moto's control-API backend: the secret, or 403."""

    def __init__(self, app, secret: str) -> None:
        if not secret:
            raise ValueError("the control API needs a secret")
        self.app = app
        self._secret = secret.encode()

    def __call__(self, environ: dict, start_response):
        given = environ.get(_SECRET_ENVIRON, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("control-api - refused %s %s without the secret",
                        environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")[:100])
            content_type, body = xml_error(
                "AccessDenied",
                f"moto's control API needs the header {SECRET_HEADER} with the local runtime's "
                "secret (in the EDL home: local/control-secret)")
            start_response("403 Forbidden", [("Content-Type", content_type),
                                             ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)


def call_control_api(endpoint_url: str, path: str, secret: str | None, *,
                     body: bytes | None = None, content_type: str = "application/json",
                     timeout: float = 10) -> bytes:
    """`POST` (with a body) or `GET` `/moto-api/<path>` with the secret; returns the answer.

    `secret=None` sends none: for a plain moto server (tests) that has no guard."""
    headers = {"Content-Type": content_type} if body is not None else {}
    if secret:
        headers[SECRET_HEADER] = secret
    request = urllib.request.Request(f"{endpoint_url}/moto-api/{path}", data=body,
                                     headers=headers, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()
