#!/usr/bin/env bash
# `make demo`: the whole lake on this machine. Starts the local cloud, validates and deploys the
# core and a dataset, shows what exists and that users cannot deploy themselves, then stops the
# local cloud again (KEEP=1 leaves it running: `make demo KEEP=1`).
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

step "read it back with lake.read, through the dataset's read role: newest, and as of update 1"
python - <<'PY'
import dataclasses
import os
import sys

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
from pyspark.sql import SparkSession

from edl import naming
from edl.aws import AwsSessions
from edl.utils import lake
from edl.utils.context import LakeContext
from edl.utils.storage import S3Access

spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
base = LakeContext.for_instance("local")
sessions = AwsSessions(base.config.instance("local"))
role = naming.role_arn(sessions.instance.account_id,
                       naming.dataset_role("local", "clinical_trials", "read"))
session = sessions.assumed_session(role, "demo-reader")
reader = dataclasses.replace(base, s3_access=lambda region: S3Access.from_session(
    session, region, sessions.endpoint_url))
print("newest (snapshot + delta: T002 updated, T003 deleted, T005 added):")
lake.read(spark, "clinical_trials", context=reader).orderBy("trial_id").show()
print("as of update 1 (time travel):")
lake.read(spark, "clinical_trials", as_of="1", context=reader).orderBy("trial_id").show()
spark.stop()
PY
