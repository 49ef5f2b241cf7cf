"""Where an ingest's data comes from: S3, HTTPS, SFTP.

A source is parsed from its URL on the driver, lists its files there (`list_files`), and is then
shipped to Spark tasks, which open one file each (`open`) and stream it into the raw folder. So a
source object is small, frozen and picklable, and opens its own connections in the task.

- `s3://bucket/key`: the object, or when no object has that key, every object under `key/`
  (nested folders kept). Read with pyarrow's S3 filesystem (random access, so zips are read in
  place).
- `https://host/path`: one file, named after the last path segment. Redirects are followed (at
  most 5), each checked as the first URL. `http://` is accepted on the local instance only.
- `sftp://user@host[:port]/path`: a file, or every file under a folder. Password or private key
  come from the request (never from the URL); the host key must be known (known_hosts) except on
  the local instance.

Whoever may start an ingest names the URL, so the job must not become a way into what only it can
reach. Every address a host name resolves to is checked (`check_address`), and the connection is
made to the checked address, never to a second resolution (no DNS rebinding): loopback (on the
local cloud, its own runtime: the AWS endpoint and the REST API), link-local (the instance
metadata service, 169.254.169.254), private (10/8, 172.16/12, 192.168/16, fc00::/7), shared,
reserved, unspecified and multicast addresses are refused - on every instance, `local` too.

Tests serve their HTTPS and SFTP sources on the loopback; `reachable_test_servers` lets this
process's ingests reach exactly those (address, port) pairs while it is open. It is code, not
configuration: no API request, job argument or environment variable can add to it, and the
pairs travel with each source object to the Spark tasks that open it.
"""

from __future__ import annotations

import http.client
import ipaddress
import posixpath
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlparse

from botocore.exceptions import ClientError

from edl.core_resources.pipelines.ingest.errors import SourceNotFoundError, SourceRefusedError
from edl.utils.storage import S3Access, iter_objects

MAX_REDIRECTS = 5
TIMEOUT = 60


@dataclass(frozen=True)
class SourceFile:
    url: str              # this file's own URL, for messages
    path: str             # where it lands under raw/<update>/ (before unpacking)
    size: int | None = None
    locator: str = ""     # what `open` needs (S3 key, SFTP path, HTTPS URL)


Server = tuple[str, int]  # (address, port)

_test_servers: frozenset[Server] = frozenset()
_test_servers_lock = threading.Lock()


@contextmanager
def reachable_test_servers(*servers: Server) -> Iterator[None]:
    """For tests only: while open, sources parsed in this process may reach these exact
    (address, port) pairs, say an HTTPS server the test runs on 127.0.0.1."""
    global _test_servers
    with _test_servers_lock:
        before, _test_servers = _test_servers, _test_servers | frozenset(servers)
    try:
        yield
    finally:
        with _test_servers_lock:
            _test_servers = before


def parse_source(url: str, access: S3Access, *, local_instance: bool,
                 sftp_password: str | None = None, sftp_key_file: str | None = None,
                 ca_bundle: str | None = None):
    """The source a URL names. `local_instance` accepts what only the local cloud's test servers
    need: `http://` and SFTP host keys that are not known yet. It reaches no other address."""
    parsed = urlparse(url)
    if parsed.scheme == "s3" and parsed.netloc:
        return S3Source(bucket=parsed.netloc, key=unquote(parsed.path.lstrip("/")), access=access)
    if parsed.scheme == "https" or (parsed.scheme == "http" and local_instance):
        if not parsed.hostname:
            raise SourceRefusedError(f"source URL {url!r} has no host")
        return HttpsSource(url=url, allow_http=local_instance, ca_bundle=ca_bundle,
                           reachable=_test_servers)
    if parsed.scheme == "sftp" and parsed.hostname:
        if parsed.password:
            raise SourceRefusedError("put no password in the sftp:// URL",
                                     hint="pass it in the environment (EDL_SFTP_PASSWORD)")
        return SftpSource(host=parsed.hostname, port=parsed.port or 22,
                          username=unquote(parsed.username or ""),
                          path=unquote(parsed.path) or "/", password=sftp_password,
                          key_file=sftp_key_file, accept_new_host_keys=local_instance,
                          reachable=_test_servers)
    if parsed.scheme == "http":
        raise SourceRefusedError(f"source {url!r} is plain http",
                                 hint="use https:// (plain http is allowed on the local instance "
                                 "only)")
    raise SourceRefusedError(f"unsupported source {url!r}",
                             hint="use s3://bucket/key, https://host/path or sftp://user@host/path")


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is globally routable and unicast (an IPv4-mapped IPv6 address is
    not global: `::ffff:127.0.0.1` is refused too)."""
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified)


def check_address(host: str | None, port: int, reachable: frozenset[Server] = frozenset()) -> str:
    """Resolve `host` and return the address to connect to, or refuse if any address it resolves
    to is not public (and not one of the `reachable` test servers)."""
    if not host:  # a redirect can point anywhere, a URL without a host included
        raise SourceRefusedError("a source URL has no host", hint="check the source URL")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SourceNotFoundError(f"cannot resolve host {host!r} ({exc})",
                                  hint="check the source URL") from None
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not _is_public(ip) and (str(ip), port) not in reachable:
            raise SourceRefusedError(
                f"source host {host!r} resolves to {ip}, a loopback/link-local/private/reserved "
                "address: an ingest fetches from public hosts only",
                hint="put the file in the drop bucket (edl-api ingest uploads a local file) or "
                "serve it from a public host")
        addresses.append(str(ip))
    return addresses[0]


# -- S3 ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class S3Source:
    bucket: str
    key: str
    access: S3Access

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def list_files(self) -> list[SourceFile]:
        client = self.access.client()
        if self.key and not self.key.endswith("/"):
            try:
                head = client.head_object(Bucket=self.bucket, Key=self.key)
                return [SourceFile(self.url, posixpath.basename(self.key),
                                   head["ContentLength"], self.key)]
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                    raise self._refused(exc) from None
        prefix = self.key.rstrip("/") + "/" if self.key else ""
        try:
            found = [o for o in iter_objects(client, self.bucket, prefix)
                     if not o["Key"].endswith("/")]
        except ClientError as exc:
            raise self._refused(exc) from None
        if not found:
            raise SourceNotFoundError(f"source {self.url} does not exist (no object, and no "
                                      "objects under it)", hint="check the bucket and key")
        return [SourceFile(f"s3://{self.bucket}/{o['Key']}", o["Key"][len(prefix):], o["Size"],
                           o["Key"]) for o in sorted(found, key=lambda o: o["Key"])]

    def _refused(self, exc: ClientError) -> Exception:
        code = exc.response["Error"]["Code"]
        if code in ("NoSuchBucket", "404"):
            return SourceNotFoundError(f"source bucket of {self.url} does not exist",
                                       hint="check the bucket name")
        return SourceRefusedError(f"cannot read {self.url} ({code})",
                                  hint="the ingest job's role must be allowed to read it")

    @contextmanager
    def open(self, file: SourceFile) -> Iterator[BinaryIO]:
        with self.access.filesystem().open_input_file(f"{self.bucket}/{file.locator}") as f:
            yield f


# -- HTTPS ------------------------------------------------------------------------------------

class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address checked beforehand, while TLS still verifies the host name."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, port, context=context, timeout=TIMEOUT)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int) -> None:
        super().__init__(host, port, timeout=TIMEOUT)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


@dataclass(frozen=True)
class HttpsSource:
    url: str
    allow_http: bool = False
    ca_bundle: str | None = None
    reachable: frozenset[Server] = frozenset()

    def list_files(self) -> list[SourceFile]:
        parsed = urlparse(self.url)
        default_port = 443 if parsed.scheme == "https" else 80
        check_address(parsed.hostname, parsed.port or default_port, self.reachable)
        name = posixpath.basename(unquote(parsed.path)) or "download"
        return [SourceFile(self.url, name, None, self.url)]

    @contextmanager
    def open(self, file: SourceFile) -> Iterator[BinaryIO]:
        url = file.locator
        for _ in range(MAX_REDIRECTS + 1):
            connection, response = self._get(url)
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                connection.close()
                if not location:
                    break
                url = urljoin(url, location)
                continue
            try:
                if response.status in (404, 410):
                    raise SourceNotFoundError(f"source {url} does not exist (HTTP "
                                              f"{response.status})", hint="check the URL")
                if response.status >= 400:
                    raise SourceRefusedError(f"source {url} answered HTTP {response.status}",
                                             hint="check the URL and that it is public")
                yield response
            finally:
                connection.close()
            return
        raise SourceRefusedError(f"source {self.url} redirects too often")

    def _get(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme != "https" and not (parsed.scheme == "http" and self.allow_http):
            raise SourceRefusedError(f"source {url} is not https")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address = check_address(parsed.hostname, port, self.reachable)
        host = parsed.hostname or ""  # checked above: never empty here
        connection: http.client.HTTPConnection
        if parsed.scheme == "https":
            context = ssl.create_default_context(cafile=self.ca_bundle)
            connection = _PinnedHTTPSConnection(host, address, port, context)
        else:
            connection = _PinnedHTTPConnection(host, address, port)
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        try:
            connection.request("GET", path, headers={"User-Agent": "edl-ingest"})
            return connection, connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise SourceNotFoundError(f"cannot fetch {url} ({exc})",
                                      hint="check the URL and that the host is reachable") \
                from None


# -- SFTP -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SftpSource:
    host: str
    port: int
    username: str
    path: str
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    accept_new_host_keys: bool = False
    reachable: frozenset[Server] = frozenset()

    @property
    def url(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{self.path}"

    @contextmanager
    def _session(self):
        import paramiko

        address = check_address(self.host, self.port, self.reachable)
        client = paramiko.SSHClient()
        client.load_system_host_keys()
        # Host keys are verified in the cloud; the local instance talks to test servers.
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if self.accept_new_host_keys else paramiko.RejectPolicy())
        try:
            client.connect(address, port=self.port, username=self.username,
                           password=self.password, key_filename=self.key_file,
                           timeout=TIMEOUT, allow_agent=False, look_for_keys=False)
        except paramiko.AuthenticationException as exc:
            raise SourceRefusedError(f"SFTP login to {self.host} as {self.username!r} refused "
                                     f"({exc})", hint="check the SFTP user and password/key") \
                from None
        except (paramiko.SSHException, OSError) as exc:
            raise SourceNotFoundError(f"cannot connect to SFTP {self.host}:{self.port} ({exc})",
                                      hint="check the host, port and its host key") from None
        try:
            yield client.open_sftp()
        finally:
            client.close()

    def list_files(self) -> list[SourceFile]:
        with self._session() as sftp:
            try:
                top = sftp.stat(self.path)
            except OSError:
                raise SourceNotFoundError(f"source {self.url} does not exist",
                                          hint="check the path on the SFTP server") from None
            if not stat.S_ISDIR(top.st_mode):
                return [SourceFile(self.url, posixpath.basename(self.path), top.st_size,
                                   self.path)]
            files: list[SourceFile] = []
            self._walk(sftp, self.path.rstrip("/"), "", files)
        if not files:
            raise SourceNotFoundError(f"source {self.url} is an empty folder")
        return sorted(files, key=lambda f: f.path)

    def _walk(self, sftp, folder: str, relative: str, files: list[SourceFile]) -> None:
        for entry in sftp.listdir_attr(folder):
            full = f"{folder}/{entry.filename}"
            rel = f"{relative}{entry.filename}"
            if stat.S_ISDIR(entry.st_mode):
                self._walk(sftp, full, rel + "/", files)
            elif stat.S_ISREG(entry.st_mode):
                files.append(SourceFile(f"sftp://{self.host}{full}", rel, entry.st_size, full))

    @contextmanager
    def open(self, file: SourceFile) -> Iterator[BinaryIO]:
        with self._session() as sftp, sftp.open(file.locator, "rb") as handle:
            handle.prefetch(file.size)
            yield handle
