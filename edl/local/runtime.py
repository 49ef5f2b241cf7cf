"""The local runtime: the one long-running process behind `edl local start`.

`python -m edl.local.runtime --port N` starts a `LocalRuntime`, which holds a list of services,
each with a name, a URL, `start()` and `stop()`, all listening on 127.0.0.1 only. moto in server
mode is the first ("aws"); the REST API and the job runner join the same process as services of
their own. Once every service is up, the runtime writes its ready file (pid, start time and the
services' URLs) for `control.start()` to find; it then waits for SIGTERM or SIGINT, stops the
services in reverse order, removes the local cloud's session files and exits 0.

The runtime neither bootstraps nor writes the state file: `control.start()` does both once the
endpoint answers, so a state file always describes a lake that is ready for its users.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edl import paths

LOOPBACK = "127.0.0.1"

log = logging.getLogger("edl.local.runtime")


@dataclass(frozen=True)
class LocalFiles:
    """The local cloud's files in the EDL home. All but the log live only while it runs."""

    pid: Path
    log: Path
    ready: Path
    state: Path
    credentials: Path
    aws_config: Path

    @classmethod
    def current(cls) -> "LocalFiles":
        """The files of the EDL home this process uses (`$EDL_HOME`, see `edl.paths`)."""
        folder = paths.local_dir()
        return cls(
            pid=folder / "runtime.pid",
            log=folder / "runtime.log",
            ready=folder / "runtime.json",
            state=paths.local_state_file(),
            credentials=paths.local_credentials_file(),
            aws_config=paths.local_config_file(),
        )

    @property
    def folder(self) -> Path:
        return self.pid.parent

    def remove_session_files(self) -> None:
        """Remove what describes a running lake; its keys died with moto's memory. The log stays."""
        for path in (self.state, self.credentials, self.aws_config, self.ready, self.pid):
            path.unlink(missing_ok=True)

    def read_pid(self) -> int | None:
        try:
            return int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None


class Service(Protocol):
    """One part of the local runtime. `start()` returns once the service accepts requests."""

    name: str

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class MotoService:
    """moto in server mode: every AWS service on one port, dispatched by the request's signature."""

    name = "aws"

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        self.host = host
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        # moto builds some URLs it hands out (Lambda, Batch) from MOTO_PORT, as its own server does.
        os.environ.setdefault("MOTO_PORT", str(self.port))
        app = DomainDispatcherApplication(create_backend_app)
        # make_server binds here, so a taken port fails now rather than in the serving thread.
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        self._configure()

    def _configure(self) -> None:
        """Lambda functions are never run by moto here: the local runtime runs the handlers."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/config",
            data=json.dumps({"lambda": {"use_docker": False}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server.server_close()
        self._server = None


def default_services(port: int) -> list[Service]:
    """The services of `edl local start`, in start order."""
    return [MotoService(port)]


class LocalRuntime:
    """Starts its services, announces them, and stops them on SIGTERM/SIGINT."""

    def __init__(self, services: list[Service], files: LocalFiles | None = None) -> None:
        self.services = services
        self.files = files or LocalFiles.current()
        self._stopping = threading.Event()
        self._started: list[Service] = []

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        self._stopping.set()

    def start(self) -> None:
        for service in self.services:
            log.info("%s - starting", service.name)
            service.start()
            self._started.append(service)
            log.info("%s - listening on %s", service.name, service.url)

    def stop(self) -> None:
        while self._started:
            service = self._started.pop()
            log.info("%s - stopping", service.name)
            try:
                service.stop()
            except Exception:  # one service failing to stop must not keep the others running
                log.exception("%s - failed to stop", service.name)

    def write_ready_file(self) -> None:
        ready = {
            "pid": os.getpid(),
            "started_at": time.time(),
            "services": {service.name: service.url for service in self.services},
        }
        self.files.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.files.ready.with_suffix(".tmp")
        tmp.write_text(json.dumps(ready, indent=2))
        tmp.replace(self.files.ready)

    def cleanup(self) -> None:
        """Remove the session files, unless they have passed to another runtime meanwhile."""
        if self.files.read_pid() in (None, os.getpid()):
            self.files.remove_session_files()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        try:
            self.start()
            self.write_ready_file()
            log.info("runtime - ready (pid %s)", os.getpid())
            # A timed wait keeps the main thread where signal handlers can run.
            while not self._stopping.wait(0.5):
                pass
            log.info("runtime - stop requested")
        finally:
            self.stop()
            self.cleanup()
        log.info("runtime - stopped")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edl.local.runtime",
                                     description="EDL's local cloud runtime (use `edl local start`)")
    parser.add_argument("--port", type=int, required=True, help="port of the AWS endpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One line per request would make the log grow without bound during a long session.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return LocalRuntime(default_services(args.port)).run()


if __name__ == "__main__":
    sys.exit(main())
