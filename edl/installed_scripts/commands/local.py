"""`edl local …`: the embedded local cloud on 127.0.0.1."""

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

from edl import paths
from edl.config import get_config
from edl.errors import LocalCloudError, UsageError
from edl.ui import UI

LOCAL_HELP = """start:    start the local cloud in the background (moto server with IAM enforcement, on
          127.0.0.1) with the lake it had; a new lake gets its users: the platform admin and
          alice, bob and carol. --fresh: delete the kept lake and start an empty one (asks
          first; --yes for scripts). --ephemeral: a lake in memory only, gone at stop.
stop:     stop it; the lake is kept in the state folder (<EDL home>/local/state).
status:   show whether it runs, its services and URLs, its users, and the state folder.
env:      print `export` lines that make the AWS CLI and boto3 act as a local user.
snapshot: write the lake (running or not) to one tar file: edl local snapshot OUT.tar
restore:  replace the kept lake by one from a tar file (the local cloud must be stopped; asks
          first when there is a lake; --yes for scripts): edl local restore IN.tar"""

_ACTIONS = ("start", "stop", "status", "env", "snapshot", "restore")


@dataclass
class LocalOptions:
    action: str = field(metadata={"args": ["action"], "choices": _ACTIONS,
                                  "help": "start, stop, status, env, snapshot or restore"})
    target: Optional[str] = field(default=None, metadata={
        "args": ["target"], "nargs": "?",
        "help": "with env: the local user (admin, alice, bob, carol); with snapshot and "
                "restore: the tar file"})
    port: Optional[int] = field(default=None, metadata={
        "help": "with start: the port on 127.0.0.1 (default: the local instance's, 4566)"})
    fresh: bool = field(default=False, metadata={
        "help": "with start: delete the kept lake and start an empty one"})
    ephemeral: bool = field(default=False, metadata={
        "help": "with start: keep the lake in memory only (tests, benchmarks)"})
    yes: bool = field(default=False, metadata={"help": "do not ask for confirmation"})
    debug: bool = field(default=False, metadata={"help": "show tracebacks and the debug log"})


def local(options: LocalOptions, ui: UI) -> int:
    from edl.local import control

    instance = get_config().instance("local")
    if options.action == "start":
        if options.fresh and options.ephemeral:
            raise UsageError("--fresh and --ephemeral do not go together",
                             hint="--ephemeral never opens the kept lake; use one of them")
        if options.fresh and not _confirmed(options, ui, "--fresh deletes"):
            return 1
        started = time.monotonic()
        already = control.status().running
        state = control.start(instance, options.port, fresh=options.fresh,
                              ephemeral=options.ephemeral)
        verb = "already running" if already else f"started in {time.monotonic() - started:.1f}s"
        ui.success(f"local cloud {verb}")
        _show(ui, state)
    elif options.action == "stop":
        ui.success("local cloud stopped" if control.stop() else "local cloud was not running")
    elif options.action == "status":
        state = control.status()
        if not state.running:
            ui.info("local cloud: not running (start it with `edl local start`)")
            _show_state(ui)
            return 3
        _show(ui, state)
        _show_state(ui)
    elif options.action in ("snapshot", "restore"):
        return _archive(options, ui, control.status().running)
    else:
        if not options.target:
            raise UsageError("edl local env needs a user", hint="for example: edl local env alice")
        ui.result(control.env_exports(instance, options.target))
    return 0


def _confirmed(options: LocalOptions, ui: UI, what: str) -> bool:
    """Whether the kept lake may be replaced: nothing to lose, --yes, or the user says so."""
    from edl.local.state.store import has_lake

    folder = paths.local_state_dir()
    if options.yes or not has_lake(folder):
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"refusing to replace the lake kept in {folder} without confirmation",
                         hint="pass --yes to confirm")
    ui.info(f"{what} the lake kept in {folder}: every bucket, object, table, user and stack.")
    if input("Type 'delete' to confirm: ").strip() != "delete":
        ui.info("Not confirmed; nothing was changed.")
        return False
    return True


def _archive(options: LocalOptions, ui: UI, running: bool) -> int:
    from edl.local.state import archive

    if not options.target:
        raise UsageError(f"edl local {options.action} needs a tar file",
                         hint=f"for example: edl local {options.action} lake.tar")
    target = Path(options.target)
    folder = paths.local_state_dir()
    if options.action == "snapshot":
        size = archive.write_archive(folder, target)
        ui.success(f"the lake in {folder} is saved to {target} ({size / 1e6:.1f} MB)")
        return 0
    if running:
        raise LocalCloudError("the local cloud is running; a restore replaces its lake",
                              hint="stop it first: edl local stop")
    if not _confirmed(options, ui, "restore replaces"):
        return 1
    archive.restore_archive(target, folder)
    ui.success(f"the lake from {target} is in {folder}; start it with `edl local start`")
    return 0


def _show(ui: UI, state) -> None:
    ui.table("local cloud", ("Service", "URL"), sorted(state.services.items()))
    ui.info(f"pid {state.pid}; users: {', '.join(state.profiles)} "
            "(act as one with --profile NAME, or: eval $(edl local env NAME))")


def _show_state(ui: UI) -> None:
    from edl.local.state.store import summarize

    summary = summarize(paths.local_state_dir())
    if not summary.exists:
        ui.info(f"state: none kept yet in {summary.folder}")
        return
    saved = "never" if summary.saved_at is None else \
        datetime.fromtimestamp(summary.saved_at).isoformat(sep=" ", timespec="seconds")
    ui.info(f"state: {summary.folder}, {summary.bytes / 1e6:.1f} MB "
            f"({summary.objects_bytes / 1e6:.1f} MB of object bodies), last saved {saved}")
