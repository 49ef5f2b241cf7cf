"""Snapshots: every moto backend in one pickle, S3 bodies as blob files, written crash-safely.

What is pickled is the dict of moto's live `BackendDict`s (`service name -> accounts -> regions
-> backend`), all in one pickle so that objects shared between services (a stack's resources
are the IAM roles, tables and buckets themselves) stay shared. Two reducers make that possible
(DESIGN §8):

- an S3 key (`moto.s3.models.FakeKey`) is pickled without its body: the body goes to the blob
  store (once per content) and the pickle holds its digest; loading gives the key a `LazyBlob`,
  so opening a 5 GB lake reads no body. After a snapshot the live keys read through `LazyBlob`
  too, which gives their memory back;
- the RSA and EC private keys of KMS keys are pickled as DER bytes;
- an S3 bucket's `_VersionedKeyStore` is saved with every version of every key (its `items()`
  yields only the newest, so a plain pickle keeps one version per key - measured);
- a `WeakValueDictionary` (Lambda's functions by ARN) is saved as its items; the functions it
  maps stay shared with the dict that holds them;
- a `defaultdict` is rebuilt without calling its class's `__init__` (SSM's `ParameterDict`
  wants other arguments), and a lambda factory (SSM's tags) becomes an equivalent one that
  pickles (`functools.partial(defaultdict, dict)` for `lambda: defaultdict(dict)`).

The file is `b"EDLSNAP1\\n"`, a JSON header (format, sequence, versions of EDL, moto and Python,
when, the SHA-256 and size of the payload) and the payload. It is written to a temp file,
fsync'd and renamed, so a snapshot is whole or absent. `read_snapshot()` refuses a bad magic, a
header it cannot read, another format or moto version (pickles of moto objects do not cross moto
versions) and a checksum mismatch - it never loads half a lake.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from edl.local.state.blobs import BlobStore, LazyBlob
from edl.local.state.journal import CorruptStateError, fsync_folder

SNAPSHOT_MAGIC = b"EDLSNAP1\n"
FORMAT = 1


@dataclass(frozen=True)
class _BlobRef:
    digest: str


def _restore_s3_key(cls: Any, state: dict, body: Any) -> Any:
    key = cls.__new__(cls)
    key.__dict__.update(state)
    key._value_buffer = body
    key.lock = threading.Lock()
    return key


def _load_private_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    return load_der_private_key(der, password=None)


def _picklable_factory(factory: Callable[[], Any] | None) -> Callable[[], Any] | None:
    """A factory that makes what a lambda factory makes, and that pickle can name."""
    if factory is None or getattr(factory, "__name__", "") != "<lambda>":
        return factory
    sample = factory()
    if type(sample) is defaultdict:
        return partial(defaultdict, _picklable_factory(sample.default_factory))
    if type(sample) in (dict, list, set) and not sample:
        return type(sample)
    raise pickle.PicklingError(f"cannot save a defaultdict whose factory makes {sample!r}")


def _restore_versions(cls: type, lists: list[tuple[str, list]]) -> dict:
    store = cls()
    for name, versions in lists:
        dict.__setitem__(store, name, versions)
    return store


def _restore_weak_values(items: list[tuple[Any, Any]]) -> weakref.WeakValueDictionary:
    return weakref.WeakValueDictionary(items)


def _new_defaultdict(cls: Any, factory: Callable[[], Any] | None) -> defaultdict:
    """An empty `defaultdict` (or subclass, whose own `__init__` may want other arguments)."""
    made = cls.__new__(cls)
    defaultdict.__init__(made, factory)
    return made


class _LakePickler(pickle.Pickler):
    def __init__(self, file: io.BufferedIOBase, blobs: BlobStore) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.blobs = blobs
        self.digests: set[str] = set()
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from moto.s3.models import FakeKey
        from moto.s3.utils import _VersionedKeyStore

        self._key_type = FakeKey
        self._versions_type = _VersionedKeyStore
        self._private_key_types = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _BlobRef):
            return ("blob", obj.digest)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._key_type):
            return _restore_s3_key, (type(obj), self._key_state(obj), _BlobRef(self._body(obj)))
        if isinstance(obj, self._private_key_types):
            from cryptography.hazmat.primitives.serialization import (
                Encoding,
                NoEncryption,
                PrivateFormat,
            )

            der = obj.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
            return _load_private_key, (der,)
        if isinstance(obj, self._versions_type):
            return _restore_versions, (type(obj), list(dict.items(obj)))
        if isinstance(obj, weakref.WeakValueDictionary):
            return _restore_weak_values, (list(obj.items()),)
        if isinstance(obj, defaultdict):
            return (_new_defaultdict, (type(obj), _picklable_factory(obj.default_factory)),
                    getattr(obj, "__dict__", None) or None, None, iter(obj.items()))
        return NotImplemented

    @staticmethod
    def _key_state(key: Any) -> dict:
        return {k: v for k, v in key.__dict__.items() if k not in ("_value_buffer", "lock")}

    def _body(self, key: Any) -> str:
        """The digest of a key's body, stored in the blob store; the key then reads from it."""
        buffer = key._value_buffer
        if isinstance(buffer, LazyBlob) and buffer.unchanged:
            self.digests.add(buffer.digest)
            return buffer.digest
        with key.lock:
            try:
                buffer.seek(0)
                data = buffer.read()
            except ValueError:  # a deleted key's closed buffer: moto pickles it as empty
                data = b""
            digest = self.blobs.put(data, durable=False)  # synced once by the checkpoint
            if not key.disposed:
                key._value_buffer = LazyBlob(self.blobs, digest)
                buffer.close()
        self.digests.add(digest)
        return digest


class _LakeUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, blobs: BlobStore) -> None:
        super().__init__(file)
        self.blobs = blobs

    def persistent_load(self, pid: Any) -> Any:
        kind, digest = pid
        if kind != "blob":
            raise pickle.UnpicklingError(f"unknown reference {kind!r}")
        return LazyBlob(self.blobs, digest)


def moto_version() -> str:
    import moto

    return moto.__version__


def versions() -> dict:
    from edl import __version__

    return {"edl": __version__, "moto": moto_version(), "python": platform.python_version()}


def live_backends() -> dict[str, Any]:
    """Every moto backend that holds anything, by service name."""
    from moto.core.base_backend import BackendDict

    instances = list(BackendDict._instances)  # type: ignore[misc]
    return {b.service_name: b for b in instances if len(b)}


def dump_backends(blobs: BlobStore) -> tuple[bytes, set[str]]:
    """The pickle of every live backend, and the digests of the bodies it refers to."""
    out = io.BytesIO()
    pickler = _LakePickler(out, blobs)
    pickler.dump(live_backends())
    pickler.clear_memo()
    pickler.dump(sorted(pickler.digests))  # read back by `install_backends`
    return out.getvalue(), pickler.digests


def install_backends(payload: bytes, blobs: BlobStore) -> set[str]:
    """Make moto's live backends hold exactly what `payload` holds; the digests it refers to.

    Everything is read and checked (every body it refers to exists) before moto is touched."""
    from moto.backends import get_backend
    from moto.core.base_backend import BackendDict

    unpickler = _LakeUnpickler(io.BytesIO(payload), blobs)
    loaded: dict[str, Any] = unpickler.load()
    digests = set(unpickler.load())
    missing = sorted(d for d in digests if not blobs.path(d).exists())
    if missing:
        raise CorruptStateError(blobs.folder, f"{len(missing)} object bodies are missing "
                                f"(the first: {missing[0]})")
    for name, saved in loaded.items():
        live = get_backend(name)  # type: ignore[call-overload]
        dict.clear(live)
        for account_id, accounts in saved.items():
            dict.__setitem__(live, account_id, accounts)
        if live not in BackendDict._instances:  # type: ignore[misc]
            BackendDict._instances.append(live)  # type: ignore[misc]
    return digests


def write_snapshot(path: Path, payload: bytes, header: dict) -> None:
    """Write a snapshot whole or not at all (temp file, fsync, rename, fsync of the folder)."""
    header = {**header, "format": FORMAT, **versions(), "saved_at": time.time(),
              "payload_sha256": hashlib.sha256(payload).hexdigest(), "payload_bytes": len(payload)}
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(SNAPSHOT_MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n")
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def read_snapshot_header(path: Path) -> tuple[dict, int]:
    """A snapshot's header and where its payload starts; `CorruptStateError` if not ours."""
    with open(path, "rb") as snapshot:
        head = snapshot.read(len(SNAPSHOT_MAGIC))
        line = snapshot.readline(1 << 16)
    if head != SNAPSHOT_MAGIC:
        raise CorruptStateError(path, "not an EDL snapshot (its first bytes are not EDLSNAP1)")
    try:
        header = json.loads(line)
    except ValueError:
        raise CorruptStateError(path, "its header is not valid JSON") from None
    if not isinstance(header, dict) or not line.endswith(b"\n"):
        raise CorruptStateError(path, "its header is cut short")
    return header, len(SNAPSHOT_MAGIC) + len(line)


def read_snapshot(path: Path) -> tuple[dict, bytes]:
    """A snapshot's header and its payload, checked against the header's checksum."""
    header, offset = read_snapshot_header(path)
    with open(path, "rb") as snapshot:
        snapshot.seek(offset)
        payload = snapshot.read()
    if (len(payload) != header.get("payload_bytes")
            or hashlib.sha256(payload).hexdigest() != header.get("payload_sha256")):
        raise CorruptStateError(path, "its contents fail the checksum in its header")
    return header, payload
