"""The pipeline wrapper on moto with a real Spark: inputs read, code run, outputs checked and
committed as updates, lineage kept; and every way a run can fail leaves nothing visible."""

from __future__ import annotations

import datetime
import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from edl.core_resources.pipelines.wrapper.__main__ import main
from edl.utils import lake as lakeapi
from edl.utils.metadata import DatasetRecord, DeltaConvention
from tests.functional.ingest_helpers import DATASET, INSTANCE, REGION, TIER, ingest

OUTPUT = "trials_by_site"
# Visits with the types users have: dates, timestamps, decimals, nulls, non-ASCII.
VISITS = ("id,site,visit_date,seen_at,cost,note\n"
          "1,Lyon,2026-01-05,2026-01-05T08:30:00Z,12.50,première\n"
          "2,Lyon,2026-01-06,2026-01-06T09:00:00Z,7.25,\n"
          "3,Zürich,2026-02-01,2026-02-01T10:15:00Z,100.00,ok\n").encode()


def pipeline(folder: Path, body: str, *, checks: str = "", kind: str = "pyspark",
             outputs: str = f"by_site: {{dataset: {OUTPUT}, kind: snapshot}}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = textwrap.dedent(f"""\
        name: trials_by_site
        kind: {kind}
        inputs:
          visits: {{dataset: {DATASET}}}
        outputs:
          {outputs}
        trigger: manual
        """)
    if checks:
        config += f"checks:\n  by_site: {checks}\n"
    (folder / "pipeline_config.yaml").write_text(config)
    if kind == "pyspark":
        (folder / "pipeline.py").write_text(textwrap.dedent(body))
    else:
        (folder / "by_site.sql").write_text(body)
    return folder


BY_SITE = """\
    from pyspark.sql import functions as F

    def run(spark, inputs, params):
        visits = inputs["visits"]
        return {"by_site": visits.groupBy("site").agg(
            F.count("*").alias("visits"), F.min("visit_date").alias("first_visit"),
            F.max("seen_at").alias("last_seen"), F.sum("cost").alias("cost"))}
    """


@pytest.fixture
def trials(lake, spark):
    """clinical_trials holding the visits (one snapshot), and an empty output dataset."""
    assert ingest(lake, spark, lake.put("visits.csv", VISITS)) == 0
    lake.context.metadata.put_dataset(DatasetRecord(
        dataset=OUTPUT, tier=TIER, owner="alice", home_region=REGION,
        delta=DeltaConvention(("site",), None, None)))
    return lake


def run(lake, spark, folder: Path, *args: str) -> int:
    return main(["--instance", INSTANCE, "--pipeline-dir", str(folder), "--no-role", *args],
                spark=spark, context=lake.context)


def test_a_pyspark_pipeline_commits_its_output_with_lineage_and_the_types_kept(
        trials, spark, tmp_path, capsys):
    assert run(trials, spark, pipeline(tmp_path / "p", BY_SITE)) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    update_id = answer["outputs"]["by_site"]["update_id"]

    rows = {r["site"]: r.asDict() for r in lakeapi.read(spark, OUTPUT).collect()}
    assert rows["Lyon"]["visits"] == 2 and rows["Zürich"]["visits"] == 1
    assert rows["Lyon"]["first_visit"] == datetime.date(2026, 1, 5)
    assert rows["Zürich"]["last_seen"].astimezone(datetime.UTC) == datetime.datetime(
        2026, 2, 1, 10, 15, tzinfo=datetime.UTC)
    assert rows["Lyon"]["cost"] == Decimal("19.75")

    update = lakeapi.get_update(OUTPUT, update_id, context=trials.context)
    assert update.status == "complete" and update.rows == 2
    assert update.source == "pipeline:trials_by_site"
    assert update.lineage["pipeline"] == "trials_by_site"
    assert update.lineage["inputs"] == [{"alias": "visits", "dataset": DATASET,
                                         "update_id": "0000000001",
                                         "updates": ["0000000001"]}]
    assert len(update.lineage["code_hash"]) == 64
    assert not trials.keys(f"_edl_staging/{OUTPUT}/")          # staging cleaned up


def test_inputs_are_read_as_of_the_update_given(trials, spark, tmp_path, capsys):
    later = b"id,site,visit_date,seen_at,cost,note\n9,Nice,2026-03-01,2026-03-01T00:00:00Z,1,\n"
    assert ingest(trials, spark, trials.put("later.csv", later)) == 0
    assert run(trials, spark, pipeline(tmp_path / "p", BY_SITE), "--as-of", "visits=1") == 0
    sites = {r["site"] for r in lakeapi.read(spark, OUTPUT).collect()}
    assert sites == {"Lyon", "Zürich"}                         # not Nice: update 2 came later
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["inputs"][0]["update_id"] == "0000000001"


def test_a_sql_pipeline_selects_from_its_inputs_by_alias(trials, spark, tmp_path):
    sql = "SELECT site, count(*) AS visits\nFROM visits\nGROUP BY site\n"
    assert run(trials, spark, pipeline(tmp_path / "s", sql, kind="sql")) == 0
    assert {(r["site"], r["visits"]) for r in lakeapi.read(spark, OUTPUT).collect()} == {
        ("Lyon", 2), ("Zürich", 1)}


def test_a_failed_check_leaves_the_output_update_failed_and_invisible(
        trials, spark, tmp_path, capsys):
    folder = pipeline(tmp_path / "p", BY_SITE, checks="[{rows_at_least: 1}, {rows_at_least: 5}]")
    assert run(trials, spark, folder) != 0
    err = capsys.readouterr().err
    assert "rows_at_least: 5 failed" in err and "2 row(s)" in err
    [update] = lakeapi.list_updates(OUTPUT, context=trials.context)
    assert update.status == "failed" and "rows_at_least: 5" in update.reason
    assert update.lineage["pipeline"] == "trials_by_site"      # the failed run says what it was
    with pytest.raises(lakeapi.NoDataError):
        lakeapi.read(spark, OUTPUT)
    assert not trials.keys(f"{OUTPUT}/") and not trials.keys(f"_edl_staging/{OUTPUT}/")


@pytest.mark.parametrize(("checks", "message"), [
    ("[{not_null: [note]}]", "note is null in 1 row(s)"),
    ("[{unique: [site]}]", "1 row(s) repeat a key"),
])
def test_not_null_and_unique_checks_name_what_they_found(trials, spark, tmp_path, capsys,
                                                         checks, message):
    body = """\
        def run(spark, inputs, params):
            return {"by_site": inputs["visits"].selectExpr("site", "nullif(note, '') AS note")}
        """
    assert run(trials, spark, pipeline(tmp_path / "p", body, checks=checks)) != 0
    assert message in capsys.readouterr().err
    assert [u.status for u in lakeapi.list_updates(OUTPUT, context=trials.context)] == ["failed"]


@pytest.mark.parametrize(("body", "message"), [
    ("def run(spark, inputs, params):\n    raise ValueError('no sites today')\n",
     "run() raised ValueError: no sites today"),
    ("def run(spark, inputs, params):\n    return {}\n", "returned no by_site"),
    ("def run(spark, inputs, params):\n    return {'by_site': inputs['visits'], 'x': 1}\n",
     "unknown output(s) x"),
    ("def run(spark, inputs, params):\n    return {'by_site': [1, 2]}\n",
     "by_site as list, not a Spark DataFrame"),
    ("def run(spark, inputs, params):\n"
     "    return {'by_site': inputs['visits'].selectExpr('1/0 AS broken', 'raise_error(\"boom\")')}\n",
     "computing output by_site failed"),
])
def test_code_that_fails_leaves_a_failed_invisible_update_and_says_why(
        trials, spark, tmp_path, capsys, body, message):
    assert run(trials, spark, pipeline(tmp_path / "p", body)) != 0
    assert message in capsys.readouterr().err
    [update] = lakeapi.list_updates(OUTPUT, context=trials.context)
    assert update.status == "failed" and message in update.reason
    assert not trials.keys(f"{OUTPUT}/") and not trials.keys(f"_edl_staging/{OUTPUT}/")


def test_an_output_of_a_lower_tier_than_an_input_is_refused_before_anything_is_written(
        trials, spark, tmp_path, capsys):
    trials.context.metadata.put_dataset(DatasetRecord(
        dataset="public_counts", tier="internal", owner="alice", home_region=REGION))
    folder = pipeline(tmp_path / "p", BY_SITE,
                      outputs="by_site: {dataset: public_counts, kind: snapshot}")
    assert run(trials, spark, folder) != 0
    err = capsys.readouterr().err
    assert "public_counts (internal)" in err and f"{DATASET} (sensitive)" in err
    assert lakeapi.list_updates("public_counts", context=trials.context) == []


def test_a_delta_output_is_applied_by_the_dataset_key(trials, spark, tmp_path):
    body = """\
        from pyspark.sql import functions as F

        def run(spark, inputs, params):
            return {"by_site": inputs["visits"].groupBy("site").agg(F.count("*").alias("n"))}
        """
    folder = pipeline(tmp_path / "p", body, outputs=f"by_site: {{dataset: {OUTPUT}, kind: delta}}")
    assert run(trials, spark, folder) == 0
    assert run(trials, spark, folder) == 0
    updates = lakeapi.list_updates(OUTPUT, context=trials.context)
    assert [(u.kind, u.status) for u in updates] == [("delta", "complete")] * 2
    assert {(r["site"], r["n"]) for r in lakeapi.read(spark, OUTPUT).collect()} == {
        ("Lyon", 2), ("Zürich", 1)}


def test_compaction_writes_one_snapshot_equal_to_the_read_before_it(trials, spark):
    for n, body in enumerate((b"id,site,visit_date,seen_at,cost,note,op\n2,Lyon,,,,,D\n",
                              b"id,site,visit_date,seen_at,cost,note,op\n"
                              b"4,Metz,2026-04-01,2026-04-01T00:00:00Z,3.5,neu,I\n")):
        assert ingest(trials, spark, trials.put(f"d{n}.csv", body), "--kind", "delta") == 0
    before = sorted(map(tuple, lakeapi.read(spark, DATASET).collect()))
    assert main(["--instance", INSTANCE, "--compact", DATASET, "--no-role"], spark=spark,
                context=trials.context) == 0
    updates = lakeapi.list_updates(DATASET, context=trials.context)
    compacted = updates[-1]
    assert (compacted.kind, compacted.status) == ("snapshot", "complete")
    assert compacted.lineage["pipeline"] == "compact"
    assert compacted.lineage["inputs"][0]["updates"] == ["0000000001", "0000000002",
                                                         "0000000003"]
    assert sorted(map(tuple, lakeapi.read(spark, DATASET).collect())) == before
    assert sorted(map(tuple, lakeapi.read(spark, DATASET, as_of="3").collect())) == before
