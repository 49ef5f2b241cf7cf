#!/usr/bin/env bash
# `make demo`: the whole lake on this machine. Starts the local cloud, validates and deploys the
# core and a dataset, shows what exists and that users cannot deploy themselves, then stops the
# local cloud again (KEEP=1 leaves it running: `make demo KEEP=1`).
set -euo pipefail

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

step "edl deploy-dataset clinical_trials"
edl deploy-dataset clinical_trials --tier sensitive --owner alice \
    --description "Demo: subjects of a clinical trial" \
    --key subject_id --op-column op --delete-marker D --instance local

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
