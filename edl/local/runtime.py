"""The local runtime: the one long-running process behind `edl local start`.

`python -m edl.local.runtime --port N` starts a `LocalRuntime`, which holds a list of services,
each with a name, a URL, `start()` and `stop()`, all listening on 127.0.0.1 only. moto in server
mode is the first ("aws"); the REST API ("api", `api_server.py`, on the next port) and the job
runner ("jobs", `job_runner.py`, its status served by the API server) join the same process.
The AWS endpoint draws a new secret for moto's control API at every start and writes it, 0600,
to the EDL home (`control_api.py`). Once every service is up, the runtime writes its ready file
(pid, start time and the services' URLs) for `control.start()` to find; it then waits for
SIGTERM or SIGINT, stops the services in reverse order, removes the local cloud's session files
(the secret with them) and exits 0.

The runtime neither bootstraps nor writes the state file: `control.start()` does both once the
endpoint answers, so a state file always describes a lake that is ready for its users.

The lake itself lives in the state folder (`--state`, default `edl.paths.local_state_dir()`;
`edl.local.state`): moto's service loads it before its port opens and journals every write to
it; `--ephemeral` keeps it in memory only. A state folder that cannot be used stops the start
with exit code 2 and the reason in `paths.local_runtime_error_file()`.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edl import naming, paths
from edl.local import in_process
from edl.local.state.store import LakeState, LoadReport, LocalStateError, has_lake
from edl.local.wsgi import ServerThread

LOOPBACK = "127.0.0.1"
JOBS_STATUS_PATH = "/_local/jobs"
LAMBDAS_STATUS_PATH = "/_local/lambdas"
# The runtime acts as the platform admin (the local profile `admin`), whatever identity the shell
# that started it had.
_CALLER_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "AWS_PROFILE", "AWS_DEFAULT_PROFILE")

log = logging.getLogger("edl.local.runtime")


@dataclass(frozen=True)
class LocalFiles:
    """The local cloud's files in the EDL home. The pid, ready and state files live only while
    it runs; the log stays, and so do the profiles while their lake is kept."""

    pid: Path
    log: Path
    ready: Path
    state: Path
    credentials: Path
    aws_config: Path
    control_secret: Path

    @classmethod
    def current(cls) -> LocalFiles:
        """The files of the EDL home this process uses (`$EDL_HOME`, see `edl.paths`)."""
        folder = paths.local_dir()
        return cls(
            pid=folder / "runtime.pid",
            log=folder / "runtime.log",
            ready=folder / "runtime.json",
            state=paths.local_state_file(),
            credentials=paths.local_credentials_file(),
            aws_config=paths.local_config_file(),
            control_secret=paths.local_control_secret_file(),
        )

    @property
    def folder(self) -> Path:
        return self.pid.parent

    def remove_session_files(self) -> None:
        """Remove what describes a running lake. The log stays, and so do the users' profiles
        while the lake they belong to is kept (`edl.local.state`): their keys are in it."""
        kept = has_lake(paths.local_state_dir())
        for path in (self.state, self.credentials, self.aws_config, self.control_secret,
                     self.ready, self.pid):
            if not (kept and path in (self.credentials, self.aws_config)):
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
    """moto in server mode: every AWS service on one port, dispatched by the request's signature.

    In front of moto, outermost first: requests not addressed to the loopback are refused and
    CORS headers removed (`loopback.py`); presigned URLs are verified (`presigned.py`); a copy
    needs read access to its source (`copy_source.py`). Inside moto's dispatcher, its control-API
    backend needs this runtime's secret (`control_api.py`), its STS backend refuses what AWS
    refuses and moto does not (`sts_guard.py`, which also ends the sessions of a deleted role, in
    front of everything), and its Athena backend has EDL's local Athena in front, which answers
    the query calls with real results (`edl.local.athena`). The secret is drawn at every start
    and, given `secret_file`, written there (0600) for EDL's other commands.
    """

    name = "aws"

    def __init__(self, port: int, host: str = LOOPBACK, account_id: str | None = None,
                 secret_file: Path | None = None, state: LakeState | None = None,
                 on_jobs_write: Callable[[], None] | None = None,
                 jobs_table: str = "") -> None:
        self.host = host
        self.port = port
        self.account_id = account_id or os.environ.get("MOTO_ACCOUNT_ID", "123456789012")
        self.secret_file = secret_file
        self.secret = ""
        self.state = state  # None: an ephemeral lake, in memory only
        self.on_jobs_write = on_jobs_write   # a job item was written (wake the job runner)
        self.jobs_table = jobs_table
        self.load_report: LoadReport | None = None
        self._server: ServerThread | None = None
        self._athena: Any = None  # edl.local.athena.service.LocalAthena, while started

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
        # moto builds some URLs it hands out (Lambda, Batch) from MOTO_PORT, as its own server does.
        os.environ.setdefault("MOTO_PORT", str(self.port))
        from edl.local import control_api
        from edl.local.api_auth import MotoKeyStore
        from edl.local.athena.api import AthenaApi
        from edl.local.athena.service import LocalAthena
        from edl.local.copy_source import CopySourceCheck
        from edl.local.loopback import LoopbackOnly
        from edl.local.presigned import PresignedUrls
        from edl.local.sts_guard import AssumeRoleGuard, CurrentSessionsOnly

        in_process.install()   # before any client of this process is made (the local Athena's)
        self.secret = control_api.new_secret()
        if self.secret_file is not None:
            control_api.write_secret(self.secret, self.secret_file)
        athena = self._athena = LocalAthena(lambda: self.url, self.account_id)

        _lighten_moto()

        def backend_app(service: str):
            app = create_backend_app(service)  # type: ignore[arg-type]  # moto types it as a Literal
            # moto's server turns on Flask's debug mode, whose request hooks cost every call and
            # whose error pages are not for a service: a failed call is a plain 500.
            app.debug = False
            if control_api.is_control_backend(service):
                return control_api.ControlApiGuard(app, self.secret)
            if service == "sts":
                return AssumeRoleGuard(app)
            if service == "athena":
                return AthenaApi(app, athena)
            return app

        moto_app: Any = _moto_dispatcher(backend_app)
        if self.state is not None:  # the saved lake is loaded before the port opens
            self.load_report = self.state.load(moto_app)
            moto_app = self.state.wrap(moto_app)
        keys = MotoKeyStore(self.account_id)
        # moto cannot authenticate presigned URLs under IAM enforcement; the shim does it.
        app: Any = CurrentSessionsOnly(PresignedUrls(CopySourceCheck(moto_app, keys), keys))
        if self.on_jobs_write is not None:
            from edl.local.job_runner import WakeOnJobWrite

            app = WakeOnJobWrite(app, self.jobs_table, self.on_jobs_write)
        # Binds now, so a taken port fails here rather than in the serving thread.
        served = LoopbackOnly(app, lambda: self.port)
        self._server = ServerThread("moto", served, self.host, self.port,
                                    request_handler=MotoRequestHandler)
        self.port = self._server.start()
        # The runtime's own clients (API handlers, jobs, sweep) skip the socket, nothing else.
        in_process.serve_in_process(self.url, served)
        self._configure()

    def _configure(self) -> None:
        """Lambda functions are never run by moto here: the local runtime runs the handlers."""
        from edl.local.control_api import call_control_api

        call_control_api(self.url, "config", self.secret,
                         body=json.dumps({"lambda": {"use_docker": False}}).encode())

    def stop(self) -> None:
        if self._server is not None:
            in_process.withdraw(self.url)
            self._server.stop()
            self._server = None
        if self._athena is not None:  # running queries are cancelled: none outlives the port
            self._athena.close()
            self._athena = None
        if self.state is not None:
            self.state.close()
            self.state = None


# DynamoDB actions whose answers are items (and counts, keys, capacity): plain JSON already.
_ITEM_ACTIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem",
                           "DeleteItem", "TransactGetItems", "BatchWriteItem",
                           "TransactWriteItems"})


def _lighten_moto() -> None:
    """Two of moto's per-request costs that depend on nothing the request holds.

    - moto lists a response class's methods with `inspect.getmembers` on every request, to check
      that the action exists; the list depends on the class alone, so it is kept.
    - moto turns each answer into its wire form with a generic, model-driven serializer, which
      walks every attribute of every item against the service model: most of the cost of a
      DynamoDB read here (70% of a Query of a dataset's updates, measured). The answer of an
      item action is already DynamoDB's JSON (`DynamoResult`: attribute values as
      `{"S": …}`, `{"N": …}`, …), so it is written with `json.dumps`, binary values in base64
      as the serializer writes them, members the operation does not return left out; an answer
      holding anything else (a datetime, say) goes through moto's serializer as before.
      `tests/functional/test_local_dynamodb_answers.py` checks both give the same answers."""
    from moto.core import responses
    from moto.dynamodb import responses as dynamodb

    if not hasattr(responses.method_names_from_class, "cache_info"):
        responses.method_names_from_class = functools.cache(
            responses.method_names_from_class)
    handler: Any = dynamodb.DynamoHandler
    if getattr(handler.serialized, "edl_fast", False):
        return
    generic = handler.serialized
    members: dict[str, frozenset[str]] = {}

    def output_members(action: str) -> frozenset[str]:
        if action not in members:
            model = responses.get_service_model("dynamodb").operation_model(action)
            shape = model.output_shape
            members[action] = frozenset(shape.members) if shape is not None else frozenset()
        return members[action]

    def serialized(self, action_result):
        action = self._get_action()
        result = action_result.result
        if action not in _ITEM_ACTIONS or not isinstance(action_result, dynamodb.DynamoResult) \
                or not isinstance(result, dict):
            return generic(self, action_result)
        wanted = output_members(action)
        try:
            body = json.dumps({k: v for k, v in result.items() if k in wanted and v is not None},
                              default=_dynamodb_json)
        except TypeError:
            return generic(self, action_result)
        return 200, {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}, body

    serialized.edl_fast = True  # type: ignore[attr-defined]
    serialized.edl_generic = generic  # type: ignore[attr-defined]  # moto's own, for tests
    handler.serialized = serialized


def _dynamodb_json(value: Any) -> str:
    """Binary attribute values as DynamoDB's JSON has them (base64); nothing else."""
    import base64

    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"not DynamoDB JSON: {type(value).__name__}")


def _moto_dispatcher(create_app: Any) -> Any:
    """moto's dispatcher by service, less one cost: to find the backend of a request's service
    it lists moto's package folder (some 200 `isdir` calls) and then tries some 300 URL patterns,
    on every request. Its answer depends on the service's host name only, so it is kept."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    known: dict[str | None, Any] = {}

    class Dispatcher(DomainDispatcherApplication):
        def get_backend_for_host(self, host: str | None) -> Any:
            if host not in known:   # moto calls this under its lock
                known[host] = super().get_backend_for_host(host)
            return known[host]

    return Dispatcher(create_app)


def default_services(port: int, instance_name: str = "local", api_port: int | None = None,
                     state: LakeState | None = None) -> list[Service]:
    """The services of `edl local start`, in start order: the AWS endpoint on `port`, the REST
    API on `api_port` (default `port + 1`, or any free port if that one is taken) and the job
    runner, whose status the API serves."""
    from edl.config import get_config
    from edl.local.api_context import LocalApiContext
    from edl.local.api_server import ApiService
    from edl.local.job_runner import JobRunner
    from edl.local.lambda_runner import LambdaRunner

    instance = get_config().instance(instance_name)
    warm_up = os.environ.get("EDL_LOCAL_SPARK_WARMUP", "1") != "0"
    sweep_seconds = float(os.environ.get("EDL_LOCAL_SWEEP_SECONDS", "30"))
    jobs = JobRunner.for_instance(instance, warm_up=warm_up, sweep_seconds=sweep_seconds)
    # Spark's JVM is this process's child and ends with it; a graceful spark.stop() would only
    # add seconds to every `edl local stop` (the state is saved before the process exits).
    jobs.owns_spark = False
    lambdas = LambdaRunner.for_instance(instance)
    jobs.after_updates = lambdas.on_updates
    api = ApiService(instance, port + 1 if api_port is None else api_port,
                     any_port_if_taken=api_port is None,
                     prepare_handlers=LocalApiContext(instance), after_write=jobs.wake,
                     extra_routes={JOBS_STATUS_PATH: jobs.status,
                                   LAMBDAS_STATUS_PATH: lambdas.status})
    jobs.status_url = lambda: f"{api.base_url}{JOBS_STATUS_PATH}"  # known once api listens
    lambdas.status_url = lambda: f"{api.base_url}{LAMBDAS_STATUS_PATH}"

    def wake_runners() -> None:
        jobs.wake()
        lambdas.wake()

    aws = MotoService(port, account_id=instance.account_id,
                      secret_file=paths.local_control_secret_file(), state=state,
                      on_jobs_write=wake_runners,
                      jobs_table=naming.table_name(instance.name, "jobs"))
    return [aws, api, jobs, lambdas]


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
            _tune_garbage_collection()
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


def _tune_garbage_collection() -> None:
    """This process holds a large, long-lived heap (moto's state and the service models of
    botocore and moto, several hundred thousand objects) and allocates fast while serving.
    With Python's default thresholds it ran a full collection - 0.2 to 0.4 s with every thread
    stopped - every few seconds of load, which is what a request that happened to meet one
    paid. The young generation is collected after 50,000 allocations instead of 700 (short-lived
    cycles die before they are promoted), and what exists once the services are up is left out
    of every collection (`gc.freeze`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edl.local.runtime",
                                     description="EDL's local cloud runtime (use `edl local start`)")
    parser.add_argument("--port", type=int, required=True, help="port of the AWS endpoint")
    parser.add_argument("--api-port", type=int, default=None,
                        help="port of the REST API (default: --port + 1)")
    parser.add_argument("--instance", default="local", help="the local instance it serves")
    parser.add_argument("--state", type=Path, default=None,
                        help="the lake's state folder (default: the EDL home's)")
    parser.add_argument("--ephemeral", action="store_true", help="keep the lake in memory only")
    args = parser.parse_args(argv)
    for name in _CALLER_VARIABLES:
        os.environ.pop(name, None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One line per request would make the log grow without bound during a long session.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    in_process.install()   # before the services make any boto3 session
    try:
        state = None if args.ephemeral else LakeState.open(args.state or paths.local_state_dir())
    except LocalStateError as exc:
        return _refuse_to_start(exc)
    runtime = LocalRuntime(default_services(args.port, args.instance, args.api_port, state))
    try:
        return runtime.run()
    except LocalStateError as exc:  # the saved lake could not be loaded
        return _refuse_to_start(exc)


def _refuse_to_start(error: LocalStateError) -> int:
    """Leave the reason where `edl local start` shows it, and exit non-zero."""
    log.error("runtime - %s", error)
    paths.local_runtime_error_file().write_text(json.dumps(
        {"pid": os.getpid(), "message": error.message, "hint": error.hint}))
    return 2


if __name__ == "__main__":
    sys.exit(main())
