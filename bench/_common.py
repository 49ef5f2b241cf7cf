"""What the benchmark groups share: running and timing commands as a user runs them, a local cloud
of the bench's own (temporary EDL home, free port, always stopped), stack inventories to check
that compared runs did the same work, and the result lines with their verdicts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
RESULTS_DIR = BENCH_DIR / "results"
BIN = Path(sys.executable).parent  # the project venv's bin: `.venv/bin/python -m bench`
EDL = BIN / "edl"
CFN_LINT = BIN / "cfn-lint"
LOCAL = "local"
STACK_PREFIX = "edl-local-"
SPARK_WARMUP = "EDL_LOCAL_SPARK_WARMUP"


# The folder holding the `edl` package that is benchmarked: the repository, or a snapshot of its
# edl/ taken when the bench starts (see take_snapshot), so that edits made meanwhile by anyone
# working in the tree do not change the code half-way through a measurement.
SOURCE_ROOT = REPO
LOAD_AT_START = os.getloadavg()  # other work on the machine moves wall times: recorded with them


def take_snapshot() -> Path:
    """Copy edl/ to a temporary folder and run everything from there: this process (first on
    sys.path) and every command it starts (PYTHONPATH comes before the editable install)."""
    global SOURCE_ROOT
    if "edl" in sys.modules:
        raise BenchError("edl was imported before the snapshot was taken")
    root = Path(tempfile.mkdtemp(prefix="edl-bench-source-"))
    shutil.copytree(REPO / "edl", root / "edl",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    SOURCE_ROOT = root
    sys.path.insert(0, str(root))
    return root


class BenchError(Exception):
    """A benchmark could not be measured (a command failed, a check did not hold)."""


def log(message: str) -> None:
    print(f"  {message}", flush=True)


def check_tools() -> None:
    for tool in (EDL, CFN_LINT):
        if not tool.exists():
            raise BenchError(f"{tool} not found: run the bench with the project venv's python "
                             "(.venv/bin/python -m bench, or make bench)")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- commands ----------------------------------------------------------------------------------

def clean_env(edl_home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment a command runs with: no AWS identity or config of the user's leaks in
    (the local instance acts as its admin when no AWS_* variable is set), and the bench's own
    EDL home, so the user's local cloud and lint cache are never touched. Python writes and
    reads bytecode as it does for a user (a development shell's PYTHONDONTWRITEBYTECODE would
    have every command compile `edl`'s modules anew; the untimed warm-up writes them)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    if edl_home is not None:
        env["EDL_HOME"] = str(edl_home)
    if SOURCE_ROOT != REPO:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT),
                                                        env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def run(cmd: Sequence[str], env: dict[str, str], cwd: Path | None = None,
        timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command to completion; its wall time in seconds. A non-zero exit is a BenchError
    showing the end of its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # In SOURCE_ROOT by default: `python -c` puts its working folder first on sys.path.
    done = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd or SOURCE_ROOT,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the command and its children: unlike wall time, hardly
    # moved by other work on the machine.
    done.cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        shown = " ".join(c if len(c) < 80 else c[:40].strip() + " ..." for c in map(str, cmd))
        raise BenchError(f"`{shown}` exited {done.returncode}:\n{tail}")
    return seconds, done


# -- the local cloud ---------------------------------------------------------------------------

def free_port() -> int:
    """A free port N on 127.0.0.1 whose N + 1 is free too (the runtime's REST API takes it)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise BenchError("found no two free neighbouring ports on 127.0.0.1")


def _is_runtime(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return b"edl.local.runtime" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


class LocalCloud:
    """A local cloud of the bench's own: a temporary EDL home (so the user's local cloud, profile
    files and lint cache are untouched) and a free port. Use it as a context manager: whatever
    happens, every runtime it started is stopped and the temporary home removed."""

    def __init__(self, label: str, persistent: bool = False) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"edl-bench-{label}-"))
        # Ephemeral unless asked: a bench's stop + start must give an empty moto (reset()).
        self.persistent = persistent
        self.endpoint: str | None = None
        self._pids: set[int] = set()
        self.warm_ups: list[float] = []  # seconds of each warm_up(): what a cold moto costs
        self._saved_home: str | None = None

    def __enter__(self) -> LocalCloud:
        self._saved_home = os.environ.get("EDL_HOME")
        os.environ["EDL_HOME"] = str(self.home)  # edl.local.control and edl.aws read it per call
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.stop()
        finally:
            if self._saved_home is None:
                os.environ.pop("EDL_HOME", None)
            else:
                os.environ["EDL_HOME"] = self._saved_home
            shutil.rmtree(self.home, ignore_errors=True)

    @property
    def instance(self):
        from edl.config import get_config

        return get_config().instance(LOCAL)

    @property
    def regions(self) -> list[str]:
        return list(self.instance.regions)

    def start(self, warm: bool = True, spark: bool = False) -> float:
        """Start a fresh local cloud (moto + bootstrap) and, unless told not to, warm it up; the
        seconds it took. The runtime's background Spark warm-up (a JVM start that takes both
        cores of this machine for several seconds, right when a timed deploy would run) is off
        unless asked for: no benchmark here uses Spark."""
        from edl.local import control

        started = time.perf_counter()
        saved = os.environ.get(SPARK_WARMUP)
        os.environ[SPARK_WARMUP] = "1" if spark else "0"  # the runtime inherits our environment
        try:
            state = control.start(self.instance, free_port(), ephemeral=not self.persistent)
        finally:
            if saved is None:
                os.environ.pop(SPARK_WARMUP, None)
            else:
                os.environ[SPARK_WARMUP] = saved
        if state.pid:
            self._pids.add(state.pid)
        if not state.running:
            raise BenchError(f"the local cloud did not come up; see {self.home}/local/runtime.log")
        self.endpoint = state.endpoint_url
        if warm:
            self.warm_up()
        return time.perf_counter() - started

    def warm_up(self) -> float:
        """Assume the CloudFormation role and list the stacks of every region once. A fresh moto
        imports its CloudFormation backend on the first such call (about 1 s here): that is the
        emulator starting, not work of the tool being measured, so no timed run pays it."""
        started = time.perf_counter()
        credentials = self.role_credentials()
        for region in self.regions:
            self._client("cloudformation", region, credentials).describe_stacks()
        seconds = time.perf_counter() - started
        self.warm_ups.append(seconds)
        return seconds

    def server_cpu_seconds(self) -> float:
        """CPU seconds the running local runtime (moto and its threads) has used so far."""
        for pid in self._pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return 0.0

    def stop(self) -> None:
        from edl.local import control

        try:
            control.stop()
        finally:
            for pid in list(self._pids):  # only runtimes this bench started, by pid
                if _is_runtime(pid):
                    os.kill(pid, signal.SIGKILL)
                self._pids.discard(pid)
            self._end_leftovers()
            self.endpoint = None

    def _processes_here(self) -> list[int]:
        """Processes working in this cloud's temporary home: the runtime's children (Spark's JVM
        runs in the runtime's folder), which nobody else can have started."""
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if cwd == self.home or self.home in cwd.parents:
                found.append(int(entry.name))
        return found

    def _end_leftovers(self, grace: float = 5.0) -> None:
        deadline = time.monotonic() + grace
        while (pids := self._processes_here()) and time.monotonic() < deadline:
            time.sleep(0.2)  # a JVM ends by itself once its Python parent is gone
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def reset(self, warm: bool = True, spark: bool = False) -> float:
        """Stop and start again: an empty moto, bootstrapped anew. The seconds it took."""
        self.stop()
        return self.start(warm, spark)

    def clear_lint_cache(self) -> None:
        shutil.rmtree(self.home / "cache", ignore_errors=True)

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.home, **extra)

    # -- AWS, as the instance's CloudFormation role ------------------------------------------

    def _client(self, service: str, region: str, credentials: dict[str, str]):
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            **credentials)

    def role_credentials(self) -> dict[str, str]:
        """Temporary credentials of the CloudFormation role, assumed as the local admin."""
        from edl.aws import read_local_profile

        key, secret = read_local_profile("admin")
        sts = self._client("sts", self.instance.default_region,
                           {"aws_access_key_id": key, "aws_secret_access_key": secret})
        creds = sts.assume_role(RoleArn=self.instance.cfn_role_arn,
                                RoleSessionName="edl-bench")["Credentials"]
        return {"aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"]}

    def inventory(self) -> dict[str, dict[str, Any]]:
        """Every stack of the local instance: region, status, resources (logical id and type) and
        parameters (EDL's fingerprint left out, KMS key ids masked: they differ from run to run)."""
        credentials = self.role_credentials()
        found: dict[str, dict[str, Any]] = {}
        for region in self.regions:
            cfn = self._client("cloudformation", region, credentials)
            for page in cfn.get_paginator("describe_stacks").paginate():
                for stack in page["Stacks"]:
                    name = stack["StackName"]
                    if not name.startswith(STACK_PREFIX):
                        continue
                    # moto lists the resource types it skips (§8) without id or type.
                    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
                    found[name] = {
                        "region": region,
                        "status": stack["StackStatus"],
                        "resources": sorted(f"{r.get('LogicalResourceId', '?')}:"
                                            f"{r.get('ResourceType', '?')}" for r in resources),
                        "parameters": {p["ParameterKey"]: _mask(p.get("ParameterValue", ""))
                                       for p in stack.get("Parameters", [])
                                       if p["ParameterKey"] != "EdlFingerprint"},
                    }
        return found


_KEY_ID = re.compile(r"key/[0-9a-f-]{36}")
_CONTENT_HASH = re.compile(r"(?<=[-/])[0-9a-f]{16}(?=[./])")  # code/edl-<sha16>.zip, …/<sha16>/


def _mask(value: str) -> str:
    """KMS key ids differ from run to run; code package hashes differ when edl/ was edited
    between two runs (the job code is the same kind of object either way)."""
    return _CONTENT_HASH.sub("<hash>", _KEY_ID.sub("key/<key-id>", value))


def core_stack_names() -> list[str]:
    from edl.cloudformation.components.core import core_stacks
    from edl.config import get_config

    config = get_config()
    return [s.name for s in core_stacks(config, config.instance(LOCAL))]


def check_core_deployed(inventory: dict[str, dict[str, Any]], who: str) -> None:
    """Every core stack exists and is CREATE_COMPLETE, and nothing else was made."""
    expected = set(core_stack_names())
    if set(inventory) != expected:
        raise BenchError(f"{who} left stacks {sorted(inventory)}, expected {sorted(expected)}")
    bad = {n: s["status"] for n, s in inventory.items() if s["status"] != "CREATE_COMPLETE"}
    if bad:
        raise BenchError(f"{who}: stacks not CREATE_COMPLETE: {bad}")


def source_digest() -> str:
    """A hash of every file of the benchmarked edl/ (caches left out). deploy-core ships edl/ as
    code packages, so an edit there between two deploys is a real change to deploy."""
    digest = hashlib.sha256()
    package = SOURCE_ROOT / "edl"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(package)).encode() + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:  # removed while we looked: that is a change too
                digest.update(b"<gone>")
    return digest.hexdigest()


# -- results -----------------------------------------------------------------------------------

@dataclass
class Line:
    """One measurement against its target. `ratio` lines compare `value` with `baseline`
    (measured in the same run); `count` lines compare `value` with `limit` directly. A line
    without a limit is information only: shown, never PASS or FAIL."""

    group: str
    name: str
    value: float
    limit: float | None
    kind: str = "ratio"  # "ratio" or "count"
    baseline: float | None = None
    baseline_name: str = ""
    unit: str = "s"
    runs: dict[str, Any] = field(default_factory=dict)
    at_least: bool = False  # the target is a floor (throughput), not a ceiling (time)

    @property
    def info(self) -> bool:
        return self.limit is None

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.kind == "ratio" and self.baseline else None

    @property
    def passed(self) -> bool | None:
        if self.info:
            return None
        measured = self.ratio if self.kind == "ratio" else self.value
        if measured is None:
            return False
        return measured >= self.limit if self.at_least else measured <= self.limit

    def render(self) -> str:
        if self.kind == "ratio":
            figures = (f"{self.value:.2f} {self.unit} vs {self.baseline:.2f} {self.unit} "
                       f"{self.baseline_name}")
            check = f"ratio {self.ratio:.2f}x"
            if not self.info:
                check += f", target {'>=' if self.at_least else '<='} {self.limit:g}x"
        else:
            figures = f"{self.value:g}"
            check = "" if self.info else f"target <= {self.limit:g}"
        verdict = "info, no target" if self.info else "PASS" if self.passed else "FAIL"
        return f"[{self.group}] {self.name}: {figures}  ->  {check}  {verdict}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ratio=self.ratio, passed=self.passed)
        return data


def write_results(groups: dict[str, dict[str, Any]], lines: list[Line],
                  failed: Sequence[str] = ()) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "latest.json"
    record = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": sys.platform, "load_average_at_start": LOAD_AT_START,
                    "load_average_at_end": os.getloadavg()},
        "groups": groups,
        "lines": [line.as_dict() for line in lines],
        "not_measured": list(failed),
        "all_passed": not failed and all(line.passed is not False for line in lines),
    }
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
