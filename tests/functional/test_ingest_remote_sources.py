"""Ingest from HTTPS and SFTP servers on 127.0.0.1, and what an ingest never fetches from.

The test servers listen on the loopback, which no ingest reaches: each test lets its own server's
exact address and port be reached, in code (`reachable_test_servers`), as no user can.
"""

from __future__ import annotations

import io
from urllib.parse import urlsplit

from edl.core_resources.pipelines.ingest.sources import reachable_test_servers
from edl.utils import lake as lakeapi
from tests.functional.ingest_helpers import (
    DATASET,
    SFTP_PASSWORD,
    SFTP_USER,
    gzip_bytes,
    https_server,
    ingest,
    sftp_server,
    zip_bytes,
)


def test_https_source_with_tls_verified(lake, spark, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "trials.csv.gz").write_bytes(gzip_bytes(b"id,name\n1,a\n2,b\n"))
    with https_server(root, tmp_path) as (base, ca_bundle), \
            reachable_test_servers(("127.0.0.1", urlsplit(base).port)):
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
    with sftp_server(root) as port, reachable_test_servers(("127.0.0.1", port)):
        assert ingest(lake, spark, f"sftp://{SFTP_USER}@127.0.0.1:{port}/out") == 0
        monkeypatch.setenv("EDL_SFTP_PASSWORD", "wrong")
        assert ingest(lake, spark, f"sftp://{SFTP_USER}@127.0.0.1:{port}/out") == 1
    done, refused = lakeapi.list_updates(DATASET)
    done = lakeapi.get_update(DATASET, done.update_id, files=True)
    assert [f.path for f in done.files] == ["2024/sheet.xlsx", "z/b.csv"]
    assert refused.status == "failed" and "login" in refused.reason
    rows = lakeapi.read(spark, DATASET).orderBy("id").collect()
    assert [tuple(r) for r in rows] == [(1, "from excel"), (2, "from zip")]


def test_the_local_instance_never_fetches_from_its_own_runtime_or_private_ranges(lake, spark,
                                                                                 tmp_path):
    """moto's state, the REST API, the instance metadata service, the office network: none is a
    source, on `local` too - and a test server is reachable only where the test says so."""
    aws = urlsplit(lake.endpoint)
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.csv").write_bytes(b"id\n1\n")
    with https_server(root, tmp_path) as (base, ca_bundle):
        sources = [f"http://127.0.0.1:{aws.port}/moto-api/data.json",
                   f"http://localhost:{aws.port}/", "http://169.254.169.254/latest/meta-data/",
                   "https://10.0.0.1/a.csv", f"{base}/a.csv"]
        with reachable_test_servers(("127.0.0.1", urlsplit(base).port + 1)):
            for source in sources:
                assert ingest(lake, spark, source, "--ca-bundle", ca_bundle) == 1, source
    updates = lakeapi.list_updates(DATASET)
    assert [u.status for u in updates] == ["failed"] * len(sources)
    assert all("an ingest fetches from public hosts only" in u.reason for u in updates)
    assert lake.keys(f"{DATASET}/") == []
