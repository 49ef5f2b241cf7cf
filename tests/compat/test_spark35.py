"""A pipeline run through the wrapper under pyspark 3.5, as Glue 5 runs it, on a local cloud.

The run happens in `.venv-spark35/` (`spark35_pipeline.py` is the script, its report the JSON
line it prints): the lake there holds a snapshot and a delta with dates, timestamps, decimals,
nulls, nested values and non-ASCII text; pyspark 3.5 has no Python data sources and no S3
filesystem, so the parts go through RDD tasks, and the cloud's path (Spark's own parquet reader
and writer) runs on local files standing in for `s3://`. The Glue job's entry script runs the
pipeline once more from the package `edl deploy-pipeline` builds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.compat.spark35_venv import ROOT

MISMATCH = "does not match the SHA-256 recorded at commit"
# the first test also makes the venv when there is none (about a minute) and runs the script
pytestmark = pytest.mark.timeout(900)


def visit(id_: int, site: str, day: int, cost: str, note: str | None) -> dict:
    return {"id": id_, "site": site, "visit_date": f"2026-01-{day:02d}",
            "seen_at": f"2026-01-{day:02d}T08:30:15.123456+00:00",
            "wall_clock": f"2026-01-{day:02d}T23:45:00", "cost": cost, "note": note,
            "tags": [site.lower(), "t€"],
            "address": {"city": site, "zip": None if id_ % 2 else f"{id_:05d}"},
            "scores": {"a": id_, "b": None}}


# the snapshot (1 Lyon, 2 Lyon, 3 Zürich) with the delta applied: 2 updated, 3 deleted, 4 new
VISITS = [visit(1, "Lyon", 5, "12.50", "première"), visit(2, "Lyon", 6, "8.75", "corrigé"),
          visit(4, "東京", 9, "3.10", "新")]


@pytest.fixture(scope="module")
def report(spark35_python: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("spark35")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYSPARK_", "SPARK_", "EDL_", "AWS_"))}
    done = subprocess.run([str(spark35_python), "-m", "tests.compat.spark35_pipeline", str(work)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, "the pyspark 3.5 run failed:\n" + "\n".join(
        line for line in done.stderr.splitlines() if not line.lstrip().startswith("at ")
    )[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_run_is_pyspark_3_5_reaching_the_parts_through_rdd_tasks(report):
    assert report["spark"].startswith("3.5.")
    assert report["path"] == "rdd tasks"
    assert report["session_time_zone"] != "UTC"     # a mixed-up instant would show


def test_lake_read_applies_the_delta_and_keeps_every_type(report):
    assert report["input"] == VISITS
    assert [v["id"] for v in report["input_as_of_1"]] == [1, 2, 3]
    assert report["input_as_of_1"][1]["cost"] == "7.25"


def test_the_pipeline_commits_its_output_with_lineage(report):
    update = report["update"]
    assert (update["status"], update["rows"], update["kind"]) == ("complete", 3, "snapshot")
    assert update["source"] == "pipeline:enrich_visits" and update["parts"] >= 1
    assert report["lineage"] == {
        "pipeline": "enrich_visits", "code_hash": 64,
        "inputs": [{"alias": "visits", "dataset": "visits", "update_id": "0000000002",
                    "updates": ["0000000001", "0000000002"]}]}
    assert report["events"] == ["START", "COMPLETE"]
    assert report["staging_left"] == []


def test_lake_read_of_the_output_gives_the_pipelines_rows(report):
    assert report["output"] == [
        {**v, "cost_with_tax": float(v["cost"]) * 1.2, "seen_day": v["visit_date"]}
        for v in VISITS]
    assert report["output_types"] == {
        "id": "bigint", "site": "string", "visit_date": "date", "seen_at": "timestamp",
        "wall_clock": "timestamp_ntz", "cost": "decimal(10,2)", "note": "string",
        "tags": "array<string>", "address": "struct<city:string,zip:string>",
        "scores": "map<string,bigint>", "cost_with_tax": "double", "seen_day": "date"}


def test_a_part_changed_after_the_commit_fails_the_read(report):
    assert "ChecksumMismatchError" in report["tampered_read"]
    assert MISMATCH in report["tampered_read"]


def test_the_clouds_spark_filesystem_path_reads_and_writes_the_same(report):
    cloud = report["spark_filesystem"]
    assert cloud["read"] == VISITS                  # deltas ordered by Spark's row_index
    assert sorted(rows for _name, rows in cloud["written"]) == [1, 1, 1]
    assert all(name.startswith("part-") and name.endswith(".parquet")
               for name, _rows in cloud["written"])
    assert "_SUCCESS" in cloud["listed"]            # left by Spark's committer, not a part
    assert len([n for n in cloud["listed"] if n.endswith(".parquet.crc")]) == 3
    for tampered in ("tampered_stored_checksum", "tampered_no_checksum"):
        assert MISMATCH in cloud[tampered] and "visits update 0000000002" in cloud[tampered]


def test_the_glue_entry_script_runs_the_pipeline_from_its_package(report):
    glue = report["glue_entry_script"]
    assert glue["exit"] == 0
    assert glue["answer"]["outputs"]["enriched"]["rows"] == 3
    assert glue["update"] == "complete"
