"""The ingest job end to end on moto (server on 127.0.0.1) and local Spark."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from edl.utils import lake as lakeapi
from tests.functional.ingest_helpers import (
    DATASET,
    EVENTS,
    EXTRA_CSV,
    INNER_ZIP,
    SITES_CSV,
    gzip_bytes,
    ingest,
    zip_bytes,
)


def test_several_files_archives_and_formats(lake, spark, capsys):
    lake.put("batch1/batch1.zip", zip_bytes({"sites/a.csv": SITES_CSV,
                                             "sites/nested/inner.zip": INNER_ZIP}))
    lake.put("batch1/extra.csv.gz", gzip_bytes(EXTRA_CSV))
    lake.put("batch1/logs/events.jsonl", EVENTS)
    source = f"s3://{lake.drop_bucket}/batch1"

    assert ingest(lake, spark, source) == 0
    assert "update 0000000001 complete: 4 file(s), 5 rows" in capsys.readouterr().out

    [listed] = lakeapi.list_updates(DATASET)
    update = lakeapi.get_update(DATASET, listed.update_id, files=True)   # files: the manifest
    assert (update.update_id, update.kind, update.status, update.rows) == \
        ("0000000001", "snapshot", "complete", 5)
    assert [f.path for f in update.files] == ["extra.csv", "logs/events.jsonl",
                                              "sites/a.csv", "sites/nested/eu/c.csv"]
    assert [f.format for f in update.files] == ["csv", "jsonl", "csv", "csv"]
    assert update.files[0].sha256 == hashlib.sha256(EXTRA_CSV).hexdigest()
    # a plain S3 object is copied server-side and checksummed by its conversion
    assert (update.files[1].bytes, update.files[1].sha256) == \
        (len(EVENTS), hashlib.sha256(EVENTS).hexdigest())
    assert [c["name"] for c in update.columns] == ["id", "name", "score"]

    raw = f"{DATASET}/raw/0000000001/"
    assert lake.keys(raw) == [raw + p for p in ("extra.csv", "logs/events.jsonl", "sites/a.csv",
                                                "sites/nested/eu/c.csv")]
    body = lake.s3.get_object(Bucket=lake.data_bucket, Key=raw + "sites/a.csv")["Body"].read()
    assert body == SITES_CSV
    data = f"{DATASET}/data/0000000001/"
    assert lake.keys(data) == [data + "_edl_manifest.json"] + [
        data + f"part-0000{i}.parquet" for i in range(4)]
    part = lake.s3.get_object(Bucket=lake.data_bucket, Key=data + "part-00001.parquet")
    table = pq.read_table(io.BytesIO(part["Body"].read()))
    assert table.schema.field("score").type == pa.float64()   # the JSON ints were widened

    rows = sorted(lakeapi.read(spark, DATASET).collect())
    assert [tuple(r) for r in rows] == [(1, "Smith, J.", 1.5), (2, "two\nlines", 2.0),
                                       (3, "carol", 3.25), (4, "dan", 4.0), (5, "eve", 5.0)]

    manifest = json.loads(lake.s3.get_object(Bucket=lake.data_bucket,
                                             Key=data + "_edl_manifest.json")["Body"].read())
    assert manifest["files"][2]["origin"].endswith("batch1.zip!sites/a.csv")


def test_latin1_csv_and_glue_registration(lake, spark):
    source = lake.put("ville.csv", "id;ville\n1;Besançon\n2;Évry\n".encode("latin-1"))
    assert ingest(lake, spark, source, "--encoding", "latin-1", "--delimiter", ";") == 0
    assert sorted(r.ville for r in lakeapi.read(spark, DATASET).collect()) == ["Besançon", "Évry"]

    view = lake.glue.get_table(DatabaseName="edl_local_sensitive", Name=DATASET)["Table"]
    assert view["TableType"] == "VIRTUAL_VIEW"
    assert [c["Name"] for c in view["StorageDescriptor"]["Columns"]] == ["id", "ville"]
    table = lake.glue.get_table(DatabaseName="edl_local_sensitive_updates", Name=DATASET)["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["commit_seq", "update_id", "kind"]
    [partition] = lake.glue.get_partitions(DatabaseName="edl_local_sensitive_updates",
                                           TableName=DATASET)["Partitions"]
    assert partition["Values"] == ["1", "0000000001", "snapshot"]
    assert partition["StorageDescriptor"]["Location"] == \
        f"s3://{lake.data_bucket}/{DATASET}/data/0000000001/"


def test_parquet_and_excel_files_unify(lake, spark):
    import openpyxl

    buf = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array([1], pa.int32()), "name": ["p"]}), buf)
    lake.put("mixed/a.parquet", buf.getvalue())
    book = openpyxl.Workbook()
    book.active.append(["id", "name"])
    book.active.append([2, "x"])
    xlsx = io.BytesIO()
    book.save(xlsx)
    lake.put("mixed/b.xlsx", xlsx.getvalue())
    assert ingest(lake, spark, f"s3://{lake.drop_bucket}/mixed/") == 0
    rows = lakeapi.read(spark, DATASET).orderBy("id").collect()
    assert [tuple(r) for r in rows] == [(1, "p"), (2, "x")]
    update = lakeapi.get_update(DATASET, "1", files=True)
    assert update.columns[0] == {"name": "id", "type": "int64"}
    # copied server-side; parquet is read at random, so it is checksummed in a pass of its own
    assert [(f.bytes, f.sha256) for f in update.files] == [
        (len(body), hashlib.sha256(body).hexdigest()) for body in (buf.getvalue(),
                                                                   xlsx.getvalue())]
    raw = f"{DATASET}/raw/0000000001/"
    assert lake.keys(raw) == [raw + "a.parquet", raw + "b.xlsx"]
