#!/usr/bin/env bash
# `make demo`: the whole lake on this machine. Starts the local cloud, validates and deploys the
# core and a dataset, ingests into it, walks a grant through request, refusal, approval, SQL and
# reading, revoke and the audit log, then stops the local cloud again (`make demo KEEP=1` leaves it
# running).
set -euo pipefail
# Spark, like everything in the embedded default, stays on the loopback.
export SPARK_LOCAL_IP=127.0.0.1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

started_here=0
cleanup() {
    if [ "$started_here" = 1 ] && [ "${EDL_DEMO_KEEP:-0}" != 1 ]; then
        step "edl local stop   (make demo KEEP=1 keeps it running)"
        edl local stop
    fi
}
trap cleanup EXIT

if ! edl local status >/dev/null 2>&1; then
    started_here=1
fi
step "edl local start   (moto server with IAM enforcement on 127.0.0.1, bootstrapped)"
edl local start ${EDL_DEMO_PORT:+--port "$EDL_DEMO_PORT"}

step "edl validate   (render + cfn-lint every template, no AWS needed)"
edl validate --all-instances

step "edl plan deploy-core   (what would be created, updated or left alone)"
edl plan deploy-core --instance local

step "edl deploy-core"
edl deploy-core --instance local

step "edl deploy-core again   (nothing changed: no change set is created)"
edl deploy-core --instance local

step "edl deploy-dataset clinical_trials   (owned by alice; deltas keyed by trial_id)"
edl deploy-dataset clinical_trials --tier sensitive --owner alice \
    --description "Demo: clinical trial enrolment" \
    --key trial_id --op-column op --delete-marker D --instance local

step "edl status"
edl status --instance local

step "edl render --instance prod --out build/rendered   (the exact templates that would go to AWS)"
edl render --instance prod --out build/rendered

step "IAM is enforced: alice's own rights are read-only, so her direct create_stack is denied"
python - <<'PY'
import boto3
from botocore.exceptions import ClientError
from edl.aws import AwsSessions, Identity
from edl.config import get_config

sessions = AwsSessions(get_config().instance("local"), Identity("alice"))
print("alice is", sessions.caller_arn())
try:
    sessions.client("cloudformation").create_stack(StackName="alice-was-here", TemplateBody="{}")
    raise SystemExit("alice could create a stack: IAM enforcement is off!")
except ClientError as err:
    print("create_stack as alice:", err.response["Error"]["Code"])
PY
edl deploy-core --instance local --profile alice || echo "(edl deploy-core as alice failed, as it should)"

step "edl-api ingest, as alice: a snapshot, then a delta (upload, start, wait for the job)"
edl-api ingest clinical_trials --source examples/data/clinical_trials_batch1.csv \
    --kind snapshot --wait --profile alice
edl-api ingest clinical_trials --source examples/data/clinical_trials_delta1.csv \
    --kind delta --wait --profile alice

step "edl-api updates and dataset"
edl-api updates clinical_trials --profile bob
edl-api dataset clinical_trials --profile carol

step "bob may not ingest into alice's dataset"
edl-api ingest clinical_trials --source examples/data/clinical_trials_batch1.csv \
    --kind snapshot --profile bob || echo "(refused, as it should be)"

step "access control: bob holds no grant on the sensitive clinical_trials, so no credentials"
edl-api credentials clinical_trials --profile bob || echo "(refused, as it should be)"
echo "... and no SQL either:"
edl-api query "SELECT count(*) AS trials FROM clinical_trials" --profile bob \
    || echo "(refused, as it should be)"

step "bob asks for read access for 30 days, with a justification (sensitive needs both)"
grant=$(edl-api grant request clinical_trials --level read --for 30d \
    --justification "Q3 safety review" --profile bob --json \
    | python -c 'import json, sys; print(json.load(sys.stdin)["grant_id"])')
echo "grant $grant requested"
edl-api grants --pending --profile alice

step "carol is neither the owner nor an admin: she may not approve"
edl-api grant approve "$grant" --profile carol || echo "(refused, as it should be)"

step "alice, the owner, approves"
edl-api grant approve "$grant" --profile alice

step "bob obtains short-lived credentials of the read role from the broker"
edl-api credentials clinical_trials --level read --profile bob

step "bob queries it with SQL through the Athena API (the local cloud answers it with DuckDB)"
edl-api query "SELECT site, count(*) AS trials, sum(enrolled) AS enrolled
               FROM clinical_trials GROUP BY site ORDER BY site" --profile bob
echo "as of update 1 (time travel):"
edl-api query "SELECT count(*) AS trials FROM clinical_trials" \
    --as-of clinical_trials=1 --profile bob

step "bob reads the dataset with lake.read: newest, and as of update 1 (credentials from the broker)"
python - <<'PY'
import os
import sys

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
from pyspark.sql import SparkSession

from edl.utils import lake

spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
print("newest (snapshot + delta: T002 updated, T003 deleted, T005 added):")
lake.read(spark, "clinical_trials", instance="local", profile="bob").orderBy("trial_id").show()
print("as of update 1 (time travel):")
lake.read(spark, "clinical_trials", as_of="1", instance="local", profile="bob") \
    .orderBy("trial_id").show()
spark.stop()
PY

step "alice revokes the grant: bob is refused again at once"
edl-api grant revoke "$grant" --reason "review done" --profile alice
edl-api credentials clinical_trials --profile bob || echo "(refused, as it should be)"

step "the audit log shows every request, decision, vend and refusal"
edl-api audit --dataset clinical_trials --since 1h --profile alice

step "pipelines: datasets for the outputs, the PySpark example (on_update) and the SQL example"
edl deploy-dataset trials_by_site --tier sensitive --owner alice \
    --description "Demo: trials and enrolment per site (pipelines/example)" --instance local
edl deploy-dataset trials_by_phase --tier sensitive --owner alice \
    --description "Demo: trials and enrolment per phase (pipelines/sql_example)" --instance local
edl deploy-pipeline pipelines/example --instance local
edl deploy-pipeline pipelines/sql_example --instance local

step "a Lambda project: a quality check of each new clinical_trials update (trigger on_update)"
edl deploy-lambda projects/example_lambda --instance local
edl invoke-lambda example_lambda --event examples/lambda_event.json --instance local

step "edl run-pipeline trials_by_phase --wait   (the SQL pipeline, started by hand)"
edl run-pipeline trials_by_phase --wait --instance local

step "a new delta of clinical_trials starts trials_by_site (its trigger is on_update)"
edl-api ingest clinical_trials --source examples/data/clinical_trials_delta2.csv \
    --kind delta --wait --profile alice
python - <<'PY'
import json
import subprocess
import time

deadline = time.monotonic() + 120
while True:
    listing = json.loads(subprocess.run(["edl", "pipelines", "--json", "--instance", "local"],
                                        check=True, capture_output=True, text=True).stdout)
    runs = next(p for p in listing["items"] if p["pipeline"] == "trials_by_site")["last_runs"]
    if runs and runs[0]["status"] in ("succeeded", "failed"):
        print(f"run {runs[0]['job_id']} ({runs[0]['trigger']}): {runs[0]['status']}")
        raise SystemExit(0 if runs[0]["status"] == "succeeded" else 1)
    if time.monotonic() > deadline:
        raise SystemExit("the triggered run did not end within 120 s")
    time.sleep(0.5)
PY
edl pipelines --instance local
edl lambdas --instance local

step "lineage: which clinical_trials updates made each trials_by_site update"
edl-api lineage trials_by_site --profile alice
edl-api query "SELECT site, trials, enrolled FROM trials_by_site ORDER BY site" --profile alice

step "edl compact clinical_trials   (its deltas folded into one snapshot; reads start there)"
edl compact clinical_trials --instance local
edl-api lineage clinical_trials --all --profile alice
