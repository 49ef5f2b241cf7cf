"""Content-addressed blob files: where the local lake keeps its S3 object bodies.

A body is stored once, under `blobs/<2 hex>/<sha256>`, written to a temp file, fsync'd and
renamed, so a blob file is either whole or absent. Snapshots and journal records refer to bodies
by digest; nothing holds a lake's bytes in a pickle or in memory.

`LazyBlob` is what a restored S3 key reads its body through: a read-only file-like object that
opens its blob file only while it is read (a lake of 100,000 objects opens no file at start and
holds no descriptor), and turns into an in-memory buffer if moto ever writes to it, so a blob
file is never changed in place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from edl.local.state.journal import fsync_folder

_COPY_CHUNK = 1 << 20
_SPOOL_BYTES = 5 << 20  # as moto spools a body: in memory up to 5 MB, then on disk


class BlobStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written = 0  # bodies stored by this process: a checkpoint syncs if it wrote any

    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / digest

    def put(self, data: bytes, durable: bool = True) -> str:
        """Store `data` (if not stored yet) and return its digest; on disk when it returns,
        unless `durable` is false - then the caller syncs (a checkpoint writes thousands of
        bodies and syncs once: one fsync each made a stop of a 10,000-object lake outlast
        `edl local stop`'s patience, measured)."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if durable:
            fsync_folder(target.parent)
        self.written += 1
        return digest

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def remove_except(self, keep: set[str]) -> int:
        """Delete the blobs nobody refers to any more (and temp files of a crash); their count."""
        removed = 0
        for path in self.folder.glob("??/*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class LazyBlob:
    """A read-only view of one blob file in the shape of the buffer moto's S3 keys use."""

    def __init__(self, store: BlobStore, digest: str) -> None:
        self.store = store
        self.digest = digest
        self._position = 0
        self._buffer: Any = None   # set once moto writes: from then on an ordinary buffer

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._buffer is not None:
            return self._buffer.seek(offset, whence)
        if whence == 0:
            self._position = offset
        elif whence == 1:
            self._position += offset
        else:
            self._position = self.store.path(self.digest).stat().st_size + offset
        return self._position

    def tell(self) -> int:
        return self._buffer.tell() if self._buffer is not None else self._position

    def read(self, size: int = -1) -> bytes:
        if self._buffer is not None:
            return self._buffer.read(size)
        with open(self.store.path(self.digest), "rb") as blob:
            blob.seek(self._position)
            data = blob.read(size)
        self._position += len(data)
        return data

    def _writable(self) -> Any:
        if self._buffer is None:
            self._buffer = tempfile.SpooledTemporaryFile(_SPOOL_BYTES)  # noqa: SIM115 - kept open
            with open(self.store.path(self.digest), "rb") as blob:
                while chunk := blob.read(_COPY_CHUNK):
                    self._buffer.write(chunk)
            self._buffer.seek(self._position)
        return self._buffer

    def write(self, data: bytes) -> int:
        return self._writable().write(data)

    def truncate(self, size: int | None = None) -> int:
        buffer = self._writable()
        return buffer.truncate(buffer.tell() if size is None else size)

    @property
    def unchanged(self) -> bool:
        """Whether it still is exactly its blob (so a snapshot can refer to it by digest)."""
        return self._buffer is None

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
