"""The state folder seen from `edl local start`: made ready before the runtime opens it.

`control.start()` runs in the user's process, not the runtime's; what it decides about the
folder lives here: `--fresh` deletes it; a folder without `users.json` never finished its
bootstrap (the file is written right after it, before the lake is reported ready), holds no
user's data and is cleared so the bootstrap can run again; a folder with it holds a lake whose
users and keys are read back instead of bootstrapping again (bootstrap is not idempotent: it
creates users and keys).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from edl.local.bootstrap import BootstrapResult, LocalUser
from edl.local.state.store import LocalStateError, has_lake, read_users, write_users

log = logging.getLogger("edl.local.state")


def prepare(folder: Path, *, fresh: bool) -> None:
    """Delete the lake for `--fresh`, and the remains of a bootstrap that never finished."""
    if folder.exists() and (fresh or not has_lake(folder)):
        log.info("state - %s %s", "deleting" if fresh else "clearing an unfinished lake in",
                 folder)
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            raise LocalStateError(f"the local cloud's state folder {folder} cannot be deleted: "
                                  f"{exc.strerror}", hint="make it writable") from None


def saved_bootstrap(folder: Path) -> BootstrapResult | None:
    """The users and role of the lake in `folder`, if it has been bootstrapped."""
    if not has_lake(folder):
        return None
    saved = read_users(folder)
    return BootstrapResult(users=tuple(LocalUser(**user) for user in saved["users"]),
                           cfn_role_arn=saved["cfn_role_arn"])


def save_bootstrap(folder: Path, result: BootstrapResult) -> None:
    write_users(folder, {"users": [asdict(user) for user in result.users],
                         "cfn_role_arn": result.cfn_role_arn})
