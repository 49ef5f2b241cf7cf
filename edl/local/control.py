"""Start, stop and inspect the local cloud: the API behind `edl local start|stop|status|env`.

`start()` spawns the local runtime (`python -m edl.local.runtime`) as a detached background
process on 127.0.0.1, waits until its endpoint answers, bootstraps it (`bootstrap.py`) and then
writes the users' credentials, a matching AWS config file and the state file. The state file is
the sign that the lake is ready: `edl.aws` reads the endpoint from it, and a second `start()`
finds it and returns the running cloud's status.

The lake is kept in the state folder (`edl.local.state`): a start on a lake that has been
bootstrapped reads its users back from it instead of bootstrapping again, and the users'
profiles outlive a stop, as their keys do.

Everything is found through the EDL home (`$EDL_HOME`, see `edl.paths`), so every command of one
user - and every test that points `EDL_HOME` somewhere - sees the same local cloud.
"""

from __future__ import annotations

import configparser
import errno
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edl import paths
from edl.aws import local_endpoint, read_local_profile
from edl.config import Instance
from edl.errors import LocalCloudError, UsageError
from edl.local.bootstrap import BootstrapResult, bootstrap
from edl.local.control_api import call_control_api, read_secret
from edl.local.runtime import LOOPBACK, LocalFiles
from edl.local.state import folder as state_folder
from edl.local.state.store import LocalStateError

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.1
_LOG_TAIL_LINES = 20

# Children this process started, so that their exit is reaped (no zombie looks alive) and Popen
# does not warn about a child still running when the object is collected.
_children: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class LocalStatus:
    running: bool
    pid: int | None
    endpoint_url: str | None
    services: dict[str, str]
    started_at: float | None
    profiles: tuple[str, ...]


# -- processes and ports ----------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's: never a runtime of ours
        return False
    return _is_runtime(pid)


def _is_runtime(pid: int) -> bool:
    """Whether a live pid is a local runtime, not an unrelated process that reused a stale pid."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        text = cmdline.read_bytes()
    except FileNotFoundError:
        # No /proc (macOS) or the process just exited: trust the pid.
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"edl.local.runtime" in text


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on host:port now (as the runtime's server would bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As werkzeug does: connections of a stopped server in TIME_WAIT do not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _answers(endpoint_url: str, timeout: float = 2.0) -> bool:
    """Whether the AWS endpoint answers HTTP: moto's control API, with this runtime's secret."""
    try:
        call_control_api(endpoint_url, "config", read_secret(), timeout=timeout)
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(files: LocalFiles, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = files.log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(the log is empty)"


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _profiles(files: LocalFiles) -> tuple[str, ...]:
    parser = configparser.ConfigParser()
    parser.read(files.credentials)
    return tuple(parser.sections())


# -- status -----------------------------------------------------------------------------------

def status() -> LocalStatus:
    """What runs now. A runtime whose process died is reported stopped, and its files removed."""
    files = LocalFiles.current()
    pid = files.read_pid()
    state = _read_json(files.state)
    if pid is None or not _pid_alive(pid):
        if pid is not None or state is not None:
            files.remove_session_files()
        return LocalStatus(False, None, None, {}, None, ())
    if state is None:  # starting, or failed half-way: alive but not ready
        return LocalStatus(False, pid, None, {}, None, ())
    endpoint = state.get("endpoint_url")
    return LocalStatus(
        running=endpoint is not None and _answers(endpoint),
        pid=pid,
        endpoint_url=endpoint,
        services=dict(state.get("services") or {}),
        started_at=state.get("started_at"),
        profiles=_profiles(files),
    )


# -- start ------------------------------------------------------------------------------------

def _default_port(instance: Instance) -> int:
    port = urlsplit(instance.endpoint_url or "").port
    if port is None:
        raise LocalCloudError(f"instance {instance.name!r} has no port in its endpoint_url",
                              hint="give one: edl local start --port N")
    return port


def _spawn_runtime(files: LocalFiles, port: int, instance: Instance,
                   kept_in: Path | None) -> subprocess.Popen:
    files.folder.mkdir(parents=True, exist_ok=True)
    paths.local_runtime_error_file().unlink(missing_ok=True)
    keep = ["--ephemeral"] if kept_in is None else ["--state", str(kept_in)]
    env = dict(os.environ)
    # The runtime runs the very package this process runs, installed or not.
    package_root = str(paths.PACKAGE_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["EDL_HOME"] = str(paths.edl_home())
    env["MOTO_ACCOUNT_ID"] = instance.account_id
    with open(files.log, "wb") as log_file:  # one run's log: what a failed start shows
        log_file.write(f"--- edl local start on {LOOPBACK}:{port} at {time.ctime()}\n".encode())
        log_file.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", "edl.local.runtime", "--port", str(port),
             "--instance", instance.name, *keep],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=files.folder, env=env, start_new_session=True, close_fds=True,
        )
    _children[process.pid] = process
    files.pid.write_text(f"{process.pid}\n")
    return process


def _wait_until_ready(process: subprocess.Popen, files: LocalFiles, timeout: float,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> dict:
    """The runtime's ready file (its services), once it is written and the endpoint answers."""
    deadline = clock() + timeout
    while True:
        if process.poll() is not None:
            refused = _read_json(paths.local_runtime_error_file())
            if refused and refused.get("pid") == process.pid:  # the state folder's reason
                raise LocalStateError(refused["message"], hint=refused.get("hint"))
            raise LocalCloudError(
                f"the local runtime exited with code {process.returncode} while starting; "
                f"the end of {files.log}:\n{_log_tail(files)}"
            )
        ready = _read_json(files.ready)
        if ready and ready.get("pid") == process.pid and _answers(ready["services"]["aws"]):
            return ready
        if clock() > deadline:
            _kill(process.pid, timeout=5)
            raise LocalCloudError(
                f"the local runtime did not answer within {timeout:.0f} s; "
                f"the end of {files.log}:\n{_log_tail(files)}"
            )
        sleep(_POLL_SECONDS)


def _write_profiles(files: LocalFiles, result: BootstrapResult, endpoint: str,
                    region: str) -> None:
    """The users' keys (shared-credentials format) and an AWS config file naming region and
    endpoint, so `AWS_SHARED_CREDENTIALS_FILE` + `AWS_CONFIG_FILE` make the AWS CLI work too."""
    credentials = "".join(
        f"[{user.profile}]\naws_access_key_id = {user.access_key_id}\n"
        f"aws_secret_access_key = {user.secret_access_key}\n\n"
        for user in result.users
    )
    config = "".join(
        f"[profile {user.profile}]\nregion = {region}\nendpoint_url = {endpoint}\n\n"
        for user in result.users
    )
    paths.write_private(files.credentials, credentials)
    paths.write_private(files.aws_config, config)


def start(instance: Instance, port: int | None = None, *, timeout: float = 60,
          fresh: bool = False, ephemeral: bool = False) -> LocalStatus:
    """Start the local cloud on 127.0.0.1 (or return the running one): open the lake kept in
    the state folder, or bootstrap a new one. `fresh` deletes the kept lake first;
    `ephemeral` keeps nothing (and leaves a kept lake alone)."""
    if not instance.is_local:
        raise UsageError(f"instance {instance.name!r} is not a local instance",
                         hint="edl local start works with --instance local")
    current = status()
    if current.running and fresh:
        raise LocalCloudError("the local cloud is running; --fresh starts a new lake",
                              hint="stop it first: edl local stop")
    if current.running:
        return current
    if current.pid is not None:
        raise LocalCloudError(
            f"a local runtime (pid {current.pid}) is running but not ready",
            hint="wait for it, or stop it: edl local stop",
        )
    port = _default_port(instance) if port is None else port
    if not port_is_free(port):
        raise LocalCloudError(
            f"port {port} on {LOOPBACK} is already in use",
            hint="use --port N or stop what uses it",
        )

    files = LocalFiles.current()
    kept_in = None if ephemeral else paths.local_state_dir()
    if kept_in is not None:
        state_folder.prepare(kept_in, fresh=fresh)
    process = _spawn_runtime(files, port, instance, kept_in)
    log.info("local - runtime pid %s starting on %s:%s", process.pid, LOOPBACK, port)
    try:
        ready = _wait_until_ready(process, files, timeout)
        endpoint = ready["services"]["aws"]
        result = state_folder.saved_bootstrap(kept_in) if kept_in is not None else None
        if result is None:  # a new lake
            result = bootstrap(instance, endpoint, control_secret=read_secret(files.control_secret))
            if kept_in is not None:
                state_folder.save_bootstrap(kept_in, result)
        _write_profiles(files, result, endpoint, instance.default_region)
        state = {
            "endpoint_url": endpoint,
            "pid": process.pid,
            "started_at": ready["started_at"],
            "services": ready["services"],
            **result.summary(),
        }
        paths.write_private(files.state, json.dumps(state, indent=2) + "\n")
        log.info("local - ready at %s", endpoint)
    except BaseException:
        _kill(process.pid, timeout=5)
        files.remove_session_files()
        raise
    return status()


# -- stop -------------------------------------------------------------------------------------

def _kill(pid: int, timeout: float, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """SIGTERM, and SIGKILL if the process is still there after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = clock() + timeout
        while clock() < deadline:
            if not _pid_alive(pid):
                return
            sleep(_POLL_SECONDS)


def stop(*, timeout: float = 20) -> bool:
    """Stop the local cloud. True if a runtime was running and has been stopped."""
    files = LocalFiles.current()
    pid = files.read_pid()
    stopped = False
    if pid is not None and _pid_alive(pid):
        log.info("local - stopping runtime pid %s", pid)
        _kill(pid, timeout)
        stopped = True
    files.remove_session_files()
    return stopped


# -- env --------------------------------------------------------------------------------------

def env_exports(instance: Instance, profile: str) -> str:
    """Shell lines that make the AWS CLI, boto3 and friends act as a local user."""
    if not status().running:
        raise LocalCloudError("the local cloud is not running",
                              hint="start it first: edl local start")
    key, secret = read_local_profile(profile)
    values = {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ENDPOINT_URL": local_endpoint(instance),
        "AWS_DEFAULT_REGION": instance.default_region,
    }
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
