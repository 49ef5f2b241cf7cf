"""A pipeline, written here, deployed and run on the local cloud as a user would: `edl
deploy-pipeline`, an ingest that triggers it, `edl run-pipeline --wait`, `edl pipelines`,
`edl-api lineage`, `edl compact`; under IAM enforcement, the pipeline acting as its own role."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

from tests.e2e.helpers import run_tool

VISITS, BY_SITE, OPEN = "e2e_visits", "e2e_visits_by_site", "e2e_open_counts"
SNAPSHOT = ("id,site,day,cost,op\n1,Lyon,2026-01-05,12.50,I\n2,Lyon,2026-01-06,7.25,I\n"
            "3,Zürich,2026-02-01,100.00,I\n")
DELTA = "id,site,day,cost,op\n2,Lyon,2026-01-06,8.00,U\n3,,,,D\n4,Nice,2026-03-01,1.00,I\n"


def ok(done) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def edl(*args: str):
    return run_tool("edl", *args, "--instance", "local")


def write_pipeline(folder: Path, output: str = BY_SITE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline_config.yaml").write_text(textwrap.dedent(f"""\
        name: e2e_by_site
        kind: pyspark
        inputs:
          visits: {{dataset: {VISITS}}}
        outputs:
          by_site: {{dataset: {output}, kind: snapshot}}
        trigger: on_update
        checks:
          by_site: [{{rows_at_least: 1}}, {{unique: [site]}}]
        """))
    (folder / "money.py").write_text("def cents(column):\n    return column * 100\n")
    (folder / "pipeline.py").write_text(textwrap.dedent("""\
        from pyspark.sql import functions as F

        from money import cents


        def run(spark, inputs, params):
            visits = inputs["visits"]
            return {"by_site": visits.groupBy("site").agg(
                F.count("*").alias("visits"), cents(F.sum("cost")).alias("cents"),
                F.max("day").alias("last_day"))}
        """))
    return folder


def runs(pipeline: str) -> list[dict]:
    items = json.loads(ok(edl("pipelines", "--json")))["items"]
    return next(p for p in items if p["pipeline"] == pipeline)["last_runs"]


def query(sql: str) -> list[tuple]:
    """The rows of `sql` as alice (the datasets' owner) through edl-api, values as text."""
    rows = json.loads(ok(run_tool("edl-api", "query", sql, "--json", user="alice")))
    return [tuple(str(v) for v in row.values()) for row in rows]


def test_a_pipeline_deploys_runs_on_an_update_and_by_hand_with_lineage_and_compaction(
        local_cloud, tmp_path):
    ok(edl("deploy-core"))
    for dataset, extra in ((VISITS, ("--key", "id", "--op-column", "op", "--delete-marker", "D")),
                           (BY_SITE, ()), (OPEN, ())):
        tier = "internal" if dataset == OPEN else "sensitive"
        ok(edl("deploy-dataset", dataset, "--tier", tier, "--owner", "alice", *extra))
    folder = write_pipeline(tmp_path / "by_site")
    ok(edl("deploy-pipeline", str(folder)))
    assert "up to date" in edl("deploy-pipeline", str(folder)).stderr   # nothing changed

    # Sensitive visits may not flow into an internal dataset: refused, naming both.
    refused = edl("deploy-pipeline", str(write_pipeline(tmp_path / "leak", output=OPEN)))
    assert refused.returncode != 0
    assert f"{OPEN} (internal)" in refused.stderr and VISITS in refused.stderr

    source = tmp_path / "visits.csv"
    source.write_text(SNAPSHOT)
    ok(run_tool("edl-api", "ingest", VISITS, "--source", str(source), "--kind", "snapshot",
                "--wait", user="alice"))
    deadline = time.monotonic() + 120
    while not [r for r in runs("e2e_by_site") if r["status"] == "succeeded"]:
        failed = [r for r in runs("e2e_by_site") if r["status"] == "failed"]
        assert not failed, failed
        assert time.monotonic() < deadline, "the on_update run did not succeed within 120 s"
        time.sleep(0.5)
    [triggered] = runs("e2e_by_site")
    assert triggered["trigger"] == f"on_update {VISITS} 0000000001"
    assert query(f"SELECT site, visits, CAST(cents AS integer) FROM {BY_SITE} ORDER BY site") \
        == [("Lyon", "2", "1975"), ("Zürich", "1", "10000")]

    # A delta, then a run by hand as of the snapshot: time travel for inputs.
    source.write_text(DELTA)
    ok(run_tool("edl-api", "ingest", VISITS, "--source", str(source), "--kind", "delta",
                "--wait", user="alice"))
    manual = json.loads(ok(edl("run-pipeline", "e2e_by_site", "--as-of", "visits=1", "--wait",
                               "--json")))
    assert manual["status"] == "succeeded"
    assert manual["inputs"][0]["update_id"] == "0000000001"

    lineage = json.loads(ok(run_tool("edl-api", "lineage", BY_SITE, "--json", user="alice")))
    made = {u["update_id"]: u["lineage"] for u in lineage["items"] if u["status"] == "complete"}
    as_of = sorted((i["dataset"], i["update_id"]) for m in made.values() for i in m["inputs"])
    assert (VISITS, "0000000001") in as_of and (VISITS, "0000000002") in as_of  # both runs
    assert {m["pipeline"] for m in made.values()} == {"e2e_by_site"}
    hashes = {m["code_hash"] for m in made.values()}
    assert len(hashes) == 1 and len(hashes.pop()) == 64

    before = sorted(query(f"SELECT id, site, cost FROM {VISITS}"))
    ok(edl("compact", VISITS))
    updates = json.loads(ok(run_tool("edl-api", "updates", VISITS, "--json", user="alice")))
    newest = updates["items"][-1]
    assert (newest["kind"], newest["status"]) == ("snapshot", "complete")
    assert newest["lineage"]["inputs"][0]["updates"] == ["0000000001", "0000000002"]
    assert sorted(query(f"SELECT id, site, cost FROM {VISITS}")) == before
