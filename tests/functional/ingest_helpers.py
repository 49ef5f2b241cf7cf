"""Helpers of the ingest and lake tests: moto as a real server on 127.0.0.1, and a local lake.

Spark's Python workers are separate processes, so an in-process moto mock is invisible to them:
moto runs as a threaded server on a free loopback port for the session, and the local instance is
pointed at it the way `edl local start` does (the state file in the EDL home). Each test starts
from a reset server with the metadata tables, the buckets and the `clinical_trials` dataset.

It also holds real HTTPS and SFTP servers on 127.0.0.1 (threads in the test process): the HTTPS
server serves a folder with a self-signed certificate for 127.0.0.1; the SFTP server is paramiko's
server interface over a folder, read-only, with one user and password.

The `moto_server` and `lake` fixtures are in `conftest.py`; tests import the helpers from here.
"""

from __future__ import annotations

import datetime
import functools
import http.server
import io
import ipaddress
import os
import socket
import ssl
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko

from edl.naming import table_name
from edl.utils.context import LakeContext

INSTANCE = "local"
REGION = "us-east-1"
TIER = "sensitive"
DATASET = "clinical_trials"

_KEYS = {
    "datasets": ([("dataset", "HASH")], [("dataset", "S")]),
    "updates": ([("dataset", "HASH"), ("update_id", "RANGE")],
                [("dataset", "S"), ("update_id", "S")]),
    "jobs": ([("job_id", "HASH")], [("job_id", "S")]),
    "pipelines": ([("pipeline", "HASH")], [("pipeline", "S")]),
    "lambdas": ([("name", "HASH")], [("name", "S")]),
    # the sweep expires grants (and audits it) on every run
    "grants": ([("dataset", "HASH"), ("grant_id", "RANGE")],
               [("dataset", "S"), ("grant_id", "S")]),
    "audit": ([("subject", "HASH"), ("event_id", "RANGE")],
              [("subject", "S"), ("event_id", "S")]),
}


def create_metadata_tables(dynamodb_client, instance: str = INSTANCE) -> None:
    for table, (keys, attributes) in _KEYS.items():
        dynamodb_client.create_table(
            TableName=table_name(instance, table), BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": n, "KeyType": t} for n, t in keys],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in attributes])


@dataclass
class LocalLake:
    endpoint: str
    s3: object
    glue: object
    context: LakeContext
    data_bucket: str
    drop_bucket: str

    def put(self, key: str, body: bytes) -> str:
        """Drop a file into the drop bucket; returns its s3:// URL."""
        self.s3.put_object(Bucket=self.drop_bucket, Key=key, Body=body)
        return f"s3://{self.drop_bucket}/{key}"

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.data_bucket,
                                                                 Prefix=prefix)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def as_remote(self) -> LakeContext:
        """The same lake, treated as a cloud instance (no loopback sources allowed)."""
        return replace(self.context, is_local=False)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buf.getvalue()


def gzip_bytes(body: bytes) -> bytes:
    import gzip

    return gzip.compress(body)


# -- samples the functional and e2e ingest tests share ---------------------------------------------

SITES_CSV = '\ufeffid,name,score\n1,"Smith, J.",1.5\n2,"two\nlines",2\n'.encode()
INNER_ZIP = zip_bytes({"eu/c.csv": b"id,name,score\n5,eve,5\n"})
EXTRA_CSV = b"id,name,score\n3,carol,3.25\n"
EVENTS = b'{"id": 4, "name": "dan", "score": 4}\n'

# Seven updates of a dataset keyed on `id`, and the rows each update's version reads back.
HISTORY = [
    ("snapshot", b"id,val\n1,a\n2,b\n3,c\n"),
    ("delta", b"id,val,op\n2,b2,U\n4,d,I\n"),
    ("delta", b"id,val,op\n1,,D\n4,d3,U\n4,d4,U\n"),       # last write wins inside a delta too
    ("snapshot", b"id,val\n10,x\n11,y\n"),
    ("delta", b"id,val,op\n10,,D\n12,z,I\n"),
    ("snapshot", b"id,val\n20,p\n"),
    ("delta", b"id,val,op\n20,p7,U\n21,q,I\n"),
]
EXPECTED = {
    1: {1: "a", 2: "b", 3: "c"},
    2: {1: "a", 2: "b2", 3: "c", 4: "d"},
    3: {2: "b2", 3: "c", 4: "d4"},
    4: {10: "x", 11: "y"},
    5: {11: "y", 12: "z"},
    6: {20: "p"},
    7: {20: "p7", 21: "q"},
}


def ingest(lake: LocalLake, spark, source: str, *args: str, context: LakeContext | None = None,
           dataset: str = DATASET) -> int:
    """Run the ingest command in-process, as `python -m edl.core_resources.pipelines.ingest`."""
    from edl.core_resources.pipelines.ingest.__main__ import main

    return main(["--instance", INSTANCE, "--dataset", dataset, "--source", source, *args],
                spark=spark, context=context or lake.context)


# -- HTTPS and SFTP servers on 127.0.0.1 ----------------------------------------------------------


SFTP_USER, SFTP_PASSWORD = "drop", "s3cret"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@contextmanager
def https_server(root: Path, certs: Path):
    """Yields (base URL, CA bundle path)."""
    cert_file, key_file = _self_signed(certs)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", str(cert_file)
    finally:
        server.shutdown()
        server.server_close()


class _Server(paramiko.ServerInterface):
    def check_auth_password(self, username, password):
        if (username, password) == (SFTP_USER, SFTP_PASSWORD):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "password"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else \
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


def _folder_sftp(root: Path):
    class FolderSftp(paramiko.SFTPServerInterface):
        def _real(self, path: str) -> str:
            return str(root / path.lstrip("/"))

        def list_folder(self, path):
            try:
                real = self._real(path)
                return [paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(real, n)), n)
                        for n in os.listdir(real)]
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

        def stat(self, path):
            try:
                return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

        lstat = stat

        def open(self, path, flags, attr):
            try:
                handle = _Handle(flags)
                # the handle owns the file: paramiko closes `readfile` when the client does
                handle.readfile = open(self._real(path), "rb")  # noqa: SIM115
                handle.filename = self._real(path)
                return handle
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

        def canonicalize(self, path):
            return "/" + path.lstrip("/")
    return FolderSftp


@contextmanager
def sftp_server(root: Path):
    """Yields the port of an SFTP server over `root` (user drop / password s3cret)."""
    host_key = paramiko.RSAKey.generate(2048)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _folder_sftp(root))
            transport.start_server(server=_Server())
            transports.append(transport)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for transport in transports:
            transport.close()
        listener.close()
