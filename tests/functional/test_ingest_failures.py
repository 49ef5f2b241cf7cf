"""Bad input, crashes and races: the update ends failed with its reason, nothing is readable,
nothing is left behind, and a rerun takes a new id."""

from __future__ import annotations

import gzip
import threading

import pytest

from edl.core_resources.pipelines.ingest.job import IngestJob
from edl.utils import lake as lakeapi
from tests.functional.ingest_helpers import DATASET, ingest, zip_bytes

BAD_INPUTS = {
    "corrupt archive": ("batch.zip", b"PK\x03\x04 truncated", (), "not a readable zip archive"),
    "zip slip": ("slip.zip", zip_bytes({"../../evil.csv": b"id\n1\n"}), (),
                 "escapes the archive's folder"),
    "absolute path": ("abs.zip", zip_bytes({"/tmp/evil.csv": b"id\n1\n"}), (), "absolute path"),
    "zip bomb": ("bomb.csv.gz", gzip.compress(b"0" * (8 << 20)), ("--ratio-grace-mib", "1"),
                 "possible zip bomb"),
    "empty file": ("batch.zip", zip_bytes({"a.csv": b"id\n1\n", "empty.csv": b""}), (),
                   "empty.csv is empty"),
    "empty S3 object": ("empty.csv", b"", (), "empty.csv is empty (0 bytes)"),
    "wrong field count": ("rows.csv", b"id,name\n1,a\n2,b,c\n", (),
                          "rows.csv line 3: expected 2 fields, found 3"),
    "undecodable bytes": ("enc.csv", b"id,name\n1,caf\xe9\n", (),
                          r"enc.csv line 2: bytes b'\xe9' are not valid utf-8"),
    "unknown format": ("batch.zip", zip_bytes({"notes.txt": b"hello"}), (),
                       "notes.txt: unknown format '.txt'"),
    "delta without keys": ("delta.csv", b"name,op\na,U\n", ("--kind", "delta"),
                           "lacks the key column(s) id"),
    "schema conflict": ("mixed.zip", zip_bytes({"a.csv": b"id,v\n1,2\n", "b.csv": b"id,v\nx,2\n"}),
                        (), "column 'id': a.csv (int64) vs b.csv (string)"),
}


def assert_failed_and_invisible(lake, spark, reason: str) -> None:
    [update] = lakeapi.list_updates(DATASET)
    assert update.status == "failed"
    assert reason in update.reason
    with pytest.raises(lakeapi.NoDataError):
        lakeapi.read(spark, DATASET)
    assert lake.keys(f"{DATASET}/") == []


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_the_update_with_its_reason(lake, spark, capsys, case):
    name, body, args, reason = BAD_INPUTS[case]
    assert ingest(lake, spark, lake.put(name, body), *args) == 1
    assert reason in capsys.readouterr().err
    assert_failed_and_invisible(lake, spark, reason)


def test_missing_source(lake, spark, capsys):
    assert ingest(lake, spark, f"s3://{lake.drop_bucket}/nothing/here.zip") == 1
    assert "does not exist" in capsys.readouterr().err
    assert_failed_and_invisible(lake, spark, "does not exist")


def test_https_to_loopback_is_refused_outside_the_local_instance(lake, spark, capsys):
    code = ingest(lake, spark, "https://127.0.0.1:9/a.csv", context=lake.as_remote())
    assert code == 1
    assert "loopback/link-local" in capsys.readouterr().err
    assert_failed_and_invisible(lake, spark, "127.0.0.1")


def test_a_crash_leaves_the_update_failed_and_a_rerun_succeeds(lake, spark, monkeypatch):
    source = lake.put("a.csv", b"id,name\n1,a\n")

    def crash(*args, **kwargs):
        raise RuntimeError("executor lost")
    with monkeypatch.context() as patch:
        patch.setattr(IngestJob, "_conform", crash)
        with pytest.raises(RuntimeError):
            ingest(lake, spark, source, "--debug")
    assert_failed_and_invisible(lake, spark, "internal error: RuntimeError: executor lost")

    assert ingest(lake, spark, source) == 0
    first, second = lakeapi.list_updates(DATASET)
    assert (first.status, second.status, second.update_id) == ("failed", "complete", "0000000002")
    assert [tuple(r) for r in lakeapi.read(spark, DATASET).collect()] == [(1, "a")]


def test_a_complete_update_cannot_be_ingested_again(lake, spark, capsys):
    source = lake.put("a.csv", b"id,name\n1,a\n")
    assert ingest(lake, spark, source) == 0
    before = lake.keys(f"{DATASET}/")
    assert ingest(lake, spark, lake.put("b.csv", b"id,name\n2,b\n"), "--update", "1") == 1
    assert "is complete; it cannot be ingested again" in capsys.readouterr().err
    [update] = lakeapi.list_updates(DATASET)
    assert (update.status, update.rows, update.source) == ("complete", 1, source)
    assert lake.keys(f"{DATASET}/") == before


def test_two_concurrent_ingests_both_succeed(lake, spark):
    sources = [lake.put(f"c{i}.csv", f"id,name\n{i},n{i}\n".encode()) for i in range(2)]
    codes: list[int] = []
    threads = [threading.Thread(target=lambda s=s: codes.append(ingest(lake, spark, s)))
               for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0, 0]
    updates = lakeapi.list_updates(DATASET)
    assert sorted(u.update_id for u in updates) == ["0000000001", "0000000002"]
    assert all(u.status == "complete" for u in updates)
    seen = [[r.id for r in lakeapi.read(spark, DATASET, as_of=u.update_id).collect()]
            for u in updates]
    assert sorted(seen) == [[0], [1]]   # each update holds exactly its own source


UPDATE_LIMITS = {
    "plain files, refused from the listing": (
        {"a.csv": b"id\n" + b"1\n" * 20, "b.csv": b"id\n" + b"2\n" * 20}, "60",
        "the source of clinical_trials/0000000001: 86 bytes, more than 60 bytes in one update"),
    "archives, refused once unpacked": (
        {"a.csv.gz": gzip.compress(b"id\n" + b"1\n" * 1000),
         "b.csv.gz": gzip.compress(b"id\n" + b"2\n" * 1000)}, "3000",
        "the unpacked files of clinical_trials/0000000001: 4006 bytes, more than 3000 bytes"),
}


@pytest.mark.parametrize("case", list(UPDATE_LIMITS))
def test_an_update_is_limited_in_bytes_across_all_its_files(lake, spark, capsys, case):
    files, limit, reason = UPDATE_LIMITS[case]
    for name, body in files.items():
        lake.put(f"batch/{name}", body)
    code = ingest(lake, spark, f"s3://{lake.drop_bucket}/batch",
                  "--max-total-gib", repr(int(limit) / (1 << 30)))
    assert code == 1
    assert reason in capsys.readouterr().err
    assert_failed_and_invisible(lake, spark, reason)
