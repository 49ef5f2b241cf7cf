"""One lake's state folder: what is in it, who holds it, and how it is loaded and saved.

    <EDL home>/local/state/
        lock                   held (flock) by the runtime that serves the lake
        snapshot-<N>.bin       every moto backend at the start of journal N (none for N = 0)
        journal-<N>.log        every write since, in order, each fsync'd before it was answered
        blobs/<ab>/<sha256>    S3 object bodies, by content
        users.json             the bootstrap's users and keys (written by `control.start()`)

Open = take the lock, load snapshot N (the newest), replay journal N over it, and carry on
appending to it. A checkpoint writes snapshot N+1, then an empty journal N+1, then deletes
snapshot N and journal N: a crash at any step leaves either the old pair or the new one, and a
start finds the newest snapshot and the journal of the same number (older files are leftovers
of a checkpoint that a crash interrupted, and are removed once the lake is open). Checkpoints
are taken when the journal holds `snapshot_every_records` records or `snapshot_every_bytes`
bytes (bodies in blobs count), when a write's effect could not be replayed (`recorder.py`) and
at a clean stop - so a start replays a bounded journal.

Anything that cannot be read whole - a bad header, a checksum, a format or moto version this EDL
does not use, a missing body - is refused with `LocalStateError` naming the folder and the way
out (`--fresh`, or `edl local restore`), before moto holds any of it; the files stay as they are.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edl.errors import LocalCloudError
from edl.local.state import snapshot
from edl.local.state.blobs import BlobStore
from edl.local.state.journal import CorruptStateError, JournalWriter, read_journal
from edl.local.state.recorder import Recorder, make_moto_replayable, replay, set_iam_enforced

log = logging.getLogger("edl.local.state")

USERS_FILE = "users.json"
_SNAPSHOT = re.compile(r"snapshot-(\d{6})\.bin")
_JOURNAL = re.compile(r"journal-(\d{6})\.log")
FIX_HINT = ("start an empty lake with `edl local start --fresh` (this deletes the folder), or "
            "bring back a copy with `edl local restore FILE.tar`")


class LocalStateError(LocalCloudError):
    """The local cloud's state folder cannot be used (corrupt, foreign, locked, not writable)."""


@dataclass(frozen=True)
class LoadReport:
    existing: bool       # whether the folder held a lake
    sequence: int
    replayed: int        # journal records applied over the snapshot
    torn_bytes: int      # the torn tail of a crash, dropped
    seconds: float


@dataclass(frozen=True)
class StateSummary:
    """What `edl local status` says about the state folder (read without opening it)."""

    folder: Path
    exists: bool
    bytes: int
    objects_bytes: int
    saved_at: float | None


def _number(pattern: re.Pattern, folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := pattern.fullmatch(p.name)))


def summarize(folder: Path) -> StateSummary:
    if not folder.is_dir():
        return StateSummary(folder, False, 0, 0, None)
    total = blobs = 0
    saved_at = None
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            total += stat.st_size
            if path.parent.parent.name == "blobs":
                blobs += stat.st_size
            if _SNAPSHOT.fullmatch(path.name) or _JOURNAL.fullmatch(path.name):
                saved_at = max(saved_at or 0.0, stat.st_mtime)
    return StateSummary(folder, saved_at is not None, total, blobs, saved_at)


def has_lake(folder: Path) -> bool:
    """Whether the folder holds a lake that finished its bootstrap."""
    return (folder / USERS_FILE).is_file()


class LakeState:
    """The state folder of the running lake; made by `open()`, which holds its lock."""

    def __init__(self, folder: Path, lock_fd: int, *, snapshot_every_records: int = 2_000,
                 snapshot_every_bytes: int = 256 << 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.blobs = BlobStore(folder / "blobs")
        self.snapshot_every_records = snapshot_every_records
        self.snapshot_every_bytes = snapshot_every_bytes
        self.sequence = 0
        self.recorder: Recorder | None = None
        self._lock_fd = lock_fd
        self._journal: JournalWriter | None = None
        self._pending_bytes = 0
        self._clock = clock

    @classmethod
    def open(cls, folder: Path, **options) -> LakeState:
        """Take the folder (created if need be) for this process; refuse if another has it."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "blobs").mkdir(exist_ok=True)
            lock_fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LocalStateError(f"the local cloud's state folder {folder} cannot be "
                                  f"written: {exc.strerror}",
                                  hint="make it writable, or point EDL_HOME elsewhere") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(lock_fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = (folder / "lock").read_text().strip() or "another process"
            raise LocalStateError(f"the local cloud's state folder {folder} is in use by "
                                  f"pid {holder}",
                                  hint="stop that local cloud first: edl local stop") from None
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, f"{os.getpid()}\n".encode())
        return cls(folder, lock_fd, **options)

    # -- loading ------------------------------------------------------------------------------

    def _path(self, kind: str, number: int) -> Path:
        return self.folder / f"{kind}-{number:06d}.{'bin' if kind == 'snapshot' else 'log'}"

    def _refuse(self, path: Path, reason: str) -> LocalStateError:
        return LocalStateError(f"the local cloud's state in {self.folder} cannot be opened: "
                               f"{path.name} {reason}", hint=FIX_HINT)

    def _check_versions(self, path: Path, header: dict) -> None:
        if header.get("format") != snapshot.FORMAT:
            raise self._refuse(path, f"has format {header.get('format')!r} (written by EDL "
                               f"{header.get('edl', '?')}); this EDL reads format "
                               f"{snapshot.FORMAT}")
        if header.get("moto") != snapshot.moto_version():
            raise self._refuse(path, f"was written with moto {header.get('moto', '?')}; this "
                               f"EDL runs moto {snapshot.moto_version()}")

    def load(self, app: Callable) -> LoadReport:
        """Bring moto to the saved state: the newest snapshot, then its journal, replayed."""
        started = self._clock()
        snapshots = _number(_SNAPSHOT, self.folder)
        self.sequence = snapshots[-1] if snapshots else 0
        journal_path = self._path("journal", self.sequence)
        existing = bool(snapshots) or journal_path.exists()
        if has_lake(self.folder) and not existing:
            raise self._refuse(self.folder / USERS_FILE, "names users, but the folder holds "
                               "no snapshot or journal of their lake")
        try:
            contents = read_journal(journal_path) if journal_path.exists() else None
            if contents is not None:
                self._check_versions(journal_path, contents.header)
            digests: set[str] = set()
            if snapshots:
                path = self._path("snapshot", self.sequence)
                header, _ = snapshot.read_snapshot_header(path)
                self._check_versions(path, header)
                _, payload = snapshot.read_snapshot(path)
                digests = snapshot.install_backends(payload, self.blobs)
        except CorruptStateError as exc:
            raise self._refuse(exc.path, exc.reason) from None
        make_moto_replayable()
        replayed = torn = 0
        if contents is not None:
            for payload in contents.records:
                record_digest = replay(app, self.blobs, payload)
                if record_digest:
                    digests.add(record_digest)
                replayed += 1
                self._pending_bytes += len(payload)
            torn = contents.torn_bytes
            if torn:
                log.warning("state - dropped the torn last record of %s (%s bytes): it was "
                            "never acknowledged", journal_path.name, torn)
            self._journal = JournalWriter.open(journal_path, contents.valid_bytes)
            self._journal.records = replayed
        else:
            self._journal = JournalWriter.create(journal_path, self._journal_header())
        if existing:
            set_iam_enforced(True)  # a saved lake was bootstrapped; its users are authorised
        self._remove_leftovers(digests)
        return LoadReport(existing, self.sequence, replayed, torn, self._clock() - started)

    def _journal_header(self) -> dict:
        return {"format": snapshot.FORMAT, "sequence": self.sequence, **snapshot.versions()}

    def _remove_leftovers(self, keep: set[str]) -> None:
        """Files of an interrupted checkpoint, and bodies nothing refers to any more."""
        for pattern, kind in ((_SNAPSHOT, "snapshot"), (_JOURNAL, "journal")):
            for number in _number(pattern, self.folder):
                if number != self.sequence:
                    self._path(kind, number).unlink()
        for tmp in self.folder.glob("*.tmp"):
            tmp.unlink()
        removed = self.blobs.remove_except(keep)
        if removed:
            log.info("state - removed %s object bodies nothing refers to", removed)

    # -- saving -------------------------------------------------------------------------------

    def wrap(self, app: Callable) -> Recorder:
        """The middleware that journals the writes made through `app` to this folder."""
        self.recorder = Recorder(app, self.blobs, self._append, self._after_write,
                                 str(self.folder))
        return self.recorder

    def _append(self, payload: bytes, weight: int) -> None:
        assert self._journal is not None
        self._journal.append(payload)
        self._pending_bytes += max(len(payload), weight)

    def _after_write(self, needs_snapshot: bool) -> None:
        assert self._journal is not None
        if (needs_snapshot or self._journal.records >= self.snapshot_every_records
                or self._pending_bytes >= self.snapshot_every_bytes):
            try:
                self.checkpoint()
            except Exception:  # the write is in the journal: it is safe, and so is the answer
                log.exception("state - snapshot failed; the journal keeps every write")

    def checkpoint(self) -> None:
        """Snapshot everything and start an empty journal. The caller holds the write lock."""
        started = self._clock()
        written = self.blobs.written
        payload, _digests = snapshot.dump_backends(self.blobs)
        pickled = self._clock()
        if self.blobs.written != written:
            os.sync()  # the bodies it just stored, before a snapshot that refers to them
        synced = self._clock()
        following = self.sequence + 1
        snapshot.write_snapshot(self._path("snapshot", following), payload,
                                {"sequence": following})
        self.sequence = following
        new_journal = JournalWriter.create(self._path("journal", following),
                                           self._journal_header())
        if self._journal is not None:
            self._journal.close()
        self._journal = new_journal
        self._pending_bytes = 0
        for kind in ("snapshot", "journal"):
            self._path(kind, following - 1).unlink(missing_ok=True)
        log.info("state - snapshot %s saved (%s bytes, %s new bodies) in %.2f s: pickled in "
                 "%.2f s, bodies synced in %.2f s", following, len(payload),
                 self.blobs.written - written, self._clock() - started, pickled - started,
                 synced - pickled)

    def close(self) -> None:
        """A clean stop: a last checkpoint (so the next start replays nothing), then unlock."""
        try:
            if self.recorder is not None:
                with self.recorder.lock.writing():
                    self.checkpoint()
            else:
                self.checkpoint()
        except OSError as exc:  # the journal still holds every acknowledged write
            log.error("state - final snapshot failed, the journal is kept: %s", exc)
        finally:
            if self._journal is not None:
                self._journal.close()
            os.close(self._lock_fd)


def write_users(folder: Path, saved: dict) -> None:
    """The bootstrap's users and keys, kept with the lake they belong to (private, atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (USERS_FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(saved, out, indent=2)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(folder / USERS_FILE)


def read_users(folder: Path) -> dict:
    path = folder / USERS_FILE
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved["users"], list) or not isinstance(saved["cfn_role_arn"], str):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise LocalStateError(f"the local cloud's users in {path} cannot be read",
                              hint=FIX_HINT) from None
    return saved
