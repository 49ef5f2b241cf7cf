"""A Lambda project, written here, deployed and invoked on the local cloud as a user would:
`edl deploy-lambda`, an ingest that triggers it, `edl invoke-lambda` with an event file,
`edl lambdas`; the handler acting as the project's own role under IAM enforcement (it reads its
dataset and is refused another's), its errors and timeout reported as Lambda reports them."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

from edl import naming
from edl.config import get_config
from tests.e2e.helpers import run_tool

VISITS, OTHER = "e2e_fn_visits", "e2e_fn_other"
SNAPSHOT = "id,site,day,cost\n1,Lyon,2026-01-05,12.50\n2,Zürich,2026-02-01,100.00\n"


def ok(done) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def edl(*args: str):
    return run_tool("edl", *args, "--instance", "local")


def write_project(folder: Path, *, datasets: str, trigger: str) -> Path:
    config = get_config()
    bucket = naming.data_bucket(config.bucket_prefix, "local", "sensitive",
                                config.instance("local").default_region)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lambda_config.yaml").write_text(textwrap.dedent(f"""\
        name: {folder.name}
        handler: app.main.handle
        timeout: 2
        datasets: {datasets}
        environment: {{BUCKET: {bucket}, GREETING: "grüezi"}}
        trigger: {trigger}
        """))
    (folder / "app").mkdir(exist_ok=True)
    (folder / "app" / "__init__.py").write_text("")
    (folder / "app" / "main.py").write_text(textwrap.dedent(f"""\
        import logging
        import os
        import time

        import boto3
        from botocore.exceptions import ClientError

        from edl.utils.context import LakeContext

        log = logging.getLogger(__name__)


        def handle(event, context):
            action = event.get("action", "check")
            if action == "fail":
                raise RuntimeError("asked to fail")
            if action == "sleep":
                time.sleep(30)
            detail = event.get("detail") or {{}}
            s3 = boto3.client("s3")
            listed = s3.list_objects_v2(Bucket=os.environ["BUCKET"], Prefix="{VISITS}/")
            keys = [o["Key"] for o in listed.get("Contents", [])]
            s3.get_object(Bucket=os.environ["BUCKET"], Key=keys[0])["Body"].read()
            try:
                s3.list_objects_v2(Bucket=os.environ["BUCKET"], Prefix="{OTHER}/")
                s3.get_object(Bucket=os.environ["BUCKET"], Key="{OTHER}/data/x.parquet")
                other = "read"
            except ClientError as exc:
                other = exc.response["Error"]["Code"]
            rows = None
            if detail.get("update_id"):
                rows = LakeContext.for_instance().updates.get_update(
                    detail["dataset"], detail["update_id"]).rows
            log.info("%s: %d objects", os.environ["GREETING"], len(keys))
            return {{"objects": len(keys), "other": other, "rows": rows,
                     "update_id": detail.get("update_id"),
                     "function": context.function_name,
                     "left_ms": context.get_remaining_time_in_millis() > 0}}
        """))
    return folder


def invocations(project: str) -> list[dict]:
    items = json.loads(ok(edl("lambdas", "--json")))["items"]
    return next(p for p in items if p["name"] == project)["last_invocations"]


def test_a_lambda_project_deploys_runs_on_an_update_and_by_hand_as_its_role(local_cloud,
                                                                             tmp_path):
    ok(edl("deploy-core"))
    for dataset in (VISITS, OTHER):
        ok(edl("deploy-dataset", dataset, "--tier", "sensitive", "--owner", "alice"))
    folder = write_project(tmp_path / "e2e_checker", datasets=f"{{{VISITS}: read}}",
                           trigger=f"{{on_update: [{VISITS}]}}")
    ok(edl("deploy-lambda", str(folder)))
    assert "up to date" in edl("deploy-lambda", str(folder)).stderr   # nothing changed

    source = tmp_path / "visits.csv"
    source.write_text(SNAPSHOT)
    ok(run_tool("edl-api", "ingest", VISITS, "--source", str(source), "--kind", "snapshot",
                "--wait", user="alice"))
    deadline = time.monotonic() + 60
    while not [r for r in invocations("e2e_checker") if r["status"] != "queued"
               and r["status"] != "running"]:
        assert time.monotonic() < deadline, "the on_update invocation did not end in 60 s"
        time.sleep(0.3)
    [triggered] = invocations("e2e_checker")
    assert triggered["status"] == "succeeded", triggered
    assert triggered["trigger"] == f"on_update {VISITS} 0000000001"

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"detail": {"dataset": VISITS, "update_id": "0000000001"}}))
    answer = json.loads(ok(edl("invoke-lambda", "e2e_checker", "--event", str(event),
                               "--json")))
    assert answer["status"] == "succeeded"
    result = answer["result"]
    assert result["objects"] >= 1 and result["rows"] == 2 and result["update_id"] == "0000000001"
    assert result["other"] == "AccessDenied"           # its role reads its dataset only
    assert result["function"] == "edl-local-e2e_checker" and result["left_ms"]
    assert "grüezi: " in answer["log"] and "REPORT RequestId" in answer["log"]

    event.write_text(json.dumps({"action": "fail"}))
    failed = edl("invoke-lambda", "e2e_checker", "--event", str(event))
    assert failed.returncode == 1
    assert "RuntimeError: asked to fail" in failed.stderr and "Traceback" in failed.stderr

    event.write_text(json.dumps({"action": "sleep"}))
    started = time.monotonic()
    slow = edl("invoke-lambda", "e2e_checker", "--event", str(event))
    assert slow.returncode == 1 and "Task timed out after 2 seconds" in slow.stderr
    assert time.monotonic() - started < 15

    # A scheduled project deploys its EventBridge rule (and its permission) on moto too.
    scheduled = write_project(tmp_path / "e2e_nightly", datasets=f"{{{VISITS}: read}}",
                              trigger='{schedule: "cron(0 3 * * ? *)"}')
    ok(edl("deploy-lambda", str(scheduled)))
    listing = {p["name"]: p for p in json.loads(ok(edl("lambdas", "--json")))["items"]}
    assert listing["e2e_nightly"]["schedule"] == "cron(0 3 * * ? *)"
    assert listing["e2e_checker"]["watches"] == [VISITS]


def test_deploy_lambda_refuses_a_dataset_that_does_not_exist(local_cloud, tmp_path):
    ok(edl("deploy-core"))
    folder = write_project(tmp_path / "e2e_orphan", datasets="{e2e_fn_nowhere: read}",
                           trigger="none")
    refused = edl("deploy-lambda", str(folder))
    assert refused.returncode != 0 and "e2e_fn_nowhere" in refused.stderr
    assert "deploy-dataset" in refused.stderr
