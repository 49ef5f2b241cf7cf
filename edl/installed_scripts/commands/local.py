"""`edl local …`: the embedded local cloud on 127.0.0.1."""

import time
from dataclasses import dataclass, field
from typing import Optional

from edl.config import get_config
from edl.errors import UsageError
from edl.ui import UI

LOCAL_HELP = """start:  start the local cloud in the background (moto server with IAM enforcement, on
        127.0.0.1) and create its users: the platform admin and alice, bob and carol.
stop:   stop it (its state lives in memory and is gone).
status: show whether it runs, its services and URLs, and its users.
env:    print `export` lines that make the AWS CLI and boto3 act as a local user."""

_ACTIONS = ("start", "stop", "status", "env")


@dataclass
class LocalOptions:
    action: str = field(metadata={"args": ["action"], "choices": _ACTIONS,
                                  "help": "start, stop, status or env"})
    user: Optional[str] = field(default=None, metadata={
        "args": ["user"], "nargs": "?", "help": "with env: the local user (admin, alice, bob, carol)"})
    port: Optional[int] = field(default=None, metadata={
        "help": "with start: the port on 127.0.0.1 (default: the local instance's, 4566)"})
    debug: bool = field(default=False, metadata={"help": "show tracebacks and the debug log"})


def local(options: LocalOptions, ui: UI) -> int:
    from edl.local import control

    instance = get_config().instance("local")
    if options.action == "start":
        started = time.monotonic()
        already = control.status().running
        state = control.start(instance, options.port)
        verb = "already running" if already else f"started in {time.monotonic() - started:.1f}s"
        ui.success(f"local cloud {verb}")
        _show(ui, state)
    elif options.action == "stop":
        ui.success("local cloud stopped" if control.stop() else "local cloud was not running")
    elif options.action == "status":
        state = control.status()
        if not state.running:
            ui.info("local cloud: not running (start it with `edl local start`)")
            return 3
        _show(ui, state)
    else:
        if not options.user:
            raise UsageError("edl local env needs a user", hint="for example: edl local env alice")
        ui.result(control.env_exports(instance, options.user))
    return 0


def _show(ui: UI, state) -> None:
    ui.table("local cloud", ("Service", "URL"), sorted(state.services.items()))
    ui.info(f"pid {state.pid}; users: {', '.join(state.profiles)} "
            "(act as one with --profile NAME, or: eval $(edl local env NAME))")
