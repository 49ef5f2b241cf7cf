"""Where EDL keeps its files on the user's machine.

Everything lives under the EDL home (`$EDL_HOME`, default `~/.edl`): the local cloud's state,
pid, log, credentials and control-API secret, and caches. Tests point `EDL_HOME` at a temporary
folder. Files holding secrets are written with `write_private` (mode 0600).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "core_resources" / "config"
TEMPLATES_DIR = PACKAGE_DIR / "cloudformation" / "templates"


def edl_home() -> Path:
    return Path(os.environ.get("EDL_HOME") or Path.home() / ".edl")


def local_dir() -> Path:
    """The local cloud's folder: state file, pid, log and the credentials file."""
    return edl_home() / "local"


def local_credentials_file() -> Path:
    """The local cloud's users, in the AWS shared-credentials format."""
    return local_dir() / "credentials"


def local_config_file() -> Path:
    """The local cloud's AWS config file: a `[profile NAME]` section per user."""
    return local_dir() / "config"


def local_control_secret_file() -> Path:
    """The running local runtime's secret for moto's control API (`edl.local.control_api`)."""
    return local_dir() / "control-secret"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600), replacing any old one atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def local_state_file() -> Path:
    return local_dir() / "state.json"


def local_state_dir() -> Path:
    """The local lake itself: its snapshot, journal, object bodies and users (`edl.local.state`).
    Unlike the files beside it, it outlives the runtime; `edl local start --fresh` deletes it."""
    return local_dir() / "state"


def local_runtime_error_file() -> Path:
    """Why the runtime refused to start (a message and a hint), for `edl local start` to show."""
    return local_dir() / "runtime-error.json"


def cache_dir() -> Path:
    return edl_home() / "cache"
