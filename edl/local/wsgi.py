"""Serving a WSGI app from a thread of the local runtime, on the loopback.

The socket is bound here and handed to werkzeug: asked to bind a taken port itself, werkzeug
prints a message and exits the whole process instead of raising.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer

log = logging.getLogger("edl.local.runtime")


def _listen(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        listener.bind((host, port))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


class ServerThread:
    """One threaded werkzeug server in a daemon thread. `port` is the bound one once started."""

    def __init__(self, name: str, app: Any, host: str, port: int, *,
                 request_handler: Any = None, any_port_if_taken: bool = False) -> None:
        self.name = name
        self.app = app
        self.host = host
        self.port = port
        self.request_handler = request_handler
        self.any_port_if_taken = any_port_if_taken
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        from werkzeug.serving import make_server

        try:
            listener = _listen(self.host, self.port)
        except OSError as exc:
            if not self.any_port_if_taken or exc.errno != errno.EADDRINUSE:
                raise
            log.warning("%s - port %s is taken; listening on another one", self.name, self.port)
            listener = _listen(self.host, 0)
        with listener:  # werkzeug serves a duplicate of it
            self.port = listener.getsockname()[1]
            extra = {"request_handler": self.request_handler} if self.request_handler else {}
            server = make_server(self.host, self.port, self.app, threaded=True,
                                 fd=listener.fileno(), **extra)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=self.name,
                                        daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server.server_close()
        self._server = None
