"""The journal's framing (`edl.local.state.journal`) and the recorder's rules, without moto.

A record is on disk when `append()` returns; a crash can only tear the last one, which is
dropped; anything else that does not check out is corruption, refused and left as it is. The
recorder answers a write only once it is journaled, and refuses writes once it cannot journal.
"""

from __future__ import annotations

import errno
import io
import struct
import zlib

import pytest

from edl.local.state.blobs import BlobStore
from edl.local.state.journal import (
    CorruptStateError,
    JournalWriter,
    frame,
    header_bytes,
    read_journal,
)
from edl.local.state.recorder import Recorder, is_write

HEADER = {"format": 1, "sequence": 0, "edl": "0.1.0", "moto": "5.2.5"}


@pytest.fixture
def journal(tmp_path):
    writer = JournalWriter.create(tmp_path / "journal-000000.log", HEADER)
    for payload in (b"first", b"second", b"x" * 70_000):
        writer.append(payload)
    writer.close()
    return tmp_path / "journal-000000.log"


def test_appended_records_read_back_in_order_with_the_header(journal):
    contents = read_journal(journal)
    assert contents.header == HEADER
    assert contents.records == (b"first", b"second", b"x" * 70_000)
    assert contents.torn_bytes == 0 and contents.valid_bytes == journal.stat().st_size


@pytest.mark.parametrize("tail", [b"\x00\x00", frame(b"third")[:-2],
                                  struct.pack(">II", 5, 0) + b"third"],
                         ids=["half-a-frame", "payload-cut-short", "last-checksum-wrong"])
def test_a_torn_last_record_is_dropped_and_the_rest_kept(journal, tail):
    whole = journal.stat().st_size
    with open(journal, "ab") as out:
        out.write(tail)
    contents = read_journal(journal)
    assert contents.records == (b"first", b"second", b"x" * 70_000)
    assert (contents.valid_bytes, contents.torn_bytes) == (whole, len(tail))


def test_appending_after_a_torn_tail_cuts_it_first(journal):
    with open(journal, "ab") as out:
        out.write(b"\x00\x00\x00")
    writer = JournalWriter.open(journal, read_journal(journal).valid_bytes)
    writer.append(b"fourth")
    writer.close()
    assert read_journal(journal).records[-1] == b"fourth"
    assert read_journal(journal).torn_bytes == 0


def test_a_bad_checksum_before_the_end_is_corruption_and_the_file_is_left_alone(journal):
    data = bytearray(journal.read_bytes())
    data[len(header_bytes(HEADER)) + 8] ^= 0xFF       # inside the first record's payload
    journal.write_bytes(bytes(data))
    with pytest.raises(CorruptStateError, match=r"record 1 .* fails its checksum"):
        read_journal(journal)
    assert journal.read_bytes() == bytes(data)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    path = tmp_path / "journal-000000.log"
    path.write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(CorruptStateError, match="not an EDL journal"):
        read_journal(path)


def test_a_frame_is_length_checksum_payload():
    assert frame(b"abc") == struct.pack(">II", 3, zlib.crc32(b"abc")) + b"abc"


@pytest.mark.parametrize("environ, body, write", [
    ({"REQUEST_METHOD": "GET", "PATH_INFO": "/bucket/key"}, b"", False),
    ({"REQUEST_METHOD": "PUT", "PATH_INFO": "/bucket/key",
      "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request"},
     b"data", True),
    ({"REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Scan"},
     b"{}", False),
    ({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
      "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}, b"{}", True),
    ({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
      "CONTENT_TYPE": "application/x-www-form-urlencoded"}, b"Action=ListRoles", False),
    ({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
      "CONTENT_TYPE": "application/x-www-form-urlencoded"}, b"Action=GetSessionToken", True),
    ({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
      "CONTENT_TYPE": "application/x-www-form-urlencoded"}, b"Action=AssumeRole", True),
    ({"REQUEST_METHOD": "POST", "PATH_INFO": "/moto-api/reset"}, b"", False),
], ids=["s3-get", "s3-put", "ddb-scan", "ddb-put", "iam-list", "sts-session", "sts-assume",
        "moto-api"])
def test_what_is_journaled(environ, body, write):
    assert is_write(environ, body) is write


def _put(recorder: Recorder) -> tuple[list, bytes]:
    started: list = []
    environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": "/b/k", "CONTENT_LENGTH": "4",
               "wsgi.input": io.BytesIO(b"data")}
    body = b"".join(recorder(environ, lambda status, headers: started.append(status)))
    return started, body


def test_a_write_is_answered_only_after_it_is_journaled(tmp_path):
    events: list[str] = []

    def app(environ, start_response):
        events.append("applied")
        start_response("200 OK", [])
        return [b"done"]

    recorder = Recorder(app, BlobStore(tmp_path),
                        lambda record, weight: events.append("journaled"),
                        lambda needs_snapshot: None, str(tmp_path))
    started, body = _put(recorder)
    assert (events, started, body) == (["applied", "journaled"], ["200 OK"], b"done")


def test_a_full_disk_refuses_the_write_and_every_later_one_naming_the_folder(tmp_path):
    def full(record, weight):
        raise OSError(errno.ENOSPC, "No space left on device")

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b""]

    recorder = Recorder(app, BlobStore(tmp_path), full, lambda needs_snapshot: None,
                        str(tmp_path))
    for _ in range(2):
        started, body = _put(recorder)
        assert started == ["503 Service Unavailable"]
        assert str(tmp_path).encode() in body and b"No space left" in body


def test_a_state_folder_that_cannot_be_made_names_it_and_what_to_do(tmp_path):
    from edl.local.state.store import LakeState, LocalStateError

    (tmp_path / "home").write_text("a file where the EDL home's folder should be")
    folder = tmp_path / "home" / "local" / "state"
    with pytest.raises(LocalStateError) as refused:
        LakeState.open(folder)
    assert str(folder) in refused.value.message and "cannot be written" in refused.value.message
    assert refused.value.hint
