"""The recorder: a WSGI middleware in front of moto that journals every write before answering.

Each request that may change the lake is applied under one exclusive lock (reads share it), with
moto's random (`mock_random`) seeded from a fresh seed; the response is collected in full, and
the request - method, path, query, headers, body, seed and whether IAM was enforced - is
appended to the journal and fsync'd *before* the response is sent. So whatever a client was told
is on disk, and replaying the journal over a snapshot, record by record with the same seeds and
the same enforcement, makes moto take the same decisions and produce the same ids, keys and
secrets. Bodies of large S3 writes go to the blob store; the record holds their digest.

What counts as a write: for S3 (REST), any method but GET/HEAD/OPTIONS; for the JSON and query
protocols, any action that is not a read by its name (`Describe*`, `Get*`, `List*`, `Query`,
`Scan`, ...; STS's `GetSessionToken` and `GetFederationToken` do create sessions and are
journaled). moto's own control API (`/moto-api/...`) is not journaled: it is not the lake; nor
are the local Athena's query calls (`StartQueryExecution`, `StopQueryExecution`): a query is not
a change to the lake, a restart must not run it again, and the result objects it writes go
through S3 like any other write.

Some of moto's randomness is not `mock_random` but the OS: STS session tokens, S3 multipart
upload ids, KMS key material (measured: a replayed `AssumeRole` otherwise hands out another
token, and every later call signed with the first is refused). `make_moto_replayable()` makes
those modules' `os.urandom` draw from `mock_random`; a KMS private key (only asymmetric keys use
it) comes from OpenSSL and cannot be, so the write that made one is followed by a snapshot.

If the journal cannot be written (a full disk), the client gets HTTP 503 naming the state
folder, and every later write too: nothing is acknowledged that is not on disk.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

from edl.local.state.blobs import BlobStore

log = logging.getLogger("edl.local.state")

INLINE_BODY_BYTES = 64 * 1024
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}
_READ_PREFIXES = ("Describe", "Get", "List", "Query", "Scan", "BatchGet", "Head", "Search",
                  "Lookup", "Select", "Validate", "Estimate", "TransactGet", "Check")
_WRITES_BY_READ_NAME = {"GetSessionToken", "GetFederationToken"}
_NOT_THE_LAKE_TARGETS = {"AmazonAthena.StartQueryExecution", "AmazonAthena.StopQueryExecution"}
_ENVIRON_STRINGS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "RAW_URI",
                    "REQUEST_URI", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                    "CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_ADDR", "wsgi.url_scheme")


class ReadWriteLock:
    """Many readers or one writer. moto's random is seeded per write, so no read may run
    (and draw from it) while a write does."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _action(environ: dict, body: bytes) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if not action and environ.get("CONTENT_TYPE", "").startswith(
            "application/x-www-form-urlencoded"):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return action[0] if action else None


def _service(environ: dict) -> str | None:
    """The service a SigV4 request is signed for (`Credential=KEY/DATE/REGION/SERVICE/...`)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    _, found, rest = auth.partition("Credential=")
    parts = rest.split(",", 1)[0].split("/") if found else []
    return parts[3] if len(parts) > 3 else None


def is_write(environ: dict, body: bytes) -> bool:
    """Whether a request to moto may change the lake (and so is journaled)."""
    if environ.get("PATH_INFO", "").startswith("/moto-api"):
        return False
    if environ.get("HTTP_X_AMZ_TARGET") in _NOT_THE_LAKE_TARGETS:
        return False
    action = None if _service(environ) == "s3" else _action(environ, body)
    if action is None:
        return environ.get("REQUEST_METHOD", "GET") not in _READ_METHODS
    return action in _WRITES_BY_READ_NAME or not action.startswith(_READ_PREFIXES)


def _read_body(environ: dict) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""


def iam_enforced() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def set_iam_enforced(enforced: bool) -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if enforced else float("inf")
    ActionAuthenticatorMixin.request_count = 0


_nondeterministic = threading.local()
# moto modules that draw state from `os.urandom` rather than `mock_random` (moto 5.2): STS
# session tokens, S3 multipart upload ids, KMS key material, data keys and IVs.
_URANDOM_MODULES = ("moto.sts.utils", "moto.s3.models", "moto.kms.utils", "moto.kms.models",
                    "moto.kms.responses")


class _SeededOs:
    """`os` as those modules see it: the same, except that `urandom` draws from moto's seeded
    random (a local emulator's keys need to be replayable, not secret)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    @staticmethod
    def urandom(size: int) -> bytes:
        from moto.moto_api._internal import mock_random

        return mock_random.randbytes(size)


def make_moto_replayable() -> None:
    """Make every id, key and secret moto makes come from `mock_random`, which the recorder
    seeds per write; private keys of asymmetric KMS keys (from OpenSSL) cannot be, so making
    one flags the write for a snapshot."""
    import importlib

    import moto.kms.models as kms

    for name in _URANDOM_MODULES:
        module = importlib.import_module(name)
        if not isinstance(module.os, _SeededOs):
            setattr(module, "os", _SeededOs(module.os))  # noqa: B010 - a moto module
    if getattr(kms, "_edl_flags_private_keys", False):
        return
    original_private_key = kms.generate_private_key

    def generate_private_key(key_spec: str) -> Any:
        if key_spec not in ("SYMMETRIC_DEFAULT", None):
            _nondeterministic.flag = True
        return original_private_key(key_spec)

    kms.generate_private_key = generate_private_key
    setattr(kms, "_edl_flags_private_keys", True)  # noqa: B010 - moto's module, not ours


class Recorder:
    """The middleware. `journal(record, weight)` appends one record durably (`weight` counts a
    body kept in a blob); `after_write` is called under the write lock after each journaled
    write, with whether it needs a snapshot."""

    def __init__(self, app: Callable, blobs: BlobStore, journal: Callable[[bytes, int], None],
                 after_write: Callable[[bool], None], describe_folder: str) -> None:
        self.app = app
        self.blobs = blobs
        self.journal = journal
        self.after_write = after_write
        self.describe_folder = describe_folder
        self.lock = ReadWriteLock()
        self._broken: str | None = None

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        if not is_write(environ, body):
            with self.lock.reading():
                return self._collect(environ, start_response)
        with self.lock.writing():
            if self._broken:
                return self._unavailable(start_response)
            seed = int.from_bytes(os.urandom(8), "big")
            enforced = iam_enforced()
            _nondeterministic.flag = False
            from moto.moto_api._internal import mock_random

            mock_random.seed(seed)
            status, headers, chunks = self._call(environ)
            try:
                self.journal(self._record(environ, body, seed, enforced), len(body))
            except OSError as exc:
                self._broken = str(exc)
                log.error("state - journal write failed, refusing writes from now on: %s", exc)
                return self._unavailable(start_response)
            self.after_write(bool(getattr(_nondeterministic, "flag", False)))
        start_response(status, headers)
        return chunks

    def _call(self, environ: dict) -> tuple[str, list, list[bytes]]:
        """Run moto to the end of its response, so the write is complete when it returns."""
        captured: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            captured[:] = [status, headers]
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            chunks = [bytes(chunk) for chunk in result]
        finally:
            if hasattr(result, "close"):
                result.close()
        return captured[0], captured[1], chunks

    def _collect(self, environ: dict, start_response: Callable) -> list[bytes]:
        status, headers, chunks = self._call(environ)
        start_response(status, headers)
        return chunks

    def _record(self, environ: dict, body: bytes, seed: int, enforced: bool) -> bytes:
        strings = {k: environ[k] for k in _ENVIRON_STRINGS if isinstance(environ.get(k), str)}
        strings.update({k: v for k, v in environ.items()
                        if k.startswith("HTTP_") and isinstance(v, str)})
        record: dict[str, Any] = {"environ": strings, "seed": seed, "enforced": enforced,
                                  "terminated": bool(environ.get("wsgi.input_terminated"))}
        if len(body) > INLINE_BODY_BYTES:
            record["blob"] = self.blobs.put(body)
        else:
            record["body"] = body
        return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)

    def _unavailable(self, start_response: Callable) -> list[bytes]:
        message = (f"the local cloud cannot save to {self.describe_folder} "
                   f"({self._broken}); free space and restart it").encode()
        start_response("503 Service Unavailable", [("Content-Type", "text/plain"),
                                                   ("Content-Length", str(len(message)))])
        return [message]


def replay(app: Callable, blobs: BlobStore, payload: bytes) -> str | None:
    """Apply one journal record to moto as it was first applied; the digest of its body if
    that is kept in a blob."""
    from moto.moto_api._internal import mock_random

    record = pickle.loads(payload)
    body = blobs.get(record["blob"]) if "blob" in record else record["body"]
    environ: dict[str, Any] = dict(record["environ"])
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
                    "wsgi.version": (1, 0), "wsgi.multithread": False,
                    "wsgi.multiprocess": False, "wsgi.run_once": False})
    if record["terminated"]:
        environ["wsgi.input_terminated"] = True
    set_iam_enforced(record["enforced"])
    mock_random.seed(record["seed"])
    result = app(environ, lambda status, headers, exc_info=None: None)
    for _chunk in result:  # the response is built as the write is applied
        pass
    if hasattr(result, "close"):
        result.close()
    return record.get("blob")
