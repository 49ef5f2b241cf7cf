"""Ingest from HTTPS and SFTP servers on 127.0.0.1 (allowed on the local instance only)."""

from __future__ import annotations

import io

from edl.utils import lake as lakeapi
from tests.functional.ingest_fixtures import *  # noqa: F403 - fixtures
from tests.functional.ingest_fixtures import DATASET, gzip_bytes, ingest, zip_bytes
from tests.functional.ingest_fixtures import (SFTP_PASSWORD, SFTP_USER, https_server,
                                              sftp_server)


def test_https_source_with_tls_verified(lake, spark, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "trials.csv.gz").write_bytes(gzip_bytes(b"id,name\n1,a\n2,b\n"))
    with https_server(root, tmp_path) as (base, ca_bundle):
        assert ingest(lake, spark, f"{base}/trials.csv.gz", "--ca-bundle", ca_bundle) == 0
        assert ingest(lake, spark, f"{base}/missing.csv", "--ca-bundle", ca_bundle) == 1
        # without trusting the test's certificate, TLS verification refuses the server
        assert ingest(lake, spark, f"{base}/trials.csv.gz") == 1
    first, missing, untrusted = lakeapi.list_updates(DATASET)
    first = lakeapi.get_update(DATASET, first.update_id, files=True)   # files: the manifest
    assert first.status == "complete" and first.files[0].path == "trials.csv"
    assert missing.status == "failed" and "does not exist (HTTP 404)" in missing.reason
    assert untrusted.status == "failed" and "CERTIFICATE_VERIFY_FAILED" in untrusted.reason
    assert sorted(tuple(r) for r in lakeapi.read(spark, DATASET).collect()) == [(1, "a"),
                                                                               (2, "b")]


def test_sftp_folder_with_excel_and_zip(lake, spark, tmp_path, monkeypatch):
    import openpyxl

    root = tmp_path / "sftp"
    (root / "out" / "2024").mkdir(parents=True)
    book = openpyxl.Workbook()
    book.active.append(["id", "name"])
    book.active.append([1, "from excel"])
    buf = io.BytesIO()
    book.save(buf)
    (root / "out" / "2024" / "sheet.xlsx").write_bytes(buf.getvalue())
    (root / "out" / "more.zip").write_bytes(zip_bytes({"z/b.csv": b"id,name\n2,from zip\n"}))
    monkeypatch.setenv("EDL_SFTP_PASSWORD", SFTP_PASSWORD)
    with sftp_server(root) as port:
        assert ingest(lake, spark, f"sftp://{SFTP_USER}@127.0.0.1:{port}/out") == 0
        monkeypatch.setenv("EDL_SFTP_PASSWORD", "wrong")
        assert ingest(lake, spark, f"sftp://{SFTP_USER}@127.0.0.1:{port}/out") == 1
    done, refused = lakeapi.list_updates(DATASET)
    done = lakeapi.get_update(DATASET, done.update_id, files=True)
    assert [f.path for f in done.files] == ["2024/sheet.xlsx", "z/b.csv"]
    assert refused.status == "failed" and "login" in refused.reason
    rows = lakeapi.read(spark, DATASET).orderBy("id").collect()
    assert [tuple(r) for r in rows] == [(1, "from excel"), (2, "from zip")]
