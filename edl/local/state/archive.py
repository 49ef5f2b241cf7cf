"""`edl local snapshot OUT.tar` and `edl local restore IN.tar`: a lake as one file.

The tar holds what a start needs and nothing else: the newest snapshot, its journal, `users.json`
and the object bodies (`blobs/`). It can be written while the lake runs: the files are opened
before anything is copied (a checkpoint that renames them meanwhile leaves the open copies
intact), the journal is copied up to its size at that moment (a record being appended then is
a torn tail, dropped on load as a crash's would be), and the bodies are listed after the journal
is read, so every body a copied record refers to is there (bodies are only removed at start).

A restore checks the whole tar before it touches the kept lake: only the file names above, the
snapshot's and journal's headers and checksums, the moto version, and each body against its
digest. It unpacks beside the state folder and swaps folders by rename, so a failed restore
leaves the old lake as it was. The local cloud must be stopped (the command refuses otherwise).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from contextlib import ExitStack
from pathlib import Path

from edl.local.state import snapshot
from edl.local.state.journal import CorruptStateError, read_journal
from edl.local.state.store import FIX_HINT, USERS_FILE, LocalStateError, has_lake

_MEMBER = re.compile(r"(snapshot-\d{6}\.bin|journal-\d{6}\.log|users\.json|"
                     r"blobs/[0-9a-f]{2}/[0-9a-f]{64})")
_ATTEMPTS = 5


def _newest(folder: Path) -> list[Path]:
    snapshots = sorted(folder.glob("snapshot-*.bin"))
    if snapshots:
        number = snapshots[-1].name[len("snapshot-"):-len(".bin")]
        return [snapshots[-1], folder / f"journal-{number}.log"]
    return [folder / "journal-000000.log"]


def write_archive(folder: Path, out: Path) -> int:
    """Write the lake in `folder` to the tar file `out`; its size in bytes."""
    if not has_lake(folder):
        raise LocalStateError(f"there is no lake in {folder} to save",
                              hint="start one first: edl local start")
    tmp = out.with_name(out.name + ".tmp")
    for _attempt in range(_ATTEMPTS):
        with ExitStack() as files:
            try:
                opened = [(p.name, files.enter_context(open(p, "rb"))) for p in _newest(folder)]
            except FileNotFoundError:  # a checkpoint renamed them just now: look again
                continue
            try:
                with tarfile.open(tmp, "w") as tar:
                    for name, handle in opened:
                        info = tarfile.TarInfo(name)
                        info.size = os.fstat(handle.fileno()).st_size
                        tar.addfile(info, handle)
                    tar.add(folder / USERS_FILE, USERS_FILE)
                    for blob in sorted((folder / "blobs").glob("??/*")):
                        if _MEMBER.fullmatch(f"blobs/{blob.parent.name}/{blob.name}"):
                            tar.add(blob, f"blobs/{blob.parent.name}/{blob.name}")
                os.replace(tmp, out)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise LocalStateError(f"could not write {out}: {exc.strerror or exc}",
                                      hint="check the folder and the free space") from None
            return out.stat().st_size
    raise LocalStateError(f"the lake in {folder} kept changing while it was saved",
                          hint="try again, or stop it first: edl local stop")


def _check_unpacked(folder: Path, source: Path) -> None:
    def refuse(reason: str) -> LocalStateError:
        return LocalStateError(f"{source} is not a lake EDL can restore: {reason}",
                               hint="use a file written by `edl local snapshot`")

    if not (folder / USERS_FILE).is_file():
        raise refuse("it has no users.json")
    try:
        for path in folder.glob("snapshot-*.bin"):
            header, _payload = snapshot.read_snapshot(path)
            if header.get("moto") != snapshot.moto_version():
                raise refuse(f"it was written with moto {header.get('moto')}; this EDL runs "
                             f"moto {snapshot.moto_version()}")
        for path in folder.glob("journal-*.log"):
            read_journal(path)
    except CorruptStateError as exc:
        raise refuse(f"{exc.path.name} {exc.reason}") from None
    for blob in folder.glob("blobs/??/*"):
        digest = hashlib.sha256()
        with open(blob, "rb") as body:
            while chunk := body.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != blob.name:
            raise refuse(f"the object body {blob.name} does not match its digest")


def restore_archive(source: Path, folder: Path) -> None:
    """Replace the lake in `folder` by the one in the tar file `source` (checked first)."""
    staging = folder.with_name(folder.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(source, "r") as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if not (m.isfile() and _MEMBER.fullmatch(m.name))]
            if bad:
                raise LocalStateError(f"{source} holds files a lake does not have ({bad[0]})",
                                      hint="use a file written by `edl local snapshot`")
            staging.mkdir(parents=True)
            tar.extractall(staging, members=members, filter="data")
        _check_unpacked(staging, source)
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, tarfile.TarError) as exc:
        raise LocalStateError(f"could not restore {source} into {folder}: {exc}",
                              hint=FIX_HINT) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
